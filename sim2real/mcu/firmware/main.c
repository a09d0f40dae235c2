/* Firmware main: one of three modes, chosen at build time with -DFW_MODE=<n>.
 *
 *   FW_MODE_SERIAL   (1) boot self-test, then serve the framed protocol (protocol.h) on the UART forever,
 *                        until QUIT (main returns 0) or RESET (AIRCR system reset).
 *   FW_MODE_SELFTEST (2) run policy_eval on the golden observation and compare with the golden actions:
 *                        main returns 0 = pass, 1 = mismatch beyond POLICY_GOLDEN_ATOL, 2 = policy_eval error.
 *   FW_MODE_BENCH    (3) self-test, then time FW_BENCH_RUNS inferences of the golden observation and a
 *                        calibration loop of known instruction count with the SysTick counter; send one BENCH
 *                        frame (seq 0) on the UART and return the self-test status (0 = pass).
 *
 * In serial mode the device keeps the last observation it evaluated and updates its action history after
 * every inference, so the host can send only the state part (OBS_STATE, see protocol.h). A policy.h without
 * POLICY_HISTORY_OFFSET/POLICY_HISTORY_LEN (older generators, hand-written policies) has no history.
 *
 * BENCH payload (little-endian u32 each): runs | ticks summed over the runs | per-sample tick overhead that
 * was subtracted | calibration instructions | calibration ticks | tick_hz | golden status.
 * Under QEMU -icount shift=0 every instruction takes 1 ns of virtual time, so ticks * 1e9 / tick_hz is an
 * instruction count, and the calibration pair checks that SysTick really follows that clock. */
#include <stdint.h>

#include "board.h"
#include "cortexm.h"
#include "mini_libc.h"
#include "policy.h"
#include "protocol.h"

#define FW_MODE_SERIAL 1
#define FW_MODE_SELFTEST 2
#define FW_MODE_BENCH 3
#ifndef FW_MODE
#define FW_MODE FW_MODE_SERIAL
#endif
#ifndef FW_BENCH_RUNS
#define FW_BENCH_RUNS 16
#endif
#define CALIB_LOOPS 100000u      /* 2 instructions each: 200k instructions */
#define INTER_BYTE_TIMEOUT_HZ 20 /* a partial frame is dropped after 1/20 s = 50 ms of silence */

#ifndef POLICY_HISTORY_OFFSET
#define POLICY_HISTORY_OFFSET POLICY_OBS_DIM
#define POLICY_HISTORY_LEN 0
#endif
_Static_assert(POLICY_HISTORY_LEN >= 0 && POLICY_HISTORY_OFFSET + POLICY_HISTORY_LEN == POLICY_OBS_DIM,
               "the action history must end the observation");
_Static_assert(POLICY_HISTORY_LEN % POLICY_ACT_DIM == 0, "the action history must hold whole actions");
_Static_assert(4 * POLICY_OBS_DIM <= PROTO_MAX_PAYLOAD, "an OBS frame must fit the maximum payload");
_Static_assert(4 + 4 * POLICY_ACT_DIM <= PROTO_MAX_PAYLOAD, "an ACT frame must fit the maximum payload");

enum golden_status { GOLDEN_PASS = 0, GOLDEN_MISMATCH = 1, GOLDEN_EVAL_ERROR = 2 };

#define UNUSED_IN_SELFTEST __attribute__((unused))

static float act_buf[POLICY_ACT_DIM];
static uint32_t tick_overhead UNUSED_IN_SELFTEST; /* two back-to-back cm_ticks(): subtracted from timings */

/* Cost of the timing itself: the smallest difference of two consecutive samples. */
UNUSED_IN_SELFTEST static uint32_t measure_tick_overhead(void)
{
    uint32_t best = UINT32_MAX;
    for (int i = 0; i < 8; ++i) {
        uint32_t t0 = cm_ticks();
        uint32_t t1 = cm_ticks();
        if (t1 - t0 < best) {
            best = t1 - t0;
        }
    }
    return best;
}

/* policy_eval on the golden observation, every action within +-POLICY_GOLDEN_ATOL of the golden one (a NaN
 * fails the comparison too). */
