/* Declarations of the freestanding memory functions defined in mini_libc.c (no libc is linked). */
#ifndef MINI_LIBC_H
#define MINI_LIBC_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif
