/* Frame parser state machine and transmitter: see protocol.h for the wire format.
 *
 * The parser state is just the number of bytes held (n): 0 = hunting for the start byte, 1..4 = reading the
 * header, then the payload and CRC until n = 5 + len + 2. Keeping every byte of the candidate frame lets us
 * re-scan them after a false start (garbage that happened to contain 0xA5). */
#include "protocol.h"

#include "mini_libc.h"

#include "board.h"
#include "crc16.h"

void proto_init(proto_parser *p, uint32_t timeout_ticks, proto_handler handler)
{
    p->n = 0u;
    p->last_tick = 0u;
    p->timeout_ticks = timeout_ticks;
    p->handler = handler;
    p->crc_errors = p->length_errors = p->timeouts = p->discarded = 0u;
}

/* Drop the start byte of the current candidate and resume at the next 0xA5 already buffered (if any). */
static void drop_start(proto_parser *p)
{
    uint16_t k = 1u;
    while (k < p->n && p->buf[k] != PROTO_START) {
        ++k;
    }
    p->discarded += k;
    p->n = (uint16_t)(p->n - k);
    memmove(p->buf, p->buf + k, p->n);
}

/* Act on the buffered bytes until more input is needed. The loop runs again after each false start, because
 * the re-scanned bytes may already hold a header with a bad length or a whole frame. */
static void scan(proto_parser *p)
{
    while (p->n >= PROTO_HEADER_LEN) {
        uint16_t len = (uint16_t)(p->buf[3] | (p->buf[4] << 8));
        if (len > PROTO_MAX_PAYLOAD) {
            ++p->length_errors;
            proto_nak(p->buf[2], NAK_OVERSIZE, p->buf[1]);
            drop_start(p);
            continue;
        }
        uint16_t total = (uint16_t)(PROTO_HEADER_LEN + len + PROTO_CRC_LEN);
        if (p->n < total) {
            return; /* wait for the rest of the frame */
        }
        uint16_t got = (uint16_t)(p->buf[total - 2u] | (p->buf[total - 1u] << 8));
        uint16_t want = crc16_update(CRC16_INIT, p->buf + 1, (size_t)(PROTO_HEADER_LEN - 1u + len));
        if (got != want) {
            ++p->crc_errors;
            proto_nak(p->buf[2], NAK_BAD_CRC, p->buf[1]);
            drop_start(p);
            continue;
        }
        p->n = 0u; /* a frame never holds more than `total` bytes: bytes are fed one at a time */
        p->handler(p->buf[1], p->buf[2], p->buf + PROTO_HEADER_LEN, len);
        return;
    }
}

void proto_feed(proto_parser *p, uint8_t byte, uint32_t now)
{
    if (p->n > 0u && (uint32_t)(now - p->last_tick) > p->timeout_ticks) {
        /* The line went quiet mid-frame: the sender gave up on it, and so do we. */
        ++p->timeouts;
        p->discarded += p->n;
        p->n = 0u;
    }
    p->last_tick = now;
    if (p->n == 0u && byte != PROTO_START) {
        ++p->discarded;
        return;
    }
    p->buf[p->n++] = byte;
    scan(p);
}

void proto_tx_begin(proto_tx *tx, uint8_t type, uint8_t seq, uint16_t len)
{
    uint8_t header[PROTO_HEADER_LEN] = {PROTO_START, type, seq, (uint8_t)(len & 0xFFu), (uint8_t)(len >> 8)};
    board_uart_putc(header[0]);
    tx->crc = CRC16_INIT;
    proto_tx_bytes(tx, header + 1, PROTO_HEADER_LEN - 1u);
}

void proto_tx_bytes(proto_tx *tx, const void *data, uint16_t n)
{
    const uint8_t *bytes = data;
    tx->crc = crc16_update(tx->crc, bytes, n);
    for (uint16_t i = 0u; i < n; ++i) {
        board_uart_putc(bytes[i]);
    }
}

void proto_tx_end(proto_tx *tx)
{
    board_uart_putc((uint8_t)(tx->crc & 0xFFu));
    board_uart_putc((uint8_t)(tx->crc >> 8));
}

void proto_send(uint8_t type, uint8_t seq, const void *payload, uint16_t len)
{
    proto_tx tx;
    proto_tx_begin(&tx, type, seq, len);
    proto_tx_bytes(&tx, payload, len);
    proto_tx_end(&tx);
}

void proto_nak(uint8_t seq, uint8_t code, uint8_t type)
{
    uint8_t payload[2] = {code, type};
    proto_send(MSG_NAK, seq, payload, sizeof payload);
}
