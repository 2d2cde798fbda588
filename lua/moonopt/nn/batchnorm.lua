--- moonopt.nn.BatchNorm1d / BatchNorm2d: batch normalization over the channel dimension.
--
--   nn.BatchNorm1d(num_features [, {eps = 1e-5, momentum = 0.1, affine = true,
--                                   track_running_stats = true}])   input {N, C} or {N, C, L}
--   nn.BatchNorm2d(num_features [, {...}])                          input {N, C, H, W}
--
-- Parameters weight {C} (ones) and bias {C} (zeros) when affine; buffers running_mean {C}
-- (zeros), running_var {C} (ones) and num_batches_tracked (0-d, float64) when
-- track_running_stats: PyTorch's names, so state_dict() keys match PyTorch's
-- ("1.running_mean") and the buffers go into checkpoints (mo.save / mo.load), not into
-- parameters(). In training mode (model:train()) each channel is normalized by the batch's
-- mean and biased variance, and running_mean/var move towards the batch's mean and UNBIASED
-- variance by `momentum`; in evaluation mode (model:evaluate()) the running statistics are
-- used. Without running statistics the batch's are used in both modes. The kernels are in
-- C (core.batch_norm_forward / core.batch_norm_backward, NCHW); BatchNorm1d runs them on a
-- 4-d view of its input.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"
local spatial = require "moonopt.nn.spatial"

local fail, show = apierror.fail, apierror.show

local M = {}

local known = {eps = true, momentum = true, affine = true, track_running_stats = true}

local function init(self, fname, n, opts, ...)
  apierror.check_nargs(fname, 2, "num_features, opts", n, opts, ...)
  n = apierror.check_int(fname, "num_features", n, 1)
  opts = apierror.check_options(fname, opts, known)
  local eps = opts.eps == nil and 1e-5 or opts.eps
  if type(eps) ~= "number" or not (eps > 0 and eps < math.huge) then
    fail("%s: eps must be a positive number, got %s", fname, show(eps))
  end
  local momentum = opts.momentum == nil and 0.1 or opts.momentum
  base.check_number(fname, "momentum", momentum, 0, 1)
  for _, k in ipairs{"affine", "track_running_stats"} do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      fail("%s: %s must be a boolean, got %s", fname, k, show(opts[k]))
    end
  end
  self.num_features, self.eps, self.momentum = n, eps, momentum
  self.affine = opts.affine ~= false
  self.track_running_stats = opts.track_running_stats ~= false
  if self.affine then
    self:register_parameter("weight", core.ones(n))
    self:register_parameter("bias", core.zeros(n))
    self:flatten_parameters()
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", core.zeros(n))
    self:register_buffer("running_var", core.ones(n))
    self:register_buffer("num_batches_tracked", core.zeros({}, {dtype = "float64"}))
  end
end

-- x as the 4-d NCHW tensor the kernels take (a view for BatchNorm1d's 2-d and 3-d input).
local function as4d(x)
  local d = x:dim()
  if d == 4 then return x end
  x = x:contiguous()
  if d == 2 then return x:view(x:size(1), x:size(2), 1, 1) end
  return x:view(x:size(1), x:size(2), x:size(3), 1)
end

local function forward(self, x)
  spatial.check_input(self, x, self._dims, self.num_features, 4)
  local x4 = as4d(x)
  -- batch statistics in training mode, and always without running statistics
  local batch_stats = self.training or not self.track_running_stats
  if batch_stats and x4:size(1) * x4:size(3) * x4:size(4) <= 1 then
    error(string.format("%s:forward: expected more than 1 value per channel when training, got input %s",
                        self._class_name, apierror.shape_str(x)), 3)
  end
  local y, mean, invstd = core.batch_norm_forward(x4, self.weight, self.bias, self.running_mean,
    self.running_var, batch_stats, self.momentum, self.eps)
  if self.training and self.track_running_stats then
    self.num_batches_tracked:add_(1)
  end
  self._x4, self._mean, self._invstd, self._batch_stats = x4, mean, invstd, batch_stats
  if x:dim() ~= 4 then y = y:view(x:shape()) end
  self.output = y
  return y
end

--- backward(x, grad_output [, need_grad_input = true]): weight.grad and bias.grad
-- accumulate; returns the input gradient (nil when need_grad_input is false).
local function backward(self, x, g, need_gi)
  if self._mean == nil then error(self._class_name .. ":backward: call forward first", 2) end
  self:_reattach_grads()
  local w, b = self.weight, self.bias
  local x4 = rawequal(x, self._x4) and x or as4d(x)
  local gi = core.batch_norm_backward(x4, as4d(g), w, self._mean, self._invstd, self._batch_stats,
                                      w and w.grad, b and b.grad, need_gi ~= false)
  if gi and x:dim() ~= 4 then gi = gi:view(x:shape()) end
  self.grad_input = gi
  return gi
end

local function extra_repr(self)
  return string.format("%d, eps=%g, momentum=%g, affine=%s, track_running_stats=%s", self.num_features, self.eps,
                       self.momentum, tostring(self.affine), tostring(self.track_running_stats))
end

-- model:to(dtype) / double() / float() (Module.to calls it): the running statistics follow
-- the parameters' dtype; num_batches_tracked stays a float64 count (exact past 2^24).
local function to_dtype(self, dtype)
  for _, nb in ipairs(self._buffers) do
    if nb[1] ~= "num_batches_tracked" and nb[2].dtype ~= dtype then
      nb[2] = nb[2]:to(dtype)
      self[nb[1]] = nb[2]
    end
  end
end

local function make(name, dims, desc)
  local cls = base.class(name)
  function cls:_init(n, opts, ...)
    init(self, name, n, opts, ...)
    self._dims = dims
    self._input_desc = desc:format(n, n)
  end
  cls.forward, cls.backward, cls.extra_repr, cls._to_dtype = forward, backward, extra_repr, to_dtype
  return cls
end

M.BatchNorm1d = make("BatchNorm1d", {[2] = true, [3] = true}, "{N, %d} or {N, %d, L}")
M.BatchNorm2d = make("BatchNorm2d", 4, "{N, %d, H, W}")

return M
