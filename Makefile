# SPDX-License-Identifier: Apache-2.0
# moecomm - the one entry point.  `make help` lists the targets.
#
# This file builds the plugin and the shim and names the top-level targets; the tests, the
# benchmarks and the packaging add their rules from their own directories (*.mk below).
#
# CUDA_HOME and NCCL_HOME may be overridden.  NCCL_HOME may hold lib/ or lib64/ with libnccl.so or
# only libnccl.so.2 (a pip wheel's layout).  Without nvcc or nccl.h the plugin is built CPU-only
# (shm backend), which `make` says once.  Output is one short line per file; V=1 prints commands.

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

# Quiet by default: one line per target; V=1 shows every command.
V ?= 0
ifeq ($(V),1)
  Q :=
  msg = @true
else
  Q := @
  msg = @printf '  %-7s %s\n' '$(1)' '$(2)'
  MAKEFLAGS += --no-print-directory
endif
# Parallel by default (make -jN on the command line wins; a sub-make shares its parent's jobs).
ifeq ($(filter -j%,$(MAKEFLAGS))$(filter-out 0,$(MAKELEVEL)),)
  MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif

CC      ?= gcc
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
# gcc warns about snprintf results it cannot prove fit; every such call here truncates on purpose.
ifneq ($(findstring clang,$(shell $(CC) --version 2>/dev/null | head -n 1)),clang)
  WARN  += -Wno-format-truncation
endif
CFLAGS  ?= -O2 -g
LDFLAGS ?=
DEPFLAGS = -MMD -MP
CFLAGS_ALL := -std=c11 $(CFLAGS) $(WARN) -fPIC -pthread -D_GNU_SOURCE -I. \
              -DMC_WITH_CUDA=$(WITH_CUDA) -DMC_VERSION='"$(VERSION)"'
PLUGIN_CFLAGS := $(CFLAGS_ALL) -fvisibility=hidden -DMC_PLUGIN_NAME='"$(PLUGIN_NAME)"'
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-fvisibility=hidden,-Wall \
             -Xptxas -O3 -lineinfo -I.

ifeq ($(WITH_CUDA),1)
  CUDA_CFLAGS := -isystem $(dir $(NCCL_INC)) -isystem $(CUDA_HOME)/include
  CUDA_LIBS   := -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt
  # The plugin loads NCCL at run time (plugin/backends/nccl/nccl_lib.h); tests and benchmarks that
  # call NCCL themselves link it, and every run of the build tree points the plugin at it.
  NCCL_LIBS   := $(NCCL_SO) -Wl,-rpath,$(NCCL_LIBDIR)
  export MOECOMM_NCCL_PATH ?= $(NCCL_SO)
endif

PLUGIN_FILE := $(if $(filter moecomm,$(PLUGIN_NAME)),libmoecomm.so,libmoecomm-$(PLUGIN_NAME).so)
PLUGIN      := $(BUILD)/$(PLUGIN_FILE)
# The plugin's objects as an archive, for the white-box tests (tests/core/, tests/system/).
INTERNAL_A  := $(BUILD)/libmoecomm-internal.a
SHIM        := $(BUILD)/moecomm-shim

