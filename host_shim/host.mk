# SPDX-License-Identifier: Apache-2.0
# host_shim/host.mk - the host library and the shim application (included by the top Makefile).
#
# host_shim/lib/*.c is the host library BUILD/libmoecomm-host.a (loader, launcher, device, data,
# report): the code every host of the plugin needs, linked by the shim, the tests and the
# benchmarks.  host_shim/*.c is the application moecomm-shim on top of it.
SHIM_LIB_SRC := $(wildcard host_shim/lib/*.c)
SHIM_LIB_OBJ := $(SHIM_LIB_SRC:%.c=$(BUILD)/obj/%.o)
HOST_A       := $(BUILD)/libmoecomm-host.a
SHIM_OBJ     := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard host_shim/*.c))

.PHONY: host-lib
host-lib: $(HOST_A)
shim: $(SHIM) $(PLUGIN)

$(HOST_A): $(SHIM_LIB_OBJ)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(SHIM): $(SHIM_OBJ) $(HOST_A)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(SHIM_OBJ) $(HOST_A) $(HOST_LIBS) -lpthread -Wl,-rpath,'$$ORIGIN'