static int golden_check(void)
{
    if (policy_eval(policy_golden_obs, act_buf) != 0) {
        return GOLDEN_EVAL_ERROR;
    }
    for (int i = 0; i < POLICY_ACT_DIM; ++i) {
        float d = act_buf[i] - policy_golden_act[i];
        if (!(d <= POLICY_GOLDEN_ATOL && d >= -POLICY_GOLDEN_ATOL)) {
            return GOLDEN_MISMATCH;
        }
    }
    return GOLDEN_PASS;
}

#if FW_MODE == FW_MODE_SERIAL
/* The last observation evaluated: [0, POLICY_HISTORY_OFFSET) the state, then the action history that
 * OBS_STATE reuses. history_valid: the history part continues the host's (a full OBS was evaluated since boot
 * and every inference since then appended its actions). */
static float obs_buf[POLICY_OBS_DIM];
static int history_valid;
static proto_parser parser;
static uint8_t golden_status;
static volatile int quit_requested, reset_requested;

/* Exponent bits all ones = Inf or NaN; checked here too so a policy without its own check is still safe. */
static int all_finite(const float *x, int n)
{
    for (int i = 0; i < n; ++i) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        if ((bits & 0x7F800000u) == 0x7F800000u) {
            return 0;
        }
    }
    return 1;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
    uint8_t *len = p++;
    while (*s && p - len <= 64) {
        *p++ = (uint8_t)*s++;
    }
    *len = (uint8_t)(p - len - 1);
    return p;
}

/* INFO reply, layout in protocol.h. */
static void send_info(uint8_t seq)
{
    uint8_t info[12 + 2 * 66 + 4];
    uint8_t *p = put_u16(info, POLICY_OBS_DIM);
    p = put_u16(p, POLICY_ACT_DIM);
    uint32_t hz = board_tick_hz();
    p = put_u16(put_u16(p, (uint16_t)(hz & 0xFFFFu)), (uint16_t)(hz >> 16));
    *p++ = golden_status;
    *p++ = PROTO_VERSION;
    p = put_u16(p, PROTO_MAX_PAYLOAD);
    p = put_str(p, board_name);
    p = put_str(p, POLICY_MODEL_HASH);
    p = put_u16(put_u16(p, POLICY_HISTORY_OFFSET), POLICY_HISTORY_LEN); /* protocol version 2 */
    proto_send(MSG_INFO_REPLY, seq, info, (uint16_t)(p - info));
}

/* History update after a successful inference: drop the oldest action, append the one just returned
 * (the simulator's history = cat(history[1:], action)), so the buffer holds the next tick's history. */
static void push_actions(void)
{
#if POLICY_HISTORY_LEN > 0
    float *hist = obs_buf + POLICY_HISTORY_OFFSET;
    memmove(hist, hist + POLICY_ACT_DIM, sizeof(float) * (POLICY_HISTORY_LEN - POLICY_ACT_DIM));
    memcpy(hist + POLICY_HISTORY_LEN - POLICY_ACT_DIM, act_buf, sizeof act_buf);
#endif
}

/* OBS (n = POLICY_OBS_DIM floats) or OBS_STATE (n = POLICY_HISTORY_OFFSET) -> ACT: u32 ticks of policy_eval
 * (timing overhead removed), then the actions. The payload overwrites obs_buf[0, n); an OBS_STATE keeps the
 * history behind it. */
static void infer(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t n)
{
    if (type == MSG_OBS_STATE && POLICY_HISTORY_LEN > 0 && !history_valid) {
        proto_nak(seq, NAK_NO_HISTORY, type);
        return;
    }
    memcpy(obs_buf, payload, sizeof(float) * n); /* the payload is unaligned: VLDR would fault on it */
    if (type == MSG_OBS) {
        history_valid = 0; /* overwritten: valid again only once this observation is evaluated */
    }
    if (!all_finite(obs_buf, POLICY_OBS_DIM)) {
        proto_nak(seq, NAK_EVAL_ERROR, type);
        return;
    }
    uint32_t t0 = cm_ticks();
    int rc = policy_eval(obs_buf, act_buf);
    uint32_t ticks = cm_ticks() - t0 - tick_overhead;
    if (rc != 0) {
        proto_nak(seq, NAK_EVAL_ERROR, type);
        return;
    }
    push_actions();
    history_valid = 1;
    proto_tx tx;
    proto_tx_begin(&tx, MSG_ACT, seq, (uint16_t)(sizeof ticks + sizeof act_buf));
    proto_tx_bytes(&tx, &ticks, sizeof ticks);
    proto_tx_bytes(&tx, act_buf, sizeof act_buf);
    proto_tx_end(&tx);
}

