# packaging/packaging.mk - install, Debian package, ABI baseline (included by the Makefile).
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
