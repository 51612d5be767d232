# tests/tests.mk - the test binaries and `make test` / `make gpu-test` (included by the Makefile).
# tests/README.md describes the suites and the harness.

# Test binaries by purpose; each directory has its own link line, and BUILD/tests/<dir>/<name> is
# the binary of tests/<dir>/<name>.c (names are unique across directories):
#   contract/     the ABI and packaging contract, the plugin through dlopen only; lib_*.c are linked
#                 into each binary, fake_*.c are fake plugins BUILD/abi/libfake_*.so
#   core/         white-box core suites: they may include plugin/ headers (the internal archive)
#   conformance/  one matrix against every backend present (the plugin through dlopen; the CUDA
#                 runtime in CUDA builds, for device buffers); lib_*.c are linked into each binary
#   system/       the host shim, bootstrap, rendezvous, the Python package: white-box like core/
#   gpu/          GPU-only suites (CUDA builds only; each skips visibly without enough devices)
#   fuzz/         seed-corpus replays BUILD/tests/fuzz/fuzz_<target> (below)
TEST_COMMON_SRC := $(wildcard tests/common/*.c)
TEST_COMMON_OBJ := $(TEST_COMMON_SRC:%.c=$(BUILD)/obj/%.o)
test_bins = $(patsubst tests/$(1)/%.c,$(BUILD)/tests/$(1)/%,\
              $(filter-out tests/$(1)/lib_% tests/$(1)/fake_%,$(wildcard tests/$(1)/*.c)))
# nccl_lib tests the CUDA build's NCCL loader: CPU-only builds leave it out.
CORE_TEST_BIN   := $(filter-out $(if $(filter 1,$(WITH_CUDA)),,%/nccl_lib),$(call test_bins,core))
SYSTEM_TEST_BIN := $(call test_bins,system)
CONF_TEST_BIN   := $(call test_bins,conformance)
CONF_LIB_OBJ    := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/conformance/lib_*.c))
# GPU tests need the CUDA runtime; a CPU-only build has none (tests/run.sh says so).
GPU_TEST_BIN    := $(if $(filter 1,$(WITH_CUDA)),$(call test_bins,gpu))
TEST_BIN        := $(CORE_TEST_BIN) $(SYSTEM_TEST_BIN) $(CONF_TEST_BIN)

tests: $(TEST_BIN) $(GPU_TEST_BIN)

# core/ and system/: white-box, the plugin's objects from the internal archive.
WHITEBOX_LINK = $(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -DMC_SOURCE_DIR='"$(CURDIR)"' \
  -o $@ $< $(TEST_COMMON_OBJ) $(HOST_A) $(INTERNAL_A) $(NCCL_LIBS) $(HOST_LIBS) -lstdc++ -lpthread
$(BUILD)/tests/core/%: tests/core/%.c $(TEST_COMMON_OBJ) $(HOST_A) $(PLUGIN) $(INTERNAL_A)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(WHITEBOX_LINK)

$(BUILD)/tests/system/%: tests/system/%.c $(TEST_COMMON_OBJ) $(HOST_A) $(PLUGIN) $(INTERNAL_A)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(WHITEBOX_LINK)

# conformance/: black-box; cudart (in HOST_LIBS) for the GPU backends' buffers in CUDA builds.
$(BUILD)/tests/conformance/%: tests/conformance/%.c $(CONF_LIB_OBJ) $(TEST_COMMON_OBJ) $(HOST_A) \
                              $(PLUGIN)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -o $@ $< $(CONF_LIB_OBJ) $(TEST_COMMON_OBJ) \
	  $(HOST_A) $(HOST_LIBS) -lpthread

$(BUILD)/tests/gpu/%: tests/gpu/%.c $(TEST_COMMON_OBJ) $(HOST_A) $(PLUGIN)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -o $@ $< $(TEST_COMMON_OBJ) $(HOST_A) \
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
$(BUILD)/tests/core/kern_shape: tests/core/kern_shape.c $(TEST_COMMON_OBJ) $(HOST_A) $(KERN_HOST_OBJ)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -o $@ $< $(TEST_COMMON_OBJ) $(HOST_A) $(KERN_HOST_OBJ) \
	  $(NCCL_LIBS) $(HOST_LIBS) -lpthread

# What the GPU runs need, without the CPU-only checkers (libffi, abigail) a GPU image may lack.
gpu-bins: deps plugin shim $(GPU_TEST_BIN) $(CONF_TEST_BIN) $(filter %/shim_run,$(TEST_BIN))

gpu-test: gpu-bins
	@tests/run.sh --gpu $(BUILD)

deps-test:
	@packaging/ensure-deps.sh test


# contract/: BUILD/abi/libmoecomm-alt.so is a second plugin variant (the same objects, plugin_name
# "alt"); the binaries may run make (MC_MAKE_VARS) and call libffi.
CONTRACT_LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/contract/lib_*.c))
ABI_FAKE_SO      := $(patsubst tests/contract/%.c,$(BUILD)/abi/lib%.so,\
                      $(wildcard tests/contract/fake_*.c))
CONTRACT_TEST_BIN := $(call test_bins,contract)
ABI_ALT          := $(BUILD)/abi/libmoecomm-alt.so
TEST_BIN         += $(CONTRACT_TEST_BIN)
tests: $(CONTRACT_TEST_BIN) $(ABI_FAKE_SO)
ABI_MAKE_VARS := BUILD=$(abspath $(BUILD)) WITH_CUDA=$(WITH_CUDA) CUDA_HOME=$(CUDA_HOME) \
                 NCCL_HOME=$(NCCL_HOME) PLUGIN_NAME=$(PLUGIN_NAME) CC=$(CC)

$(BUILD)/abi/api-alt.o: plugin/api.c | deps
	@mkdir -p $(dir $@)
	$(call msg,CC,$@)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(DEPFLAGS) -UMC_PLUGIN_NAME -DMC_PLUGIN_NAME='"alt"' -c $< -o $@

$(ABI_ALT): $(BUILD)/abi/api-alt.o $(filter-out $(OBJ_DIR)/plugin/api.o,$(PLUGIN_OBJ)) packaging/moecomm.map
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -shared -o $@ $(filter %.o,$^) -Wl,--version-script=packaging/moecomm.map \
	  -Wl,-z,defs \
	  -Wl,-soname,libmoecomm-alt.so $(CUDA_LIBS) -lstdc++ -lpthread -lm

# fake_reexport: defines no entry point but links the plugin, whose entry dlsym then finds.
$(BUILD)/abi/libfake_reexport.so: ABI_FAKE_LIBS = -Wl,--no-as-needed $(PLUGIN) -Wl,-rpath,'$$ORIGIN/..'
$(BUILD)/abi/libfake_%.so: tests/contract/fake_%.c $(PLUGIN) | deps
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -fvisibility=hidden -shared -o $@ $< $(ABI_FAKE_LIBS)

$(BUILD)/tests/contract/%: tests/contract/%.c $(CONTRACT_LIB_OBJ) $(TEST_COMMON_OBJ) $(HOST_A) \
                           $(PLUGIN) $(ABI_ALT) $(ABI_FAKE_SO) $(SHIM) | deps-test
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(CUDA_CFLAGS) $(DEPFLAGS) -DMC_SOURCE_DIR='"$(CURDIR)"' \
	  -DMC_MAKE_VARS='"$(ABI_MAKE_VARS)"' -o $@ $< $(CONTRACT_LIB_OBJ) $(TEST_COMMON_OBJ) $(HOST_A) \
	  $(HOST_LIBS) -lffi -lpthread

# Fuzzing.  tests/fuzz/<target>.c defines LLVMFuzzerTestOneInput.  `make test` replays each
# target's seed corpus (tests/fuzz/corpus/<target>/) through BUILD/tests/fuzz/fuzz_<target>, built with
# the normal compiler and tests/fuzz/replay.c.  `make fuzz FUZZ_SECONDS=N` builds every target with
# clang's libFuzzer and sanitizers into BUILD/fuzz/bin/ and runs each for N seconds (default 60); new
# inputs go to BUILD/fuzz/<target>/found/, crashes to BUILD/fuzz/<target>/crashes/ (never into the
# source tree).  Replay a finding: BUILD/tests/fuzz/fuzz_<target> BUILD/fuzz/<target>/crashes.
FUZZ_TARGETS    := $(patsubst tests/fuzz/%.c,%,$(filter-out tests/fuzz/replay.c,$(wildcard tests/fuzz/*.c)))
FUZZ_REPLAY_BIN := $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/fuzz_%)
FUZZ_REPLAY_OBJ := $(BUILD)/obj/tests/fuzz/replay.o
tests: $(FUZZ_REPLAY_BIN)

$(FUZZ_REPLAY_OBJ): CFLAGS_ALL += -DMC_SOURCE_DIR='"$(CURDIR)"'
$(BUILD)/tests/fuzz/fuzz_%: tests/fuzz/%.c $(FUZZ_REPLAY_OBJ) $(TEST_COMMON_OBJ) $(HOST_A) $(INTERNAL_A)
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(FUZZ_REPLAY_OBJ) $(TEST_COMMON_OBJ) $(HOST_A) \
	  $(INTERNAL_A) $(NCCL_LIBS) $(HOST_LIBS) -lstdc++ -lpthread

FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 8192
FUZZ_CC      ?= clang
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -pthread -D_GNU_SOURCE -I. -DMC_WITH_CUDA=0 -DMC_VERSION='"$(VERSION)"' \
                $(filter-out -Wno-format-truncation,$(WARN))
# The plugin sources the targets reach, built instrumented (not the gcc-built archive).
FUZZ_PLUGIN_SRC := plugin/sha256.c plugin/store_wire.c plugin/store_table.c plugin/store_core.c \
                   plugin/store_client.c plugin/log.c plugin/error.c plugin/util.c plugin/topo.c \
                   plugin/config.c plugin/planner.c $(wildcard plugin/backends/*/*_config.c)
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/bin/%)

