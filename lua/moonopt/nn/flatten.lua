--- moonopt.nn.Flatten: merges dimensions start .. stop into one (PyTorch's nn.Flatten).
--
--   nn.Flatten([start_dim = 2 [, stop_dim = -1]])   1-based; negative counts from the end
--   {N, C, H, W} -> {N, C*H*W} with the defaults: a view when the input's strides allow it
--   (as t:flatten), else a copy. backward gives the gradient the input's shape.
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local Flatten = base.class("Flatten")

local function check_dim(v, what)
  local n = apierror.to_int(v)
  if n == nil or n == 0 then
    apierror.fail("Flatten: %s must be a non-zero integer (1-based, negative from the end), got %s", what,
                  apierror.show(v))
  end
  return n
end

function Flatten:_init(start_dim, stop_dim, ...)
  apierror.check_nargs("Flatten", 2, "start_dim, stop_dim", start_dim, stop_dim, ...)
  self.start_dim = check_dim(start_dim == nil and 2 or start_dim, "start_dim")
  self.end_dim = check_dim(stop_dim == nil and -1 or stop_dim, "stop_dim")
end

-- A 1-based dimension of a d-dimensional tensor, or nil when out of range.
local function resolve(k, d)
  if k < 0 then k = d + 1 + k end
  if k < 1 or k > d then return nil end
  return k
end

function Flatten:forward(x)
  local d = x:dim()
  local a, b = resolve(self.start_dim, d), resolve(self.end_dim, d)
  if a == nil or b == nil or a > b then
    error(string.format("Flatten:forward: dimensions %d .. %d do not fit input %s", self.start_dim,
                        self.end_dim, apierror.shape_str(x)), 2)
  end
  local y = x:flatten(a, b)
  self.output = y
  return y
end

function Flatten:backward(x, g)
  local gi = g:reshape(x:shape())
  self.grad_input = gi
  return gi
end

function Flatten:extra_repr()
  return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim)
end

return Flatten
