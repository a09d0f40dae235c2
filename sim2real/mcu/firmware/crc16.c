/* Bitwise CRC-16/CCITT-FALSE (see crc16.h). Eight shift/XOR steps per byte cost ~40 cycles; a 1 KB frame is
 * ~40k cycles, well below one inference, so no 512-byte table in flash. */
#include "crc16.h"

uint16_t crc16_update(uint16_t crc, const uint8_t *data, size_t n)
{
    while (n--) {
        crc ^= (uint16_t)((uint16_t)*data++ << 8); /* feed the next byte into the top 8 bits */
        for (int bit = 0; bit < 8; ++bit) {
            /* shift left; when a 1 falls off the top, subtract (XOR) the generator polynomial */
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}
