--- moonopt.nn.Sequential: modules applied one after another.
--
--   nn.Sequential(m1, m2, ...)   or   nn.Sequential{m1, m2, ...}
--   seq:add(m)                   appends a module (the parameters are re-flattened when next needed)
--   seq.modules                  the list of children (named "0", "1", ... as in PyTorch)
--
-- The first parameters() / flat_parameters() / zero_grad() on a Sequential (or any module
-- in its tree) moves every parameter of the tree into one pair of flat buffers (see
-- module.lua), so model:parameters() are views into one buffer.
-- A Linear directly followed by ReLU, Tanh or Sigmoid runs as one fused C call
-- (matmul, then bias and activation in one pass); the activation's backward is
-- unchanged, since it works from the output.
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local Sequential = base.class("Sequential")

-- Which children run fused: fuse[i] = activation code when child i is a Linear
-- and child i + 1 an activation computed from its output. plan_pair decides one pair,
-- so add() re-plans only the new last pair (O(1), not O(children)).
local function plan_pair(self, i)
  local mods = self.modules
  local a, b = mods[i], mods[i + 1]
  self._fuse[i] = (a and b and a._forward_act and b._fuse_code and a ~= b) and b._fuse_code or nil
end

local function plan(self)
  self._fuse = {}
  for i = 1, #self.modules - 1 do plan_pair(self, i) end
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
      apierror.fail("Sequential: argument #%d must be a module, got %s", i, apierror.show(m))
    end
    local cycle = base.cycle_error(self, m, "Sequential")
    if cycle then apierror.fail("%s", cycle) end
    self.modules[i] = m
    self:add_module(tostring(i - 1), m)
  end
  plan(self)
  -- no flatten here: parameters(), flat_parameters() and zero_grad() flatten the top of
  -- the tree when first needed (module.lua), so nesting N containers costs O(N), not O(N^2)
end

--- add(m): appends m; returns the Sequential. The next call that needs the flat layout
-- re-homes all parameters into new flat buffers (earlier flat_parameters() results are
-- stale afterwards).
function Sequential:add(m)
  if type(m) ~= "table" or not m._is_module then
    apierror.fail("Sequential:add: expected a module, got %s", apierror.show(m))
  end
  -- checked before anything changes: s:add(s), or adding a module that holds s
  local cycle = base.cycle_error(self, m, "Sequential:add")
  if cycle then apierror.fail("%s", cycle) end
  local n = #self.modules + 1
  self.modules[n] = m
  self:add_module(tostring(n - 1), m)
  plan_pair(self, n - 1)
  return self
end
Sequential.add = apierror.api(Sequential.add)

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
