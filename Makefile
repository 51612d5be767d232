# moecomm - the one entry point.  `make help` lists the targets.
#
# CUDA_HOME and NCCL_HOME may be overridden.  NCCL_HOME may hold lib/ or lib64/ with libnccl.so or
# only libnccl.so.2 (a pip wheel's layout).  Without nvcc or nccl.h the plugin is built CPU-only
# (shm backend), which `make` says once.

CUDA_HOME ?= /usr/local/cuda
NCCL_HOME ?= $(CUDA_HOME)
BUILD     ?= build
PREFIX    ?= /usr/local
DESTDIR   ?=
# Name the plugin reports; a name other than moecomm builds libmoecomm-<name>.so.
PLUGIN_NAME ?= moecomm
VERSION   := $(shell cat VERSION)

NVCC      := $(CUDA_HOME)/bin/nvcc
NCCL_INC  := $(firstword $(wildcard $(NCCL_HOME)/include/nccl.h))
NCCL_SO   := $(firstword $(wildcard $(NCCL_HOME)/lib64/libnccl.so.2 $(NCCL_HOME)/lib/libnccl.so.2 \
                                    $(NCCL_HOME)/lib64/libnccl.so $(NCCL_HOME)/lib/libnccl.so))
NCCL_LIBDIR := $(patsubst %/,%,$(dir $(NCCL_SO)))
ifeq ($(origin WITH_CUDA),undefined)
  WITH_CUDA := $(if $(and $(wildcard $(NVCC)),$(NCCL_INC),$(NCCL_SO)),1,0)
endif
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90

CC      ?= gcc
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-format-truncation
CFLAGS  ?= -O2 -g
CFLAGS_ALL := -std=c11 $(CFLAGS) $(WARN) -fPIC -pthread -D_GNU_SOURCE -I. \
              -DMC_WITH_CUDA=$(WITH_CUDA) -DMC_VERSION='"$(VERSION)"'
PLUGIN_CFLAGS := $(CFLAGS_ALL) -fvisibility=hidden -DMC_PLUGIN_NAME='"$(PLUGIN_NAME)"'
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-fvisibility=hidden,-Wall \
             -Xptxas -O3 -lineinfo -I.

ifeq ($(WITH_CUDA),1)
  CUDA_CFLAGS := -isystem $(dir $(NCCL_INC)) -isystem $(CUDA_HOME)/include
  CUDA_LIBS   := -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt
  NCCL_LIBS   := $(NCCL_SO) -Wl,-rpath,$(NCCL_LIBDIR)
endif

PLUGIN_FILE := $(if $(filter moecomm,$(PLUGIN_NAME)),libmoecomm.so,libmoecomm-$(PLUGIN_NAME).so)
PLUGIN      := $(BUILD)/$(PLUGIN_FILE)
# The plugin's objects as an archive, for white-box unit tests (tests/unit/*): same code, no dlopen.
INTERNAL_A  := $(BUILD)/libmoecomm-internal.a
SHIM        := $(BUILD)/moecomm-shim

