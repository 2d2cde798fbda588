--- moonopt.nn.Sequential: modules applied one after another.
--
--   nn.Sequential(m1, m2, ...)   or   nn.Sequential{m1, m2, ...}
--   seq:add(m)                   appends a module (and re-flattens the parameters)
--   seq.modules                  the list of children (named "0", "1", ... as in PyTorch)
--
-- Building a Sequential moves every child's parameters into its own flat
-- buffers (see module.lua), so model:parameters() are views into one buffer.
-- A Linear directly followed by ReLU, Tanh or Sigmoid runs as one fused C call
-- (matmul, then bias and activation in one pass); the activation's backward is
-- unchanged, since it works from the output.
local base = require "moonopt.nn.module"

local Sequential = base.class("Sequential")

-- Which children run fused: fuse[i] = activation code when child i is a Linear
-- and child i + 1 an activation computed from its output.
local function plan(self)
  local mods, fuse = self.modules, {}
  for i = 1, #mods - 1 do
    local a, b = mods[i], mods[i + 1]
    if a._forward_act and b._fuse_code and a ~= b then fuse[i] = b._fuse_code end
  end
  self._fuse = fuse
end

function Sequential:_init(...)
  local mods = {...}
  if select("#", ...) == 1 and type(mods[1]) == "table" and not mods[1]._is_module then
    mods = mods[1]
  end
  self.modules = {}
  for i = 1, #mods do
    local m = mods[i]
    if type(m) ~= "table" or not m._is_module then
      base.fail("Sequential: argument #%d must be a module, got %s", i, base.describe(m))
    end
    self.modules[i] = m
    self:add_module(tostring(i - 1), m)
  end
  plan(self)
  self:flatten_parameters()
end

--- add(m): appends m; returns the Sequential. Re-homes all parameters into
-- new flat buffers (earlier flat_parameters() results are stale afterwards).
function Sequential:add(m)
  if type(m) ~= "table" or not m._is_module then
    error("Sequential:add: expected a module, got " .. base.describe(m), 2)
  end
  local n = #self.modules + 1
  self.modules[n] = m
  self:add_module(tostring(n - 1), m)
  plan(self)
  self:flatten_parameters()
  return self
end

function Sequential:forward(x)
  local mods, fuse = self.modules, self._fuse
  local n, i = #mods, 1
  while i <= n do
    local code = fuse[i]
    if code then
      x = mods[i]:_forward_act(x, code)
      mods[i + 1].output = x
      i = i + 2
    else
      x = mods[i]:forward(x)
      i = i + 1
    end
  end
  self.output = x
  return x
end

--- backward(x, grad_output [, need_grad_input = true]): runs the children's
-- backward in reverse, each with the input it saw in forward (the previous
-- child's output). need_grad_input = false lets the first child skip its
-- input gradient (e.g. x W for a first Linear), which nothing needs in training.
function Sequential:backward(x, g, need_gi)
  local mods = self.modules
  for i = #mods, 2, -1 do
    g = mods[i]:backward(mods[i - 1].output, g)
  end
  if mods[1] then g = mods[1]:backward(x, g, need_gi) end
  self.grad_input = g
  return g
end

function Sequential:__len()
  return #self.modules
end

return Sequential