static void handle_frame(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len)
{
    /* Expected payload size per request type; -1 = any size (PING). */
    int32_t want;
    switch (type) {
    case MSG_OBS: want = (int32_t)sizeof obs_buf; break;
    case MSG_OBS_STATE: want = (int32_t)(sizeof(float) * POLICY_HISTORY_OFFSET); break;
    case MSG_PING: want = -1; break;
    case MSG_INFO:
    case MSG_RESET:
    case MSG_QUIT: want = 0; break;
    default: proto_nak(seq, NAK_UNKNOWN_TYPE, type); return;
    }
    if (want >= 0 && len != (uint16_t)want) {
        proto_nak(seq, NAK_BAD_SIZE, type);
        return;
    }
    switch (type) {
    case MSG_OBS: infer(type, seq, payload, POLICY_OBS_DIM); break;
    case MSG_OBS_STATE: infer(type, seq, payload, POLICY_HISTORY_OFFSET); break;
    case MSG_PING: proto_send(MSG_PONG, seq, payload, len); break;
    case MSG_INFO: send_info(seq); break;
    case MSG_RESET:
        proto_send(MSG_ACK, seq, 0, 0u);
        reset_requested = 1;
        break;
    default: /* MSG_QUIT */
        proto_send(MSG_ACK, seq, 0, 0u);
        quit_requested = 1;
        break;
    }
}

int main(void)
{
    board_init();
    tick_overhead = measure_tick_overhead();
    golden_status = (uint8_t)golden_check();
    proto_init(&parser, board_tick_hz() / INTER_BYTE_TIMEOUT_HZ, handle_frame);
    for (;;) {
        while (!board_uart_rx_ready()) {
            cm_idle(); /* WFI until the RX interrupt (or a SysTick wrap) is pending */
        }
        uint8_t byte = board_uart_getc();
        proto_feed(&parser, byte, cm_ticks());
        if (reset_requested) {
            board_uart_flush();
            cm_system_reset();
        }
        if (quit_requested) {
            board_uart_flush();
            return 0;
        }
    }
}

#elif FW_MODE == FW_MODE_SELFTEST
int main(void)
{
    board_init();
    return golden_check();
}

#elif FW_MODE == FW_MODE_BENCH
/* Exactly 2 instructions per iteration (SUBS, BNE); noinline so the count does not depend on inlining. */
__attribute__((noinline)) static void calib_loop(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

int main(void)
{
    board_init();
    tick_overhead = measure_tick_overhead();
    uint32_t status = (uint32_t)golden_check();
    uint32_t total = 0u;
    for (int r = 0; r < FW_BENCH_RUNS; ++r) {
        /* One sample per run keeps every interval far below a SysTick wrap (cm_ticks() needs that). */
        uint32_t t0 = cm_ticks();
        (void)policy_eval(policy_golden_obs, act_buf);
        total += cm_ticks() - t0 - tick_overhead;
    }
    uint32_t t0 = cm_ticks();
    calib_loop(CALIB_LOOPS);
    uint32_t calib_ticks = cm_ticks() - t0 - tick_overhead;
    uint32_t report[7] = {FW_BENCH_RUNS, total, tick_overhead, 2u * CALIB_LOOPS, calib_ticks, board_tick_hz(), status};
    proto_send(MSG_BENCH, 0u, report, (uint16_t)sizeof report);
    board_uart_flush();
    return (int)status;
}

#else
#error "FW_MODE must be 1 (serial), 2 (selftest) or 3 (bench)"
#endif
