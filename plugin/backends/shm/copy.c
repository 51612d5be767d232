/* SPDX-License-Identifier: Apache-2.0 */
/* copy.c - copies between user buffers and the segment.
 *
 * glibc's memcpy moves mid-sized blocks with `rep movsb`.  On AMD Zen 3 (the machine this was
 * measured on) that runs at about 3 GB/s instead of 40-50 GB/s when the destination lies 1-31
 * bytes past the source modulo 4 KiB, which is exactly what a malloc'ed buffer (16 bytes into a
 * page) and a page-aligned slot give.  Copies in that band go through a plain vector loop,
 * which has no such case; every other copy is glibc's. */
#include <string.h>

#include "copy.h"

typedef float mc_shm_v16_t __attribute__((vector_size(16)));

static void mc_shm_copy_loop(unsigned char *dst, const unsigned char *src, size_t n) {
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    mc_shm_v16_t a, b, c, d;
    memcpy(&a, src + i, 16);
    memcpy(&b, src + i + 16, 16);
    memcpy(&c, src + i + 32, 16);
    memcpy(&d, src + i + 48, 16);
    memcpy(dst + i, &a, 16);
    memcpy(dst + i + 16, &b, 16);
    memcpy(dst + i + 32, &c, 16);
    memcpy(dst + i + 48, &d, 16);
    __asm__ __volatile__(""); /* keeps the compiler from turning the loop back into memcpy */
  }
  if (i < n) memcpy(dst + i, src + i, n - i);
}

void mc_shm_copy(void *dst, const void *src, size_t n) {
  size_t skew = ((uintptr_t)dst - (uintptr_t)src) & 4095u;
  if (n >= 2048 && skew != 0 && skew < 64)
    mc_shm_copy_loop(dst, src, n);
  else
    memcpy(dst, src, n);
}