.PHONY: fuzz
$(FUZZ_DIR)/bin/%: tests/fuzz/%.c $(FUZZ_PLUGIN_SRC) tests/core/store_peer.h
	@mkdir -p $(dir $@)
	$(call msg,FUZZCC,$@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_PLUGIN_SRC)

# Each target runs for FUZZ_SECONDS; its last lines (execs, corpus, findings) are shown; the
# status is 1 when any target found something.
fuzz: $(FUZZ_BIN)
	@status=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/$$t/found $(FUZZ_DIR)/$$t/crashes; \
	  echo "=== fuzz $$t: $(FUZZ_SECONDS) s"; \
	  $(FUZZ_DIR)/bin/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 \
	    -rss_limit_mb=2048 \
	    -close_fd_mask=2 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/$$t/crashes/ \
	    $(FUZZ_DIR)/$$t/found tests/fuzz/corpus/$$t > $(FUZZ_DIR)/$$t/log 2>&1 || status=1; \
	  grep -E '^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|SUMMARY|==[0-9]+==ERROR)' \
	    $(FUZZ_DIR)/$$t/log; \
	  echo "    findings: $$(ls $(FUZZ_DIR)/$$t/crashes | wc -l) in $(FUZZ_DIR)/$$t/crashes" \
	       "(log: $(FUZZ_DIR)/$$t/log)"; \
	done; exit $$status

