--- moonopt.nn pooling layers, NCHW: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d.
--
--   nn.MaxPool2d(kernel_size [, {stride = kernel_size, padding = 0}])
--   nn.AvgPool2d(kernel_size [, {stride = kernel_size, padding = 0, count_include_pad = true}])
--   nn.AdaptiveAvgPool2d(output_size)          output_size an integer or {h, w}
--   sizes are integers or lists {h, w}; input {N, C, H, W} -> {N, C, H', W'}
--   (H' = floor((H + 2 padH - kH) / strideH) + 1). Padding is at most half the kernel,
--   as in PyTorch. The kernels are in C (core.max_pool2d_forward, ...).
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"
local spatial = require "moonopt.nn.spatial"

local fail, show = apierror.fail, apierror.show
local pair, pair_str = spatial.pair, spatial.pair_str

local M = {}

-- kernel_size and {stride, padding} (+ extra known options) of a pooling layer into self.
local function window(self, fname, k, opts, extra)
  local known = {stride = true, padding = true}
  for key in pairs(extra or {}) do known[key] = true end
  opts = apierror.check_options(fname, opts, known)
  local kh, kw = pair(fname, "kernel_size", k, 1)
  local sh, sw = kh, kw
  if opts.stride ~= nil then sh, sw = pair(fname, "stride", opts.stride, 1) end
  local ph, pw = pair(fname, "padding", opts.padding or 0, 0)
  if 2 * ph > kh or 2 * pw > kw then
    fail("%s: padding %s must be at most half of kernel_size %s", fname, pair_str(ph, pw), pair_str(kh, kw))
  end
  self.kernel_size, self.stride, self.padding = {kh, kw}, {sh, sw}, {ph, pw}
  self._input_desc = "{N, C, H, W}"
  return opts
end

-- Checks x (4-d) and that the pooled output is not empty.
local function check(self, x)
  spatial.check_input(self, x, 4, nil, 4)
  local k, s, p = self.kernel_size, self.stride, self.padding
  local oh = spatial.out_size(x:size(3), k[1], s[1], p[1], 1)
  local ow = spatial.out_size(x:size(4), k[2], s[2], p[2], 1)
  if oh < 1 or ow < 1 then
    error(string.format("%s:forward: input %s with padding %s is smaller than the kernel %s: the output "
                        .. "would be %dx%d", self._class_name, apierror.shape_str(x), pair_str(p[1], p[2]),
                        pair_str(k[1], k[2]), oh, ow), 3)
  end
end

local function window_repr(self)
  local k, s, p = self.kernel_size, self.stride, self.padding
  return string.format("kernel_size=%s, stride=%s, padding=%s", pair_str(k[1], k[2]), pair_str(s[1], s[2]),
                       pair_str(p[1], p[2]))
end

-- MaxPool2d -------------------------------------------------------------------------------

local MaxPool2d = base.class("MaxPool2d")

function MaxPool2d:_init(k, opts, ...)
  apierror.check_nargs("MaxPool2d", 2, "kernel_size, opts", k, opts, ...)
  window(self, "MaxPool2d", k, opts)
end

function MaxPool2d:forward(x)
  check(self, x)
  local k, s, p = self.kernel_size, self.stride, self.padding
  local y, idx = core.max_pool2d_forward(x, k[1], k[2], s[1], s[2], p[1], p[2])
  self.output, self._idx = y, idx
  return y
end

function MaxPool2d:backward(x, g)
  if self._idx == nil then error("MaxPool2d:backward: call forward first", 2) end
  local gi = core.max_pool2d_backward(g, self._idx, x)
  self.grad_input = gi
  return gi
end

MaxPool2d.extra_repr = window_repr
M.MaxPool2d = MaxPool2d

-- AvgPool2d -------------------------------------------------------------------------------

local AvgPool2d = base.class("AvgPool2d")

function AvgPool2d:_init(k, opts, ...)
  apierror.check_nargs("AvgPool2d", 2, "kernel_size, opts", k, opts, ...)
  opts = window(self, "AvgPool2d", k, opts, {count_include_pad = true})
  local cip = opts.count_include_pad
  if cip ~= nil and type(cip) ~= "boolean" then
    fail("AvgPool2d: count_include_pad must be a boolean, got %s", show(cip))
  end
  self.count_include_pad = cip ~= false
end

function AvgPool2d:forward(x)
  check(self, x)
  local k, s, p = self.kernel_size, self.stride, self.padding
  local y = core.avg_pool2d_forward(x, k[1], k[2], s[1], s[2], p[1], p[2], self.count_include_pad)
  self.output = y
  return y
end

function AvgPool2d:backward(x, g)
  local k, s, p = self.kernel_size, self.stride, self.padding
  local gi = core.avg_pool2d_backward(g, x, k[1], k[2], s[1], s[2], p[1], p[2], self.count_include_pad)
  self.grad_input = gi
  return gi
end

function AvgPool2d:extra_repr()
  return window_repr(self) .. ", count_include_pad=" .. tostring(self.count_include_pad)
end
M.AvgPool2d = AvgPool2d

-- AdaptiveAvgPool2d -------------------------------------------------------------------------

local AdaptiveAvgPool2d = base.class("AdaptiveAvgPool2d")

function AdaptiveAvgPool2d:_init(out, ...)
  apierror.check_nargs("AdaptiveAvgPool2d", 1, "output_size", out, ...)
  local oh, ow = pair("AdaptiveAvgPool2d", "output_size", out, 1)
  self.output_size = {oh, ow}
  self._input_desc = "{N, C, H, W}"
end

function AdaptiveAvgPool2d:forward(x)
  spatial.check_input(self, x, 4)
  local o = self.output_size
  local y = core.adaptive_avg_pool2d_forward(x, o[1], o[2])
  self.output = y
  return y
end

function AdaptiveAvgPool2d:backward(x, g)
  local gi = core.adaptive_avg_pool2d_backward(g, x)
  self.grad_input = gi
  return gi
end

function AdaptiveAvgPool2d:extra_repr()
  return "output_size=" .. pair_str(self.output_size[1], self.output_size[2])
end
M.AdaptiveAvgPool2d = AdaptiveAvgPool2d

return M
