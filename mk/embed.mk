# mk/embed.mk - embedding moonopt in a host C application (included by the Makefile).
#
#   make embed-lib        $(BUILD)/libmoonopt-lua.a and .so: the Lua binding plus every
#                         lua/moonopt/**.lua compiled in (mo_lua_openlibs); the core stays
#                         in libmoonopt (Lua-free hosts link only that)
#   make embed-demo       builds and runs examples/host/host.c (Lua script drives the host's
#                         own float array) and examples/host/kernels_only.c (no Lua)
#   make install-embed    installs libmoonopt-lua.{a,so} and the pkg-config files
#                         (install-embed-lib + install-pc); `make install` installs the rest
#   make install-pc       moonopt.pc (core + binding; Requires lua) and moonopt-core.pc
#                         (core only) into $(PREFIX)/lib/pkgconfig
#   make embed-install-test   install into a temporary prefix, build the examples with
#                         pkg-config, run them (tests/embed/install_test.sh; ~30 s)
#
# Test programs: tests/embed/host_*.c and tests/embed/threads.c link libmoonopt-lua.a
# (they need the compiled-in Lua files) and -pthread; the Makefile's generic
# $(BUILD)/tests/embed_% rule still builds the other tests/embed/*.c.

EMBED_LUA_FILES := $(sort $(shell find lua/moonopt -name '*.lua' ! -name '.*' ! -path 'lua/moonopt/dist*' 2>/dev/null))
EMBED_GEN_C     := $(BUILD)/gen/moonopt_lua_sources.c
EMBED_GEN_O     := $(BUILD)/gen/moonopt_lua_sources.o
EMBED_LIB_A     := $(BUILD)/libmoonopt-lua.a
EMBED_LIB_SO    := $(BUILD)/libmoonopt-lua.so.$(SO_VERSION)
EMBED_PC_DIR    := $(DESTDIR)$(PREFIX)/lib/pkgconfig
EMBED_LIBDIR    := $(DESTDIR)$(PREFIX)/lib

.PHONY: embed-lib embed-demo install-embed install-embed-lib install-pc embed-install-test \
        mo-embed-regenerate

embed-lib: $(EMBED_LIB_A) $(EMBED_LIB_SO)

# The generator runs on every make but rewrites the C file only when a Lua file changed
# (or one was added or removed), so the object is rebuilt only then.
mo-embed-regenerate:

$(EMBED_GEN_C): tools/embed_lua.lua mo-embed-regenerate
	@mkdir -p $(@D)
	@$(LUA) tools/embed_lua.lua --root lua --out $@ --function mo_lua_openlibs \
	    --cmodule moonopt.core=luaopen_moonopt_core $(EMBED_LUA_FILES)

$(EMBED_GEN_O): $(EMBED_GEN_C) lua/binding/moonopt_lua.h core/moonopt.h
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -Ilua/binding -c $< -o $@

$(EMBED_LIB_A): $(BIND_OBJ) $(EMBED_GEN_O)
	rm -f $@
	$(AR) rcs $@ $^

# Links against libmoonopt.so (one copy of the core in a process); the lua_* symbols
# come from the host's Lua, as for any Lua C module.
$(EMBED_LIB_SO): $(BIND_OBJ) $(EMBED_GEN_O) $(BUILD)/libmoonopt.so.$(SO_VERSION)
	$(CC) -shared -Wl,-soname,libmoonopt-lua.so.$(SONAME_MAJOR) $(EXTRA_LDFLAGS) -o $@ \
	    $(BIND_OBJ) $(EMBED_GEN_O) -L$(BUILD) -lmoonopt -lm
	ln -sf libmoonopt-lua.so.$(SO_VERSION) $(BUILD)/libmoonopt-lua.so.$(SONAME_MAJOR)
	ln -sf libmoonopt-lua.so.$(SONAME_MAJOR) $(BUILD)/libmoonopt-lua.so

# ---- tests that need the compiled-in Lua files, and threads ----
EMBED_LUA_TESTS := $(patsubst tests/embed/%.c,$(BUILD)/tests/embed_%,\
                     $(wildcard tests/embed/host_*.c tests/embed/threads.c))
