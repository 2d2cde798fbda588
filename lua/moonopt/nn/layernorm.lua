--- moonopt.nn.LayerNorm: normalization over the last dimension.
--
--   nn.LayerNorm(normalized_shape [, eps = 1e-5 [, elementwise_affine = true]])
--   nn.LayerNorm(normalized_shape, {eps = 1e-5, elementwise_affine = true})
--
-- normalized_shape: the size D of the last dimension (an integer, or {D}).
-- Input {..., D} -> output of the same shape: per row (x - mean) / sqrt(var + eps)
-- (biased variance, as PyTorch), then * weight + bias when elementwise_affine
-- (weight {D} = 1 and bias {D} = 0 initially).
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local ln_forward = core.nn_layernorm_forward
local ln_backward = core.nn_layernorm_backward

local LayerNorm = base.class("LayerNorm")

function LayerNorm:_init(shape, eps, affine)
  local fname = "LayerNorm"
  if type(shape) == "table" then
    if #shape ~= 1 then
      apierror.fail("%s: normalized_shape must be one size (the last dimension), got %d sizes", fname,
                #shape)
    end
    shape = shape[1]
  end
  local d = apierror.check_int(fname, "normalized_shape", shape, 1)
  if type(eps) == "table" then
    local o = apierror.check_options(fname, eps, {eps = true, elementwise_affine = true})
    eps, affine = o.eps, o.elementwise_affine
  end
  if eps == nil then eps = 1e-5 end
  if type(eps) ~= "number" or not (eps > 0 and eps < math.huge) then
    apierror.fail("%s: eps must be a positive number, got %s", fname, apierror.show(eps))
  end
  if affine ~= nil and type(affine) ~= "boolean" then
    apierror.fail("%s: elementwise_affine must be a boolean, got %s", fname, apierror.show(affine))
  end
  self.normalized_shape, self.eps = d, eps
  self.elementwise_affine = affine ~= false
  if self.elementwise_affine then
    self:register_parameter("weight", core.ones(d))
    self:register_parameter("bias", core.zeros(d))
    self:flatten_parameters()
  end
end

function LayerNorm:forward(x)
  local y, mean, rstd = ln_forward(x, self.normalized_shape, self.weight, self.bias, self.eps,
                                   self._buf, self._mean, self._rstd)
  self._buf, self._mean, self._rstd = y, mean, rstd
  self.output = y
  return y
end

function LayerNorm:backward(x, g)
  if self._mean == nil then error("LayerNorm:backward: call forward first", 2) end
  local d, w, b = self.normalized_shape, self.weight, self.bias
  local gi = ln_backward(x, g, d, w, b, self._mean, self._rstd, self.grad_input)
  if gi == false then
    self:_reattach_grads()
    gi = ln_backward(x, g, d, w, b, self._mean, self._rstd, self.grad_input)
  end
  self.grad_input = gi
  return gi
end

function LayerNorm:extra_repr()
  return string.format("%d, eps=%g, elementwise_affine=%s", self.normalized_shape, self.eps,
                       tostring(self.elementwise_affine))
end

return LayerNorm
