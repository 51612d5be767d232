/* util.h - small helpers of the tests/abi binaries: paths, scratch directories, shell commands. */
#ifndef MC_TESTS_ABI_UTIL_H_
#define MC_TESTS_ABI_UTIL_H_

#include <stddef.h>
#include <sys/types.h>

/* The build directory this binary belongs to (BUILD/tests/abi-NAME -> BUILD).  0 on success. */
int abi_build_dir(char *out, size_t n);

/* A fresh directory under TMPDIR (or /tmp) named moecomm-TAG.XXXXXX.  0 on success. */
int abi_mkdtemp(const char *tag, char *out, size_t n);

/* Removes path and everything under it (no symlinks followed).  0 on success. */
int abi_rm_rf(const char *path);

/* Copies a regular file, giving the copy `mode`.  0 on success. */
int abi_copy_file(const char *src, const char *dst, mode_t mode);

/* 1 when path exists (any type, symlinks not followed). */
int abi_exists(const char *path);

/* Runs `sh -c cmd` with stderr merged into stdout; up to n-1 bytes of the output go to out
   (NUL-terminated; out may be NULL).  Returns the exit status, 128+N for signal N, -1 when it
   could not run. */
int abi_run(const char *cmd, char *out, size_t n);

#endif