CORE_SRC    := $(wildcard plugin/*.c) $(wildcard plugin/backends/shm/*.c)
CUDA_SRC    := $(wildcard plugin/backends/nccl/*.c) $(wildcard plugin/backends/custom/*.c)
KERNEL_SRC  := $(wildcard kernels/*.cu)
ifeq ($(WITH_CUDA),1)
  PLUGIN_SRC := $(CORE_SRC) $(CUDA_SRC)
else
  PLUGIN_SRC := $(CORE_SRC)
  KERNEL_SRC :=
endif
OBJ_DIR     := $(BUILD)/obj-$(PLUGIN_NAME)
PLUGIN_OBJ  := $(PLUGIN_SRC:%.c=$(OBJ_DIR)/%.o) $(KERNEL_SRC:%.cu=$(OBJ_DIR)/%.cu.o)

# The shim's loader and launcher are also the reference code the tests and checkers link.
SHIM_LIB_SRC := $(filter-out host_shim/main.c,$(wildcard host_shim/*.c))
SHIM_LIB_OBJ := $(SHIM_LIB_SRC:%.c=$(BUILD)/obj/%.o)
SHIM_OBJ     := $(BUILD)/obj/host_shim/main.o $(SHIM_LIB_OBJ)
HOST_LIBS    := -ldl -lm $(CUDA_LIBS)

TEST_SRC     := $(wildcard tests/unit/*.c)
TEST_BIN     := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# GPU tests need the CUDA runtime; a CPU-only build has none (tests/run.sh says so).
GPU_TEST_SRC := $(if $(filter 1,$(WITH_CUDA)),$(wildcard tests/gpu/*.c))
GPU_TEST_BIN := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%)
TEST_COMMON_SRC := $(wildcard tests/common/*.c)
TEST_COMMON_OBJ := $(TEST_COMMON_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC    := $(wildcard bench/*.c)
BENCH_BIN    := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
BENCH_COMMON_SRC := $(wildcard bench/common/*.c)
BENCH_COMMON_OBJ := $(BENCH_COMMON_SRC:%.c=$(BUILD)/obj/%.o)

.PHONY: all plugin shim tests gpu-bins demo test gpu-test bench bench-cpu bench-mem install uninstall \
        abi-check abi-baseline deb clean help deps deps-test

all: deps plugin shim tests

help:
	@echo "make            build the plugin, the shim and the tests into $(BUILD)/"
	@echo "make demo       MoE layer step through the shim (GPUs where present, else shm ranks)"
	@echo "make test       every CPU test (GPU tests skip with a line); ends 'N passed, N failed'"
	@echo "make gpu-test   the GPU tests (needs CUDA devices)"
	@echo "make bench      all-reduce benchmark, custom and NCCL (GPU); JSON in bench/results/"
	@echo "make bench-cpu  shm all-reduce against Open MPI; make bench-mem: communicator memory (GPU)"
	@echo "make install PREFIX=... DESTDIR=... | make uninstall | make deb | make abi-check | make abi-baseline"

deps:
	@packaging/ensure-deps.sh build

plugin: $(PLUGIN)
shim: $(SHIM) $(PLUGIN)
tests: $(TEST_BIN) $(GPU_TEST_BIN) $(BENCH_BIN)
# Objects linked into several binaries: make must not delete them as intermediates.
.SECONDARY: $(TEST_COMMON_OBJ) $(SHIM_LIB_OBJ) $(BENCH_COMMON_OBJ) $(ABI_LIB_OBJ)

ifneq ($(WITH_CUDA),1)
$(info moecomm: no CUDA toolkit with NCCL under CUDA_HOME=$(CUDA_HOME) NCCL_HOME=$(NCCL_HOME): building CPU-only (shm backend))
endif

$(OBJ_DIR)/plugin/backends/nccl/%.o $(OBJ_DIR)/plugin/backends/custom/%.o: PLUGIN_CFLAGS += $(CUDA_CFLAGS)
$(OBJ_DIR)/plugin/gpu.o: PLUGIN_CFLAGS += $(CUDA_CFLAGS)

$(OBJ_DIR)/%.o: %.c $(wildcard abi/*.h plugin/*.h plugin/backends/*/*.h kernels/*.h) | deps
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -c $< -o $@

$(OBJ_DIR)/%.cu.o: %.cu $(wildcard kernels/*.h kernels/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(PLUGIN): $(PLUGIN_OBJ) packaging/moecomm.map
	$(CC) -shared -o $@ $(PLUGIN_OBJ) -Wl,--version-script=packaging/moecomm.map -Wl,-z,defs \
	  -Wl,-soname,$(PLUGIN_FILE) $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++ -lpthread -lm

$(INTERNAL_A): $(PLUGIN_OBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/%.o: %.c $(wildcard abi/*.h host_shim/*.h tests/common/*.h) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) -c $< -o $@

$(SHIM): $(SHIM_OBJ)
	$(CC) -o $@ $^ $(HOST_LIBS) -lpthread -Wl,-rpath,'$$ORIGIN'

$(BUILD)/tests/%: tests/unit/%.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN) $(INTERNAL_A) $(wildcard tests/common/*.h plugin/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(INTERNAL_A) \
	  $(NCCL_LIBS) $(HOST_LIBS) -lstdc++ -lpthread

$(BUILD)/tests/gpu/%: tests/gpu/%.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN) $(wildcard tests/common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(HOST_LIBS) -lpthread

# The custom backend's GPU tests share a header; custom_kernels also links the kernels directly.
$(filter $(BUILD)/tests/gpu/custom_%,$(GPU_TEST_BIN)): tests/gpu/custom_util.h
ifeq ($(WITH_CUDA),1)
$(BUILD)/tests/gpu/custom_kernels: $(OBJ_DIR)/kernels/allreduce.cu.o
$(BUILD)/tests/gpu/custom_kernels: private HOST_LIBS := $(OBJ_DIR)/kernels/allreduce.cu.o $(HOST_LIBS) -lstdc++
endif

$(BENCH_COMMON_OBJ): $(wildcard bench/common/*.h)
$(BUILD)/bench/%: bench/%.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(BENCH_COMMON_OBJ) $(PLUGIN) \
                  $(wildcard bench/common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(BENCH_COMMON_OBJ) \
	  $(HOST_LIBS) $(NCCL_LIBS) -lpthread

demo: all
	$(SHIM) --demo

test: all
	@tests/run.sh $(BUILD)

# What the GPU runs need, without the CPU-only checkers (libffi, abigail) a GPU image may lack.
gpu-bins: deps plugin shim $(GPU_TEST_BIN) $(BENCH_BIN) $(filter %/shim_run,$(TEST_BIN))

gpu-test: gpu-bins
	@tests/run.sh --gpu $(BUILD)

bench: gpu-bins
	@bench/run.sh gpu $(BUILD)
	@bench/run.sh scatter $(BUILD)

bench-cpu: all
	@packaging/ensure-deps.sh bench-cpu
	@bench/run.sh cpu $(BUILD)

bench-mem: gpu-bins
	@bench/run.sh mem $(BUILD)

# ---- install, Debian package, ABI baseline and the ABI/packaging tests (packaging/, tests/abi/) --
# Layout (Debian policy 10.2: a plugin goes to a private directory): PREFIX/lib/moecomm/<plugin>,
# PREFIX/include/moecomm/ (moecomm.h and the frozen headers), PKGCONFIGDIR/moecomm.pc and
# PREFIX/bin/moecomm-shim, which finds ../lib/moecomm/ by itself.
PKGCONFIGDIR   ?= $(PREFIX)/lib/pkgconfig
DEB_MAINTAINER ?= moecomm developers <moecomm@localhost>
ABI_HEADERS    := abi/moecomm.h $(sort $(wildcard abi/moecomm_v*.h))
ABI_VERSION     = $(shell awk '$$2 == "MOECOMM_ABI_MAJOR" { M = $$3 } $$2 == "MOECOMM_ABI_MINOR" \
                    { m = $$3 } END { print M "." m }' abi/moecomm.h)
INSTALLED      := $(PREFIX)/lib/moecomm/$(PLUGIN_FILE) $(ABI_HEADERS:abi/%=$(PREFIX)/include/moecomm/%) \
                  $(PKGCONFIGDIR)/moecomm.pc $(PREFIX)/bin/moecomm-shim
DEB_PACKAGE    := $(if $(filter moecomm,$(PLUGIN_NAME)),moecomm,moecomm-$(PLUGIN_NAME))
DEB_FILE        = $(BUILD)/$(DEB_PACKAGE)_$(VERSION)_$(shell dpkg --print-architecture).deb

install: plugin shim
	install -d $(DESTDIR)$(PREFIX)/lib/moecomm $(DESTDIR)$(PREFIX)/include/moecomm \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PREFIX)/bin
	install -m 0644 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/moecomm/$(PLUGIN_FILE)
	install -m 0644 $(ABI_HEADERS) $(DESTDIR)$(PREFIX)/include/moecomm/
	install -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/bin/moecomm-shim
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@PLUGIN_FILE@|$(PLUGIN_FILE)|' \
	  -e 's|@ABI_VERSION@|$(ABI_VERSION)|' packaging/moecomm.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/moecomm.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/moecomm.pc

# Removes exactly what install put there, and the two moecomm directories once empty.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	for d in $(DESTDIR)$(PREFIX)/lib/moecomm $(DESTDIR)$(PREFIX)/include/moecomm; do \
	  if [ -d "$$d" ]; then rmdir --ignore-fail-on-non-empty "$$d"; fi; done

deb: plugin shim
	@packaging/ensure-deps.sh deb
	rm -rf $(BUILD)/deb
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(BUILD)/deb/root) PREFIX=/usr \
	  PKGCONFIGDIR=/usr/lib/pkgconfig
	packaging/mkdeb.sh $(BUILD)/deb/root $(DEB_FILE) $(DEB_PACKAGE) $(VERSION) $(WITH_CUDA) \
	  "$(NCCL_INC)" "$(DEB_MAINTAINER)"

abi-check: plugin
	@packaging/abi-check.sh check $(PLUGIN) $(BUILD)/abi

abi-baseline: plugin
	@packaging/abi-check.sh baseline $(PLUGIN) $(BUILD)/abi

deps-test:
	@packaging/ensure-deps.sh test

# tests/abi/NAME.c is the test binary BUILD/tests/abi-NAME, except lib_*.c (linked into each;
# lib_*_v1.c see only the frozen v1 header) and fake_*.c (fake plugins BUILD/abi/libfake_*.so).
# BUILD/abi/libmoecomm-alt.so is a second plugin variant (the same objects, plugin_name "alt").
ABI_LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/abi/lib_*.c))
ABI_FAKE_SO  := $(patsubst tests/abi/%.c,$(BUILD)/abi/lib%.so,$(wildcard tests/abi/fake_*.c))
ABI_TEST_BIN := $(patsubst tests/abi/%.c,$(BUILD)/tests/abi-%,\
                  $(filter-out tests/abi/lib_% tests/abi/fake_%,$(wildcard tests/abi/*.c)))
ABI_ALT      := $(BUILD)/abi/libmoecomm-alt.so
# Named here so that make never treats the fakes and helper objects as intermediate (deleted).
tests: $(ABI_TEST_BIN) $(ABI_FAKE_SO) $(ABI_LIB_OBJ)
ABI_MAKE_VARS := BUILD=$(abspath $(BUILD)) WITH_CUDA=$(WITH_CUDA) CUDA_HOME=$(CUDA_HOME) \
                 NCCL_HOME=$(NCCL_HOME) PLUGIN_NAME=$(PLUGIN_NAME) CC=$(CC)

$(BUILD)/abi/api-alt.o: plugin/api.c $(wildcard abi/*.h plugin/*.h) | deps
	@mkdir -p $(dir $@)
	$(CC) $(PLUGIN_CFLAGS) -UMC_PLUGIN_NAME -DMC_PLUGIN_NAME='"alt"' -c $< -o $@

$(ABI_ALT): $(BUILD)/abi/api-alt.o $(filter-out $(OBJ_DIR)/plugin/api.o,$(PLUGIN_OBJ)) packaging/moecomm.map
	$(CC) -shared -o $@ $(filter %.o,$^) -Wl,--version-script=packaging/moecomm.map -Wl,-z,defs \
	  -Wl,-soname,libmoecomm-alt.so $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++ -lpthread -lm

# fake_reexport: defines no entry point but links the plugin, whose entry dlsym then finds.
$(BUILD)/abi/libfake_reexport.so: ABI_FAKE_LIBS = -Wl,--no-as-needed $(PLUGIN) -Wl,-rpath,'$$ORIGIN/..'
$(BUILD)/abi/libfake_%.so: tests/abi/fake_%.c $(wildcard abi/*.h) $(PLUGIN) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fvisibility=hidden -shared -o $@ $< $(ABI_FAKE_LIBS)

$(BUILD)/tests/abi-%: tests/abi/%.c $(ABI_LIB_OBJ) $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN) \
                      $(ABI_ALT) $(ABI_FAKE_SO) $(SHIM) $(wildcard abi/*.h tests/abi/*.h tests/common/*.h) \
                      | deps-test
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) -DMC_SOURCE_DIR='"$(CURDIR)"' -DMC_MAKE_VARS='"$(ABI_MAKE_VARS)"' \
	  -o $@ $< $(ABI_LIB_OBJ) $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(HOST_LIBS) -lffi -lpthread

clean:
	rm -rf $(BUILD)
