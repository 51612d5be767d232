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
  CUDA_CFLAGS := -isystem $(CUDA_HOME)/include -isystem $(dir $(NCCL_INC))
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
GPU_TEST_SRC := $(wildcard tests/gpu/*.c)
GPU_TEST_BIN := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%)
TEST_COMMON_SRC := $(wildcard tests/common/*.c)
TEST_COMMON_OBJ := $(TEST_COMMON_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_SRC    := $(wildcard bench/*.c)
BENCH_BIN    := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all plugin shim tests demo test gpu-test bench bench-cpu bench-mem install uninstall \
        abi-check deb clean help deps

all: deps plugin shim tests

help:
	@echo "make            build the plugin, the shim and the tests into $(BUILD)/"
	@echo "make demo       MoE layer step through the shim (GPUs where present, else shm ranks)"
	@echo "make test       every CPU test (GPU tests skip with a line); ends 'N passed, N failed'"
	@echo "make gpu-test   the GPU tests (needs CUDA devices)"
	@echo "make bench      all-reduce benchmark, custom and NCCL (GPU); JSON in bench/results/"
	@echo "make bench-cpu  shm all-reduce against Open MPI; make bench-mem: communicator memory (GPU)"
	@echo "make install PREFIX=... DESTDIR=... | make uninstall | make deb | make abi-check"

deps:
	@packaging/ensure-deps.sh build

plugin: $(PLUGIN)
shim: $(SHIM) $(PLUGIN)
tests: $(TEST_BIN) $(GPU_TEST_BIN) $(BENCH_BIN)

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

$(BUILD)/bench/%: bench/%.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(HOST_LIBS) \
	  $(NCCL_LIBS) -lpthread

demo: all
	$(SHIM) --demo

test: all
	@tests/run.sh $(BUILD)

gpu-test: all
	@tests/run.sh --gpu $(BUILD)

bench: all
	@bench/run.sh gpu $(BUILD)

bench-cpu: all
	@packaging/ensure-deps.sh bench-cpu
	@bench/run.sh cpu $(BUILD)

bench-mem: all
	@bench/run.sh mem $(BUILD)

clean:
	rm -rf $(BUILD)
