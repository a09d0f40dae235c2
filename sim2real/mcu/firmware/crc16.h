/* CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, MSB first (no reflection), no final XOR.
 * Check value: the 9 ASCII bytes "123456789" give 0x29B1. */
#ifndef CRC16_H
#define CRC16_H

#include <stddef.h>
#include <stdint.h>

#define CRC16_INIT 0xFFFFu

uint16_t crc16_update(uint16_t crc, const uint8_t *data, size_t n);

#endif
