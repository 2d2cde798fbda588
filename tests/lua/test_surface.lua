-- tests/lua/test_surface.lua - what `require "moonopt"` exports: exactly the user functions
-- (the kernels stay in moonopt.core), the public submodules and nothing else, and the
-- message under a Lua that is not 5.4.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local EXPORTED = {
  "Tensor", "_VERSION", "arange", "autograd", "blas_backend", "blas_get_threads",
  "blas_kernel",
  "blas_set_threads", "cat", "clock", "empty", "eye", "full", "get_num_threads", "grad",
  "is_tensor", "linspace", "load", "load_tensors", "manual_seed", "matmul", "maximum", "minimum",
  "no_grad", "ones", "ones_like", "rand", "rand_like", "randint", "randn", "randn_like",
  "randperm", "save", "save_tensors", "set_num_threads", "stack", "tensor", "value_and_grad",
  "where", "zeros",
  "zeros_like"
}

local SUBMODULES = {"autograd", "data", "nn", "optim", "plot", "progress", "sched", "train"}

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local TestSurface = {}

function TestSurface.test_exact_export_list()
  -- a fresh module table (another test may have loaded submodules into the shared one)
  package.loaded["moonopt"] = nil
  local fresh = require "moonopt"
  package.loaded["moonopt"] = mo
  lu.assertEquals(sorted_keys(fresh), EXPORTED)
end

function TestSurface.test_exports_are_the_core_functions()
  for _, name in ipairs(EXPORTED) do
    if core[name] ~= nil then lu.assertIs(mo[name], core[name], name) end
  end
  lu.assertEquals(type(mo.save), "function")
  lu.assertIs(mo.load, require("moonopt.checkpoint").load)
end

function TestSurface.test_kernels_are_only_in_core()
  for _, name in ipairs{"optim_step", "nn_linear_forward", "NN_ACT_RELU", "ckpt_write", "crc32",
                        "isatty", "axpy_", "norm_many", "clip_grad_norm", "rng_get_state"} do
    lu.assertNotNil(core[name], name)
    lu.assertNil(mo[name], "mo." .. name .. " is exported")
  end
end

function TestSurface.test_submodules_and_only_them()
  for _, name in ipairs(SUBMODULES) do
    lu.assertIs(mo[name], require("moonopt." .. name), name)
  end
  -- internal modules and the C module are not reachable through mo
  for _, name in ipairs{"core", "apierror", "json", "checkpoint", "init", "nosuchmodule"} do
    lu.assertNil(mo[name], "mo." .. name)
  end
end

function TestSurface.test_submodules_load_on_first_read()
  package.loaded["moonopt"] = nil
  local fresh = require "moonopt"
  package.loaded["moonopt"] = mo
  lu.assertNil(rawget(fresh, "plot"))
  lu.assertIs(fresh.plot, require "moonopt.plot")
  lu.assertIs(rawget(fresh, "plot"), fresh.plot)   -- cached
  -- a module on package.path under moonopt. is not a submodule unless listed in init.lua
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/moonopt"))
  local f = assert(io.open(dir .. "/moonopt/zz_probe.lua", "w"))
  f:write("return {loaded = true}\n")
  f:close()
  local old = package.path
  package.path = dir .. "/?.lua;" .. old
  local ok, m = pcall(function() return fresh.zz_probe end)
  package.path = old
  os.remove(dir .. "/moonopt/zz_probe.lua")
  os.remove(dir .. "/moonopt")
  os.remove(dir)
  lu.assertTrue(ok, m)
  lu.assertNil(m)
  lu.assertNil(package.loaded["moonopt.zz_probe"])
  lu.assertNil(fresh[1])
end

-- init.lua run in an environment with a fake _VERSION: it must stop before loading anything.
local function load_init_as(version)
  local required = {}
  local env = setmetatable({_VERSION = version, require = function(name)
    required[#required + 1] = name
    return setmetatable({}, {__index = function() return function() end end})
  end}, {__index = _G})
  local chunk = assert(loadfile("lua/moonopt/init.lua", "t", env))
  local ok, err = pcall(chunk)
  return ok, err, required
end

function TestSurface.test_version_check()
  for _, v in ipairs{"Lua 5.1", "Lua 5.3", "Lua 5.5"} do
    local ok, err, required = load_init_as(v)
    lu.assertFalse(ok, v)
    lu.assertStrContains(err, "moonopt needs Lua 5.4, this is " .. v .. ": run it with lua5.4")
    lu.assertEquals(required, {}, "nothing is loaded under " .. v)
  end
  local ok, err, required = load_init_as("Lua 5.4")
  lu.assertTrue(ok, err)
  lu.assertEquals(required, {"moonopt.core", "moonopt.checkpoint", "moonopt.autograd"})
end

function TestSurface.test_lua51_says_to_use_lua54()
  local p = io.popen("command -v lua5.1 2>/dev/null")
  local path = p:read("l")
  p:close()
  if not path or path == "" then
    print("# lua5.1 is not installed: skipping the run under Lua 5.1 (apt-get install lua5.1)")
    lu.skip("lua5.1 not installed")
  end
  -- LUA_CPATH may point at the 5.4 build: the check must come before the C module loads
  local cmd = [[lua5.1 -e 'package.path="lua/?.lua;lua/?/init.lua;"..package.path; require "moonopt"' 2>&1]]
  p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  lu.assertStrContains(out, "(command line):1: moonopt needs Lua 5.4, this is Lua 5.1: run it with lua5.4")
  lu.assertNil(out:find("undefined symbol", 1, true), out)
end

return {TestSurface = TestSurface}