# A backend's *_config.c (its declared variables) and the kernels' plain C (shapes, the reference
# arithmetic the CPU path shares) are built everywhere; the rest of nccl and custom, and the device
# side of expert parallelism they share (plugin/backends/ep_dev.c), only with CUDA.
CORE_SRC    := $(wildcard plugin/*.c plugin/backends/shm/*.c plugin/backends/*/*_config.c \
                          kernels/*.c)
CUDA_SRC    := $(filter-out %_config.c,$(wildcard plugin/backends/nccl/*.c plugin/backends/custom/*.c \
                                          plugin/backends/*.c))
KERNEL_SRC  := $(wildcard kernels/*.cu)
ifeq ($(WITH_CUDA),1)
  PLUGIN_SRC := $(CORE_SRC) $(CUDA_SRC)
else
  PLUGIN_SRC := $(CORE_SRC)
  KERNEL_SRC :=
endif
OBJ_DIR     := $(BUILD)/obj-$(PLUGIN_NAME)
PLUGIN_OBJ  := $(PLUGIN_SRC:%.c=$(OBJ_DIR)/%.o) $(KERNEL_SRC:%.cu=$(OBJ_DIR)/%.cu.o)
HOST_LIBS   := -ldl -lm $(CUDA_LIBS)

.PHONY: all plugin shim tests demo test test-asan gpu-test bench bench-cpu bench-mem install \
        uninstall abi-check abi-baseline deb clean help deps deps-test format

all: deps plugin shim tests

help:
	@echo "make            build the plugin, the shim and the tests into $(BUILD)/"
	@echo "make demo       MoE layer step through the shim (GPUs where present, else shm ranks)"
	@echo "make test       every CPU test (GPU tests skip with a line); ends 'N passed, N failed, N skipped'"
	@echo "make test-asan  the CPU tests built with ASan and UBSan into $(BUILD)-asan/ (CPU-only)"
	@echo "make gpu-test   the GPU tests (needs CUDA devices)"
	@echo "make bench      all-reduce, fused all-reduce+RMSNorm and scatter benchmarks (GPU); JSON in $(BUILD)/bench-results/"
	@echo "make bench-save make bench, keeping its JSON in bench/results/ (the repository)"
	@echo "make bench-cpu  shm all-reduce against Open MPI; make bench-mem: communicator memory (GPU)"
	@echo "make bench-ep   expert-parallel dispatch/combine: NVLink, NCCL, torch all_to_all (GPU)"
	@echo "make install PREFIX=... DESTDIR=... | make uninstall | make deb | make wheel"
	@echo "make abi-check | make abi-baseline | make fuzz FUZZ_SECONDS=N | make format"
	@echo "V=1 prints every command"

deps:
	@packaging/ensure-deps.sh build

plugin: $(PLUGIN)

ifneq ($(WITH_CUDA),1)
ifeq ($(origin WITH_CUDA),file)
$(info moecomm: no CUDA toolkit with NCCL under CUDA_HOME=$(CUDA_HOME) NCCL_HOME=$(NCCL_HOME): building CPU-only (shm backend))
endif
endif

$(OBJ_DIR)/plugin/backends/nccl/%.o $(OBJ_DIR)/plugin/backends/custom/%.o: PLUGIN_CFLAGS += $(CUDA_CFLAGS)
$(OBJ_DIR)/plugin/backends/ep_dev.o: PLUGIN_CFLAGS += $(CUDA_CFLAGS)
$(OBJ_DIR)/plugin/gpu.o $(OBJ_DIR)/plugin/norm.o: PLUGIN_CFLAGS += $(CUDA_CFLAGS)

$(OBJ_DIR)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(OBJ_DIR)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(call msg,NVCC,$<)
	$(Q)$(NVCC) $(NVCCFLAGS) $(DEPFLAGS) -c $< -o $@

$(PLUGIN): $(PLUGIN_OBJ) packaging/moecomm.map
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -shared -o $@ $(PLUGIN_OBJ) -Wl,--version-script=packaging/moecomm.map -Wl,-z,defs \
	  -Wl,-soname,$(PLUGIN_FILE) $(CUDA_LIBS) -lstdc++ -lpthread -lm

$(INTERNAL_A): $(PLUGIN_OBJ)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# Host-side C (shim, tests, benchmarks): not part of the plugin.
$(BUILD)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(call msg,CC,$<)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -c $< -o $@

include host_shim/host.mk
include tests/tests.mk
include bench/bench.mk
include packaging/packaging.mk
include packaging/python/python.mk

# Objects linked into several binaries: make must not delete them as intermediates.
.SECONDARY: $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(BENCH_COMMON_OBJ) $(CONTRACT_LIB_OBJ) $(CONF_LIB_OBJ)

demo: deps plugin shim
	$(SHIM) --demo

test: all
	@tests/run.sh $(BUILD)

# Rewrites the C and CUDA sources to .clang-format (make test checks it: BUILD/tests/contract/format).
format:
	@packaging/format.sh fix .

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
