--- moonopt: a Lua 5.4-scriptable optimization engine.
--
--   local mo = require "moonopt"
--
-- The module table holds what a user calls, and nothing else (see docs/api.md):
--   mo.tensor{{1, 2}, {3, 4}}   mo.tensor({1, 2, 3, 4}, {2, 2})   mo.tensor(3.5) (0-d)
--   mo.zeros(2, 3) / mo.zeros{2, 3}   mo.ones   mo.empty   mo.full({2, 3}, 0.5)
--   mo.rand(...) U[0, 1)   mo.randn(...) N(0, 1)   (per-lua_State generator)
--   mo.arange(n) -> 1, 2, ..., n (Lua counting, not PyTorch's 0..n-1)
--   mo.arange(a, b [, step]) -> the values `for i = a, b, step` visits
--   mo.randperm(n) -> a Lua table with 1..n shuffled
--   mo.linspace(a, b, n)   mo.eye(n [, m])   mo.zeros_like(t) ones_like rand_like randn_like
--   mo.randint([lo,] hi, shape) -> integers lo..hi, both included (lo defaults to 1)
--   mo.manual_seed(n)   mo.clock() (monotonic seconds)   mo.is_tensor(x)
--   mo.cat({a, b} [, dim])   mo.stack({a, b} [, dim])   (new tensors; dims 1-based)
--   mo.matmul(a, b [, {trans_a =, trans_b =, alpha =, beta =, out =}]) (1-d, 2-d, 3-d)
--   mo.save / mo.load / mo.save_tensors / mo.load_tensors (checkpoints)
--   mo.no_grad(fn, ...)   mo.grad(f [, argnums])   mo.value_and_grad(f [, argnums])
--   mo.autograd: grad, backward, hvp, gradcheck, Function, grad mode (docs/autograd.md)
--   mo.blas_set_threads(n)   mo.blas_get_threads()
--   mo.set_num_threads(n)   mo.get_num_threads()   (the kernels' thread pool)
--   mo.Tensor: the methods table shared by every tensor (t:add, t:view, ...)
--   mo._VERSION = "moonopt 0.1.0"; mo.blas_backend = "cblas" | "portable";
--   mo.blas_kernel = OpenBLAS's kernel set ("Haswell", ...)
--   mo.nn  mo.optim  mo.sched  mo.train  mo.data  mo.plot  mo.progress: submodules,
--   loaded on first use.
--
-- The positional C kernels (nn_*, optim_*, ckpt_*, norm_many, ...) are the low-level
-- layer: `require "moonopt.core"` gives the whole C module, for embedders, tests and the
-- library's own modules (docs/api.md, "The low-level layer: moonopt.core").

-- The C module is built against Lua 5.4's ABI; under another Lua, loading it dies with
-- an undefined symbol (Debian's plain `lua` is 5.1), so say what to run instead.
-- This part must stay valid Lua 5.1.
local function check_lua_version(version)
  if version ~= "Lua 5.4" then
    return nil, "moonopt needs Lua 5.4, this is " .. tostring(version)
      .. ": run it with lua5.4 (on Debian plain `lua` is Lua 5.1)"
  end
  return true
end

do
  local ok, msg = check_lua_version(_VERSION)
  -- level 3: the line that called require (level 2 is require itself)
  if not ok then error(msg, 3) end
end

local core = require "moonopt.core"
local checkpoint = require "moonopt.checkpoint"
-- autograd loads with the library: it installs the recorder every tensor op reports to
-- (docs/autograd.md); a script that never asks for a gradient pays one compare per op.
local autograd = require "moonopt.autograd"

-- The exported names of the C module (tests/lua/test_surface.lua checks the full list).
local FROM_CORE = {
  "Tensor", "_VERSION", "blas_backend", "blas_kernel",
  "tensor", "zeros", "ones", "empty", "full", "rand", "randn", "arange", "randperm",
  "manual_seed", "clock", "is_tensor", "matmul", "blas_set_threads", "blas_get_threads",
  "set_num_threads", "get_num_threads",   -- the thread pool (lua/binding/threads.c)
  "cat", "stack",   -- the shape family (lua/binding/shape.c)
  "maximum", "minimum", "where",   -- the elementwise family (lua/binding/math.c)
  -- the index family (lua/binding/create.c): creation helpers
  "linspace", "eye", "zeros_like", "ones_like", "rand_like", "randn_like", "randint",
}

--- The public submodules, loaded on first use (a submodule's `require` costs time and
-- memory that a script using only tensors need not pay).
local SUBMODULES = {
  nn = true, optim = true, sched = true, train = true, data = true, plot = true, progress = true,
}

local mo = {}
for _, name in ipairs(FROM_CORE) do
  mo[name] = core[name]
end
mo.autograd = autograd
mo.no_grad, mo.grad, mo.value_and_grad = autograd.no_grad, autograd._grad_transform,
  autograd._value_and_grad
mo.save, mo.load = checkpoint.save, checkpoint.load
mo.save_tensors, mo.load_tensors = checkpoint.save_tensors, checkpoint.load_tensors

return setmetatable(mo, {
  __index = function(t, key)
    if not SUBMODULES[key] then return nil end
    local module = require("moonopt." .. key)
    rawset(t, key, module)
    return module
  end,
})
