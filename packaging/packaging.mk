# SPDX-License-Identifier: Apache-2.0
# packaging/packaging.mk - install, Debian package, ABI baseline (included by the Makefile).
# Layout (Debian policy 10.2: a plugin goes to a private directory): PREFIX/lib/moecomm/<plugin>,
# PREFIX/include/moecomm/ (moecomm.h and the frozen headers), PKGCONFIGDIR/moecomm.pc,
# PREFIX/bin/moecomm-shim, which finds ../lib/moecomm/ by itself, and its manual page.
PKGCONFIGDIR   ?= $(PREFIX)/lib/pkgconfig
MANDIR         ?= $(PREFIX)/share/man
# The Maintainer field of `make deb` (name and address of whoever publishes the packages).
DEB_MAINTAINER ?= moecomm maintainers <maintainers@moecomm.dev>
ABI_HEADERS    := abi/moecomm.h $(sort $(wildcard abi/moecomm_v*.h))
ABI_VERSION     = $(shell awk '$$2 == "MOECOMM_ABI_MAJOR" { M = $$3 } $$2 == "MOECOMM_ABI_MINOR" \
                    { m = $$3 } END { print M "." m }' abi/moecomm.h)
INSTALLED      := $(PREFIX)/lib/moecomm/$(PLUGIN_FILE) $(ABI_HEADERS:abi/%=$(PREFIX)/include/moecomm/%) \
                  $(PKGCONFIGDIR)/moecomm.pc $(PREFIX)/bin/moecomm-shim $(MANDIR)/man1/moecomm-shim.1
# Package names: moecomm (CPU-only) or moecomm-cuda (CUDA kernels); moecomm-<name>[-cuda] for
# PLUGIN_NAME=<name>.  mkdeb.sh adds -cuda and the -dbgsym package; both land in BUILD/deb/.
DEB_BASE       := $(if $(filter moecomm,$(PLUGIN_NAME)),moecomm,moecomm-$(PLUGIN_NAME))
DEB_STAGE       = $(BUILD)/deb-stage
# The oldest NCCL the plugin accepts at run time (plugin/backends/nccl/nccl_lib.h): the Suggests.
DEB_NCCL_MIN    = $(shell awk -F'[(), ]+' '$$2 == "MC_NCCL_MIN_VERSION" { print $$4 "." $$5 }' \
                    plugin/backends/nccl/nccl_lib.h)

install: plugin shim
	install -d $(DESTDIR)$(PREFIX)/lib/moecomm $(DESTDIR)$(PREFIX)/include/moecomm \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/moecomm/$(PLUGIN_FILE)
	install -m 0644 $(ABI_HEADERS) $(DESTDIR)$(PREFIX)/include/moecomm/
	install -m 0755 $(SHIM) $(DESTDIR)$(PREFIX)/bin/moecomm-shim
	install -m 0644 packaging/moecomm-shim.1 $(DESTDIR)$(MANDIR)/man1/moecomm-shim.1
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@PLUGIN_FILE@|$(PLUGIN_FILE)|' \
	  -e 's|@ABI_VERSION@|$(ABI_VERSION)|' packaging/moecomm.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/moecomm.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/moecomm.pc

# Removes exactly what install put there, and the two moecomm directories once empty.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	for d in $(DESTDIR)$(PREFIX)/lib/moecomm $(DESTDIR)$(PREFIX)/include/moecomm; do \
	  if [ -d "$$d" ]; then rmdir --ignore-fail-on-non-empty "$$d"; fi; done

# The multiarch pkg-config directory: moecomm.pc names an architecture's plugin.
deb: plugin shim
	@packaging/ensure-deps.sh deb
	rm -rf $(DEB_STAGE) $(BUILD)/deb
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_STAGE)/root) PREFIX=/usr \
	  PKGCONFIGDIR=/usr/lib/$$(dpkg-architecture -qDEB_HOST_MULTIARCH)/pkgconfig MANDIR=/usr/share/man
	packaging/mkdeb.sh $(DEB_STAGE)/root $(BUILD)/deb $(DEB_BASE) $(VERSION) $(WITH_CUDA) \
	  "$(DEB_NCCL_MIN)" "$(DEB_MAINTAINER)"

abi-check: plugin
	@packaging/abi-check.sh check $(PLUGIN) $(BUILD)/abi

abi-baseline: plugin
	@packaging/abi-check.sh baseline $(PLUGIN) $(BUILD)/abi