$(EMBED_LUA_TESTS): $(BUILD)/tests/embed_%: tests/embed/%.c $(EMBED_LIB_A) $(BUILD)/libmoonopt.a \
                    $(CORE_HDR) $(BIND_HDR) tests/c/ctest.h | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -pthread -Ilua/binding -Itests/c \
	    -DMO_TEST_BUILD_DIR='"$(BUILD)"' $< -o $@ \
	    $(EMBED_LIB_A) $(BUILD)/libmoonopt.a $(LUA_LIBS) $(LIBS) -pthread $(EXTRA_LDFLAGS)

# ---- examples/host ----
EMBED_HOST_BIN  := $(BUILD)/examples/host/host
EMBED_KONLY_BIN := $(BUILD)/examples/host/kernels_only

$(EMBED_HOST_BIN): examples/host/host.c $(EMBED_LIB_A) $(BUILD)/libmoonopt.a $(CORE_HDR) $(BIND_HDR)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LUA_CFLAGS) -Ilua/binding $< -o $@ \
	    $(EMBED_LIB_A) $(BUILD)/libmoonopt.a $(LUA_LIBS) $(LIBS) $(EXTRA_LDFLAGS)

$(EMBED_KONLY_BIN): examples/host/kernels_only.c $(BUILD)/libmoonopt.a $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libmoonopt.a $(LIBS) $(EXTRA_LDFLAGS)

# An empty package.path and cpath: everything the script requires is compiled in.
embed-demo: $(EMBED_HOST_BIN) $(EMBED_KONLY_BIN)
	LUA_PATH_5_4= LUA_PATH= LUA_CPATH_5_4= LUA_CPATH= $(EMBED_HOST_BIN) examples/host/minimize.lua
	$(EMBED_KONLY_BIN)

# ---- install ----
# One template, two files: moonopt.pc for hosts that embed Lua (binding + core, Requires
# the Lua pc), moonopt-core.pc for hosts that only call the C kernels.
EMBED_PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(SO_VERSION)|g' \
                   -e 's|@LIBS_PRIVATE@|$(strip $(BLAS_LIBS) -lz -lm -pthread)|g'

install-pc: moonopt.pc.in
	install -d $(EMBED_PC_DIR)
	$(EMBED_PC_SED) -e 's|@NAME@|moonopt|g' \
	    -e 's|@DESCRIPTION@|moonopt optimization engine for hosts that embed Lua: C core and Lua binding (module compiled in)|g' \
	    -e 's|@REQUIRES@|lua$(LUA_VERSION)|g' -e 's|@LIBS@|-lmoonopt-lua -lmoonopt|g' \
	    moonopt.pc.in > $(EMBED_PC_DIR)/moonopt.pc
	$(EMBED_PC_SED) -e 's|@NAME@|moonopt-core|g' \
	    -e 's|@DESCRIPTION@|moonopt optimization engine: the C core only (tensors and optimizer kernels, no Lua)|g' \
	    -e 's|@REQUIRES@||g' -e 's|@LIBS@|-lmoonopt|g' \
	    moonopt.pc.in > $(EMBED_PC_DIR)/moonopt-core.pc
	chmod 644 $(EMBED_PC_DIR)/moonopt.pc $(EMBED_PC_DIR)/moonopt-core.pc

install-embed-lib: embed-lib
	install -d $(EMBED_LIBDIR)
	install -m 644 $(EMBED_LIB_A) $(EMBED_LIBDIR)/
	install -m 755 $(EMBED_LIB_SO) $(EMBED_LIBDIR)/
	ln -sf libmoonopt-lua.so.$(SO_VERSION) $(EMBED_LIBDIR)/libmoonopt-lua.so.$(SONAME_MAJOR)
	ln -sf libmoonopt-lua.so.$(SONAME_MAJOR) $(EMBED_LIBDIR)/libmoonopt-lua.so

install-embed: install-embed-lib install-pc

embed-install-test:
	BUILD=$(BUILD) MAKE="$(MAKE)" CC="$(CC)" sh tests/embed/install_test.sh
