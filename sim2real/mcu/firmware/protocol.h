/* Framed serial protocol, device side. Both directions use the same frame (all integers little-endian):
 *
 *   0xA5 | type u8 | seq u8 | len u16 | payload[len] | crc u16
 *
 * crc = CRC-16/CCITT-FALSE over type, seq, len and payload (not the start byte). len <= PROTO_MAX_PAYLOAD.
 * A reply echoes the request's seq. Message types and payloads:
 *
 *   OBS   0x01  float32[obs_dim]                -> ACT  0x81  u32 ticks of the inference, float32[act_dim]
 *   OBS_STATE 0x05  float32[history_offset]     -> ACT  0x81  as OBS; the history part comes from the device
 *   PING  0x02  any bytes (<= max payload)      -> PONG 0x82  the same bytes
 *   INFO  0x03  empty                           -> INFO 0x83  see below
 *   RESET 0x04  empty                           -> ACK  0x84  empty, then a system reset (AIRCR)
 *   QUIT  0x7F  empty                           -> ACK  0x84  empty, then main() returns 0 (QEMU exits 0)
 *   (bench firmware, unsolicited, seq 0)           BENCH 0x85 see main.c
 *   any error                                   -> NAK  0xFF  u8 code, u8 type of the offending frame
 *
 * NAK codes: 1 bad CRC, 2 length above the maximum (sent as soon as the header is in, without waiting for the
 * payload), 3 unknown type, 4 wrong payload size for the type, 5 non-finite observation or policy_eval error,
 * 6 OBS_STATE without a valid device-side history (send a full OBS first).
 *
 * Device-side action history (protocol version 2). The observation ends with the policy's own last actions:
 * obs[history_offset .. obs_dim) = history_len / act_dim past actions, oldest first (POLICY_HISTORY_OFFSET and
 * POLICY_HISTORY_LEN of policy.h; history_len 0: no history, history_offset = obs_dim). The device keeps the
 * last observation it evaluated. After every successful inference (OBS or OBS_STATE) it shifts that history
 * left by act_dim floats and appends the actions it returned, exactly as the simulator does
 * (history = cat(history[1:], action)). OBS_STATE then carries only obs[0 .. history_offset) and reuses the
 * kept history: 72 payload bytes instead of 584 for the quadrotor policy. A full OBS overwrites the whole
 * buffer, so it is idempotent and may be resent; an OBS_STATE is not (a lost ACT followed by a resend would
 * shift the history twice), so the host never resends one and resynchronises with a full OBS instead.
 * The history is invalid at boot (and so after RESET) and after an OBS that failed with NAK 5; an OBS_STATE
 * then gets NAK 6. An OBS_STATE that fails (NAK 4, 5) leaves the history as it was. With history_len 0 an
 * OBS_STATE is simply a full OBS and is always served.
 *
 * INFO reply payload: obs_dim u16 | act_dim u16 | tick_hz u32 | golden self-test status at boot u8
 * (0 pass, 1 mismatch, 2 policy_eval error) | protocol version u8 | max payload u16 | board name length u8 |
 * board name (ASCII) | model hash length u8 | model hash (ASCII, from POLICY_MODEL_HASH) | history_offset u16 |
 * history_len u16 (both in floats; the last two fields since protocol version 2).
 *
 * Receive robustness: bytes outside a frame that are not 0xA5 are discarded; a partial frame is dropped when
 * the line has been quiet for the inter-byte timeout; after a bad CRC or an oversize length the buffered bytes
 * after the false start byte are scanned again for a start byte, so a good frame right behind garbage is kept. */
#ifndef PROTOCOL_H
#define PROTOCOL_H

#include <stdint.h>

#define PROTO_START 0xA5u
#define PROTO_HEADER_LEN 5u /* start, type, seq, len lo, len hi */
#define PROTO_CRC_LEN 2u
#define PROTO_MAX_PAYLOAD 1024u
#define PROTO_VERSION 2u

enum proto_type {
    MSG_OBS = 0x01,
    MSG_PING = 0x02,
    MSG_INFO = 0x03,
    MSG_RESET = 0x04,
    MSG_OBS_STATE = 0x05,
    MSG_QUIT = 0x7F,
    MSG_ACT = 0x81,
    MSG_PONG = 0x82,
    MSG_INFO_REPLY = 0x83,
    MSG_ACK = 0x84,
    MSG_BENCH = 0x85,
    MSG_NAK = 0xFF,
};

enum proto_nak {
    NAK_BAD_CRC = 1,
    NAK_OVERSIZE = 2,
    NAK_UNKNOWN_TYPE = 3,
    NAK_BAD_SIZE = 4,
    NAK_EVAL_ERROR = 5,
    NAK_NO_HISTORY = 6,
};

/* Called for every frame whose CRC checks out. */
typedef void (*proto_handler)(uint8_t type, uint8_t seq, const uint8_t *payload, uint16_t len);

typedef struct {
    uint8_t buf[PROTO_HEADER_LEN + PROTO_MAX_PAYLOAD + PROTO_CRC_LEN]; /* the frame candidate, buf[0] = 0xA5 */
    uint16_t n;                                                        /* bytes in buf (0: hunting for 0xA5) */
    uint32_t last_tick;                                                /* tick of the previous byte */
    uint32_t timeout_ticks;                                            /* inter-byte timeout */
    proto_handler handler;
    uint32_t crc_errors, length_errors, timeouts, discarded; /* diagnostics */
} proto_parser;

void proto_init(proto_parser *p, uint32_t timeout_ticks, proto_handler handler);

/* Feed one received byte, sampled at tick `now`. Sends NAKs for framing errors itself. */
void proto_feed(proto_parser *p, uint8_t byte, uint32_t now);

/* Streaming transmit: header, payload pieces, CRC; no frame buffer needed. */
typedef struct {
    uint16_t crc;
} proto_tx;

void proto_tx_begin(proto_tx *tx, uint8_t type, uint8_t seq, uint16_t len);
void proto_tx_bytes(proto_tx *tx, const void *data, uint16_t n);
void proto_tx_end(proto_tx *tx);
void proto_send(uint8_t type, uint8_t seq, const void *payload, uint16_t len);
void proto_nak(uint8_t seq, uint8_t code, uint8_t type);

#endif
