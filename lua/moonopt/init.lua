--- moonopt: a Lua 5.4-scriptable optimization engine.
--
--   local mo = require "moonopt"
--
-- Tensors (float32, row-major, 1-based indices), made by the C module moonopt.core:
--   mo.tensor{{1, 2}, {3, 4}}   mo.tensor({1, 2, 3, 4}, {2, 2})   mo.tensor(3.5) (0-d)
--   mo.zeros(2, 3) / mo.zeros{2, 3}   mo.ones   mo.empty   mo.full({2, 3}, 0.5)
--   mo.rand(...) U[0, 1)   mo.randn(...) N(0, 1)   (per-lua_State generator)
--   mo.arange(n) -> 1, 2, ..., n (Lua counting, not PyTorch's 0..n-1)
--   mo.arange(a, b [, step]) -> the values `for i = a, b, step` visits
--   mo.randperm(n) -> a Lua table with 1..n shuffled
--   mo.manual_seed(n)   mo.clock() (monotonic seconds)   mo.is_tensor(x)
--   mo.matmul(a, b [, {trans_a =, trans_b =, alpha =, beta =, out =}])
--   mo.norm_many(list) -> global L2 norm of a list of tensors
--   mo.Tensor: the methods table shared by every tensor (t:add, t:view, ...)
--   mo._VERSION = "moonopt 0.1.0"; mo.blas_backend = "cblas" | "portable"
--
-- Submodules (mo.optim, mo.nn, mo.sched, mo.train, mo.data, ...) load on first
-- use: reading mo.X requires "moonopt.X" when such a module is already loaded,
-- in package.preload, or found on package.path / package.cpath, so a new
-- lua/moonopt/X.lua or lua/moonopt/X/init.lua becomes mo.X without changing
-- this file. A name that matches no module reads as nil.
local core = require "moonopt.core"

local mo = {}
for name, value in pairs(core) do
  mo[name] = value
end

-- checkpoints (lua/moonopt/checkpoint.lua, docs/checkpoints.md)
local checkpoint = require "moonopt.checkpoint"
mo.save, mo.load = checkpoint.save, checkpoint.load
mo.save_tensors, mo.load_tensors = checkpoint.save_tensors, checkpoint.load_tensors

local function find_submodule(key)
  if type(key) ~= "string" or key == "init" or not key:match("^[%a_][%w_]*$") then
    return nil
  end
  local name = "moonopt." .. key
  if package.loaded[name] ~= nil or package.preload[name] ~= nil
      or package.searchpath(name, package.path) or package.searchpath(name, package.cpath) then
    return name
  end
  return nil
end

return setmetatable(mo, {
  __index = function(t, key)
    local name = find_submodule(key)
    if not name then return nil end
    local module = require(name)
    rawset(t, key, module)
    return module
  end,
})
