# tests/tests.mk - the test binaries and `make test` / `make gpu-test` (included by the Makefile).
# tests/README.md describes the suites and the harness.

TEST_SRC     := $(wildcard tests/unit/*.c)
TEST_BIN     := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# GPU tests need the CUDA runtime; a CPU-only build has none (tests/run.sh says so).
GPU_TEST_SRC := $(if $(filter 1,$(WITH_CUDA)),$(wildcard tests/gpu/*.c))
GPU_TEST_BIN := $(GPU_TEST_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%)
TEST_COMMON_SRC := $(wildcard tests/common/*.c)
TEST_COMMON_OBJ := $(TEST_COMMON_SRC:%.c=$(BUILD)/obj/%.o)

tests: $(TEST_BIN) $(GPU_TEST_BIN)

$(BUILD)/tests/%: tests/unit/%.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN) $(INTERNAL_A)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -DMC_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) \
	  $(INTERNAL_A) $(NCCL_LIBS) $(HOST_LIBS) -lstdc++ -lpthread

$(BUILD)/tests/gpu/%: tests/gpu/%.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) \
	  $(HOST_LIBS) -lpthread

# custom_kernels and kern_* also link the kernels directly (simulated members in one process).
KERN_OBJ := $(filter $(OBJ_DIR)/kernels/%,$(PLUGIN_OBJ))
ifeq ($(WITH_CUDA),1)
KERN_TEST_BIN := $(BUILD)/tests/gpu/custom_kernels $(filter $(BUILD)/tests/gpu/kern_%,$(GPU_TEST_BIN))
$(KERN_TEST_BIN): $(KERN_OBJ)
$(KERN_TEST_BIN): private HOST_LIBS := $(KERN_OBJ) $(HOST_LIBS) -lstdc++
# ep_kernels links the EP kernels and the layout reference (plugin/ep_layout.c) from the archive;
# moe_gpu only the reference (it reaches the plugin through dlopen like the other GPU tests).
$(BUILD)/tests/gpu/ep_kernels $(BUILD)/tests/gpu/moe_gpu: $(INTERNAL_A)
$(BUILD)/tests/gpu/ep_kernels $(BUILD)/tests/gpu/moe_gpu: private HOST_LIBS := $(INTERNAL_A) $(HOST_LIBS) -lstdc++
endif

# kern_shape checks the kernels' host-side C (shape.c, rmsnorm_ref.c) on the CPU: it links those
# two files and not the plugin, so it builds and runs in CPU-only builds too.
KERN_HOST_OBJ := $(BUILD)/obj/kernels/shape.o $(BUILD)/obj/kernels/rmsnorm_ref.o
$(BUILD)/tests/kern_shape: tests/unit/kern_shape.c $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(KERN_HOST_OBJ)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -o $@ $< $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(KERN_HOST_OBJ) \
	  $(NCCL_LIBS) $(HOST_LIBS) -lpthread

# What the GPU runs need, without the CPU-only checkers (libffi, abigail) a GPU image may lack.
gpu-bins: deps plugin shim $(GPU_TEST_BIN) $(filter %/shim_run,$(TEST_BIN))

gpu-test: gpu-bins
	@tests/run.sh --gpu $(BUILD)

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
tests: $(ABI_TEST_BIN) $(ABI_FAKE_SO)
ABI_MAKE_VARS := BUILD=$(abspath $(BUILD)) WITH_CUDA=$(WITH_CUDA) CUDA_HOME=$(CUDA_HOME) \
                 NCCL_HOME=$(NCCL_HOME) PLUGIN_NAME=$(PLUGIN_NAME) CC=$(CC)

$(BUILD)/abi/api-alt.o: plugin/api.c | deps
	@mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(DEPFLAGS) -UMC_PLUGIN_NAME -DMC_PLUGIN_NAME='"alt"' -c $< -o $@

$(ABI_ALT): $(BUILD)/abi/api-alt.o $(filter-out $(OBJ_DIR)/plugin/api.o,$(PLUGIN_OBJ)) packaging/moecomm.map
	$(call msg,LD,$@)
	$(Q)$(CC) -shared -o $@ $(filter %.o,$^) -Wl,--version-script=packaging/moecomm.map -Wl,-z,defs \
	  -Wl,-soname,libmoecomm-alt.so $(NCCL_LIBS) $(CUDA_LIBS) -lstdc++ -lpthread -lm

# fake_reexport: defines no entry point but links the plugin, whose entry dlsym then finds.
$(BUILD)/abi/libfake_reexport.so: ABI_FAKE_LIBS = -Wl,--no-as-needed $(PLUGIN) -Wl,-rpath,'$$ORIGIN/..'
$(BUILD)/abi/libfake_%.so: tests/abi/fake_%.c $(PLUGIN) | deps
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -fvisibility=hidden -shared -o $@ $< $(ABI_FAKE_LIBS)

$(BUILD)/tests/abi-%: tests/abi/%.c $(ABI_LIB_OBJ) $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) $(PLUGIN) \
                      $(ABI_ALT) $(ABI_FAKE_SO) $(SHIM) | deps-test
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -DMC_SOURCE_DIR='"$(CURDIR)"' \
	  -DMC_MAKE_VARS='"$(ABI_MAKE_VARS)"' -o $@ $< $(ABI_LIB_OBJ) $(SHIM_LIB_OBJ) $(TEST_COMMON_OBJ) \
	  $(HOST_LIBS) -lffi -lpthread