# Fake libnccl.so.2 variants for tests/core/nccl_lib.c.
FAKE_NCCL := $(foreach v,good old nosend,$(BUILD)/tests/nccl/$(v)/libnccl.so.2)
$(BUILD)/tests/nccl/good/libnccl.so.2: FAKE_NCCL_DEFS := -DFAKE_VERSION=22809
$(BUILD)/tests/nccl/old/libnccl.so.2: FAKE_NCCL_DEFS := -DFAKE_VERSION=21800
$(BUILD)/tests/nccl/nosend/libnccl.so.2: FAKE_NCCL_DEFS := -DFAKE_VERSION=22809 -DFAKE_NO_SEND
$(FAKE_NCCL): tests/core/fake_nccl.c
	@mkdir -p $(dir $@)
	$(call msg,CCLD,$@)
	$(Q)$(CC) -shared -fPIC $(FAKE_NCCL_DEFS) -o $@ $<
ifeq ($(WITH_CUDA),1)
$(BUILD)/tests/core/nccl_lib: $(FAKE_NCCL)
endif

# The CPU suite under AddressSanitizer and UndefinedBehaviorSanitizer: the plugin, the host library
# and the tests instrumented, built into BUILD-asan without CUDA (the CUDA runtime and ASan do not
# mix), run by tests/run.sh.  Not in it: the GPU suites, the Python suite (an uninstrumented
# interpreter cannot load an instrumented plugin), contract/abi_install and contract/abi_deb (they
# package the build: an instrumented one depends on libasan and libubsan, and their hosts are not
# instrumented).  Leaks are reported at each test process's own exit (ranks leave with _exit, so
# only the parent's allocations are checked).
ASAN_BUILD := $(BUILD)-asan
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_RUN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:print_summary=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                MC_TEST_EXCLUDE='^contract/abi_(install|deb)$$'

.PHONY: cpu-test-bins
cpu-test-bins: deps plugin shim $(TEST_BIN) $(ABI_FAKE_SO) $(FUZZ_REPLAY_BIN)

test-asan:
	@$(MAKE) BUILD=$(ASAN_BUILD) WITH_CUDA=0 CFLAGS="-O1 -g $(ASAN_FLAGS)" LDFLAGS="$(ASAN_FLAGS)" \
	  cpu-test-bins
	@$(ASAN_RUN_ENV) tests/run.sh $(ASAN_BUILD)
