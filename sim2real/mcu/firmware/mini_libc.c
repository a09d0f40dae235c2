/* The four functions a freestanding C program must provide (GCC may emit calls to them for struct copies and
 * loops even with -nostdlib). Byte loops: the firmware only moves short frames. The optimize attribute stops
 * GCC from recognising the loops as memcpy/memset and calling the function from itself. */
#include "mini_libc.h"

#include <stdint.h>

#define NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))

NO_LIBCALLS void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

NO_LIBCALLS void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) {
            *d++ = *s++;
        }
    } else {
        while (n--) {
            d[n] = s[n];
        }
    }
    return dst;
}

NO_LIBCALLS void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

NO_LIBCALLS int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    for (; n; --n, ++x, ++y) {
        if (*x != *y) {
            return (int)*x - (int)*y;
        }
    }
    return 0;
}
