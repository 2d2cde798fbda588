--- moonopt.nn activations: ReLU, LeakyReLU, GELU, Tanh, Sigmoid, Softmax.
--
-- All map an input of any shape to an output of the same shape, elementwise
-- (Softmax: along one dimension), in C. Each keeps its output and grad_input
-- buffers between calls, so a fixed batch shape allocates nothing.
--
--   nn.ReLU()                      max(x, 0)
--   nn.LeakyReLU([negative_slope = 0.01])      (or {negative_slope = s})
--   nn.GELU([approximate = "none"])            "none": x Phi(x) with erf (PyTorch's
--                                              default), "tanh": the tanh approximation
--   nn.Tanh()   nn.Sigmoid()
--   nn.Softmax([dim = -1])         dim 1-based, negative counts from the end
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local act_forward = core.nn_act_forward
local act_backward = core.nn_act_backward
local softmax_forward = core.nn_softmax_forward
local softmax_backward = core.nn_softmax_backward

local M = {}

-- An activation class. uses_output: its derivative is computed from the output
-- (ReLU, Tanh, Sigmoid), so Sequential may fuse it into the preceding Linear:
-- then its output is the Linear's output and its forward is skipped.
local function activation(name, code, uses_output)
  local A = base.class(name)
  A._act_code = code
  if uses_output then A._fuse_code = code end

  function A:forward(x)
    local y = act_forward(x, code, self.slope, self._buf)
    self._buf = y
    self.output = y
    return y
  end

  function A:backward(x, g)
    local saved = x
    if uses_output then
      saved = self.output
      if saved == nil then error(name .. ":backward: call forward first", 2) end
    end
    local gi = act_backward(saved, g, code, self.slope, self.grad_input)
    self.grad_input = gi
    return gi
  end

  return A
end

M.ReLU = activation("ReLU", core.NN_ACT_RELU, true)
M.Tanh = activation("Tanh", core.NN_ACT_TANH, true)
M.Sigmoid = activation("Sigmoid", core.NN_ACT_SIGMOID, true)

local LeakyReLU = activation("LeakyReLU", core.NN_ACT_LEAKY_RELU, false)
function LeakyReLU:_init(slope)
  if type(slope) == "table" then
    slope = apierror.check_options("LeakyReLU", slope, {negative_slope = true}).negative_slope
  end
  if slope == nil then slope = 0.01 end
  self.slope = base.check_number("LeakyReLU", "negative_slope", slope, -math.huge, math.huge)
end
function LeakyReLU:extra_repr()
  return "negative_slope=" .. tostring(self.slope)
end
M.LeakyReLU = LeakyReLU

-- GELU switches its code at construction, so its methods are written out here.
local GELU = base.class("GELU")
function GELU:_init(approximate)
  if type(approximate) == "table" then
    approximate = apierror.check_options("GELU", approximate, {approximate = true}).approximate
  end
  approximate = approximate or "none"
  if approximate == "none" then
    self._code = core.NN_ACT_GELU
  elseif approximate == "tanh" then
    self._code = core.NN_ACT_GELU_TANH
  else
    apierror.fail("GELU: approximate must be 'none' or 'tanh', got %s", apierror.show(approximate))
  end
  self.approximate = approximate
end
function GELU:forward(x)
  local y = act_forward(x, self._code, 0, self._buf)
  self._buf = y
  self.output = y
  return y
end
function GELU:backward(x, g)
  local gi = act_backward(x, g, self._code, 0, self.grad_input)
  self.grad_input = gi
  return gi
end
function GELU:extra_repr()
  return self.approximate == "none" and "" or "approximate='tanh'"
end
M.GELU = GELU

local Softmax = base.class("Softmax")
function Softmax:_init(dim)
  if type(dim) == "table" then dim = apierror.check_options("Softmax", dim, {dim = true}).dim end
  if dim == nil then dim = -1 end
  local d = apierror.to_int(dim)
  if d == nil or d == 0 then
    apierror.fail("Softmax: dim must be a non-zero integer (1-based, negative from the end), got %s",
                  apierror.show(dim))
  end
  self.dim = d
end
function Softmax:forward(x)
  local y = softmax_forward(x, self.dim, self._buf)
  self._buf = y
  self.output = y
  return y
end
function Softmax:backward(_, g)
  local y = self.output
  if y == nil then error("Softmax:backward: call forward first", 2) end
  local gi = softmax_backward(y, g, self.dim, self.grad_input)
  self.grad_input = gi
  return gi
end
function Softmax:extra_repr()
  return "dim=" .. self.dim
end
M.Softmax = Softmax

return M
