rockspec_format = "3.0"
package = "moonopt"
version = "scm-1"
source = {
   url = "git+file:///dev/null",  -- install from a checkout: luarocks make
}
description = {
   summary = "A Lua 5.4-scriptable optimization engine: float32 tensors and every framework's optimizers, in C",
   detailed = [[
moonopt keeps float32 tensors and fused optimizer kernels (SGD, the Adam family with each
framework's flavour, RMSprop, Adagrad, Adadelta, Lion, LAMB, L-BFGS) in a small C core and
lets Lua scripts drive models, training loops and learning-rate schedules.
]],
   license = "MIT",
   labels = { "optimization", "machine-learning", "tensor" },
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
build_dependencies = {}
external_dependencies = {}
build = {
   type = "make",
   build_target = "module",
   build_variables = {
      CFLAGS = "$(CFLAGS)",
      LUA_CFLAGS = "-I$(LUA_INCDIR)",
      WERROR = "",
   },
   install_target = "luarocks-install",
   install_variables = {
      LUADIR = "$(LUADIR)",
      LIBDIR = "$(LIBDIR)",
   },
}
test = {
   type = "command",
   command = "make test",
}
