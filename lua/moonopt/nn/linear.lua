--- moonopt.nn.Linear: y = x W^T + b, PyTorch's layout and default initialization.
--
--   nn.Linear(in_features, out_features [, bias = true])   (or {bias = false})
--   weight {out, in}, bias {out}; input {B, in} -> output {B, out}
--
-- Initialization as PyTorch's reset_parameters (kaiming_uniform with a = sqrt(5)):
-- weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), drawn from the lua_State's
-- generator (mo.manual_seed makes a model reproducible), weight first.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local linear_forward = core.nn_linear_forward
local linear_backward = core.nn_linear_backward
local ACT_NONE = core.NN_ACT_NONE

local Linear = base.class("Linear")

function Linear:_init(in_features, out_features, bias)
  local fname = "Linear"
  in_features = apierror.check_int(fname, "in_features", in_features, 1)
  out_features = apierror.check_int(fname, "out_features", out_features, 1)
  if type(bias) == "table" then
    bias = apierror.check_options(fname, bias, {bias = true}).bias
  end
  if bias ~= nil and type(bias) ~= "boolean" then
    apierror.fail("%s: bias must be a boolean, got %s", fname, apierror.show(bias))
  end
  self.in_features, self.out_features = in_features, out_features
  local bound = 1 / math.sqrt(in_features)
  self:register_parameter("weight", core.empty(out_features, in_features):uniform_(-bound, bound))
  if bias ~= false then
    self:register_parameter("bias", core.empty(out_features):uniform_(-bound, bound))
  end
  self:flatten_parameters()
end

function Linear:forward(x)
  local y = linear_forward(x, self.weight, self.bias, ACT_NONE, 0, self.output)
  self.output = y
  return y
end

-- Forward with a fused activation (Sequential uses it for Linear + ReLU/Tanh/Sigmoid):
-- self.output then holds act(x W^T + b).
function Linear:_forward_act(x, act)
  local y = linear_forward(x, self.weight, self.bias, act, 0, self.output)
  self.output = y
  return y
end

--- backward(x, grad_output [, need_grad_input = true]): weight.grad += g^T x,
-- bias.grad += column sums of g; returns g W (nil when need_grad_input is false,
-- which skips that product).
function Linear:backward(x, g, need_gi)
  need_gi = need_gi ~= false
  local w, b = self.weight, self.bias
  local gi = linear_backward(x, g, w, b, self.grad_input, need_gi)
  if gi == false then
    self:_reattach_grads()
    gi = linear_backward(x, g, w, b, self.grad_input, need_gi)
  end
  if gi then self.grad_input = gi end
  return gi
end

function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features,
                       self.out_features, tostring(self.bias ~= nil))
end

return Linear
