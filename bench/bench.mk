# SPDX-License-Identifier: Apache-2.0
# bench/bench.mk - the benchmarks (included by the Makefile).  Method and results: bench/NOTES-*.md.
#
# Benchmarks link the host library (host_shim/lib) and bench/common, not the test harness.
# Their JSON goes to BENCH_OUT (default BUILD/bench-results/, out of the source tree);
# `make bench-save` (or BENCH_OUT=bench/results) keeps a `make bench` run in the repository.
BENCH_SRC    := $(wildcard bench/*.c)
BENCH_BIN    := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
BENCH_COMMON_SRC := $(wildcard bench/common/*.c)
BENCH_COMMON_OBJ := $(BENCH_COMMON_SRC:%.c=$(BUILD)/obj/%.o)
BENCH_OUT    ?= $(BUILD)/bench-results
export BENCH_OUT

.PHONY: bench-save bench-ep
tests gpu-bins: $(BENCH_BIN)

$(BUILD)/bench/%: bench/%.c $(BENCH_COMMON_OBJ) $(HOST_A) $(PLUGIN)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -o $@ $< $(BENCH_COMMON_OBJ) $(HOST_A) \
	  $(HOST_LIBS) $(NCCL_LIBS) -lpthread

BENCH_GPU_RUNS = bench/run.sh gpu $(BUILD) && bench/run.sh fused $(BUILD) && \
                 bench/run.sh scatter $(BUILD)

bench: gpu-bins
	@$(BENCH_GPU_RUNS)

bench-save: gpu-bins
	@export BENCH_OUT=$(CURDIR)/bench/results && $(BENCH_GPU_RUNS)

bench-cpu: all
	@packaging/ensure-deps.sh bench-cpu
	@bench/run.sh cpu $(BUILD)

bench-mem: gpu-bins
	@bench/run.sh mem $(BUILD)

# Expert-parallel dispatch and combine: NVLink kernels, NCCL path, torch all_to_all_single.
bench-ep: gpu-bins
	@bench/run.sh ep $(BUILD)

# kern_sim: the kernels themselves with simulated members on one GPU (CUDA and kernels/ only).
# allreduce and fused also link the kernels: the standalone norm (kernels/mc_norm.h) is their
# compute kernel and the unfused pipeline's second half; fused checks against rmsnorm_ref.c.
ifeq ($(WITH_CUDA),1)
KERN_SIM_OBJ := $(filter $(OBJ_DIR)/kernels/%,$(PLUGIN_OBJ))
KERN_BENCH_BIN := $(BUILD)/bench/kern_sim $(BUILD)/bench/allreduce $(BUILD)/bench/fused
$(KERN_BENCH_BIN): $(KERN_SIM_OBJ)
$(KERN_BENCH_BIN): private HOST_LIBS := $(KERN_SIM_OBJ) $(HOST_LIBS) -lstdc++
endif
