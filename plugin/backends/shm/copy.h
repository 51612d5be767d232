/* SPDX-License-Identifier: Apache-2.0 */
/* copy.h - the copy loop of the shm backend (copy.c). */
#ifndef MC_SHM_COPY_H_
#define MC_SHM_COPY_H_

#include <stddef.h>
#include <stdint.h>

/* memcpy for non-overlapping buffers, avoiding glibc's slow case for some pointer skews. */
void mc_shm_copy(void *dst, const void *src, size_t n);

#endif
