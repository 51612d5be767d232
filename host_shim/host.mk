# host_shim/host.mk - the shim (included by the top Makefile).
# The shim's loader and launcher are also the reference code the tests and benchmarks link.
SHIM_LIB_SRC := $(filter-out host_shim/main.c,$(wildcard host_shim/*.c))
SHIM_LIB_OBJ := $(SHIM_LIB_SRC:%.c=$(BUILD)/obj/%.o)
SHIM_OBJ     := $(BUILD)/obj/host_shim/main.o $(SHIM_LIB_OBJ)

shim: $(SHIM) $(PLUGIN)

$(SHIM): $(SHIM_OBJ)
	$(call msg,LD,$@)
	$(Q)$(CC) -o $@ $^ $(HOST_LIBS) -lpthread -Wl,-rpath,'$$ORIGIN'
