# mk/dist.mk - moonopt.dist, training across processes on MPI (included by the Makefile).
#
#   make            also builds $(BUILD)/moonopt/dist_core.so when Open MPI's development
#                   files are found (pkg-config ompi-c; MPI=no skips it, MPI=<pkg> picks
#                   another pkg-config name, e.g. mpich). lua/moonopt/dist.lua is the public
#                   module; without the C part, require "moonopt.dist" raises a clear error.
#   make install / luarocks make   install dist_core.so next to core.so when it was built.
#
# The C module links libmpi, the core (libmoonopt.a) and the binding's argument helpers
# (an archive of the binding's objects: the linker takes only what dist_core.c uses), so
# core/ and lua/binding/ never see mpi.h.

MPI ?= auto
ifeq ($(MPI),auto)
  MPI_PKG := $(shell $(PKG_CONFIG) --exists ompi-c 2>/dev/null && echo ompi-c)
else ifeq ($(MPI),no)
  MPI_PKG :=
else
  MPI_PKG := $(MPI)
endif

DIST_SO := $(BUILD)/moonopt/dist_core.so
BIND_A  := $(BUILD)/libmoonopt-bind.a

.PHONY: dist-module

ifneq ($(MPI_PKG),)
MPI_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(MPI_PKG))
MPI_LIBS   := $(shell $(PKG_CONFIG) --libs $(MPI_PKG))
dist-module: $(DIST_SO)
else
dist-module:
endif

all: dist-module
module: dist-module

$(BUILD)/lua/dist:
	mkdir -p $@

$(BUILD)/lua/dist/%.o: lua/dist/%.c $(CORE_HDR) $(BIND_HDR) | $(BUILD)/lua/dist
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) $(MPI_CFLAGS) -Ilua/binding -c $< -o $@

$(BIND_A): $(BIND_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(DIST_SO): $(BUILD)/lua/dist/dist_core.o $(BIND_A) $(BUILD)/libmoonopt.a | $(BUILD)/moonopt
	$(CC) -shared $(CFLAGS) $(EXTRA_LDFLAGS) -o $@ $< $(BIND_A) $(BUILD)/libmoonopt.a $(MPI_LIBS) $(LIBS)

# installs dist_core.so when it was built (both install paths call this with their LIBDIR)
define install_dist
	if [ -f $(DIST_SO) ]; then install -D -m 755 $(DIST_SO) $(1)/moonopt/dist_core.so; fi
endef
install: install-dist
install-dist: all
	$(call install_dist,$(LUA_LIB))
luarocks-install: luarocks-install-dist
luarocks-install-dist: module
	$(call install_dist,$(LIBDIR))
.PHONY: install-dist luarocks-install-dist

# the MPI test scripts are linted with the rest
LINT_DIRS += tests/dist
