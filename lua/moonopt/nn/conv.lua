--- moonopt.nn.Conv2d: 2-d convolution (cross-correlation, as PyTorch), NCHW.
--
--   nn.Conv2d(in_channels, out_channels, kernel_size
--             [, {stride = 1, padding = 0, dilation = 1, groups = 1, bias = true}])
--   kernel_size, stride, padding, dilation: an integer or a list {h, w}
--   weight {out, in/groups, kH, kW}, bias {out}; input {N, in, H, W} -> {N, out, H', W'}
--   with H' = floor((H + 2 padH - dilH (kH - 1) - 1) / strideH) + 1 (likewise W').
--
-- Initialization as PyTorch's reset_parameters (kaiming_uniform with a = sqrt(5)): with
-- fan_in = in/groups * kH * kW, weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
-- drawn from the lua_State's generator, weight first. The kernels (im2col + GEMM, direct
-- paths for 1x1 and depthwise) are in C: core.conv2d_forward / core.conv2d_backward.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"
local spatial = require "moonopt.nn.spatial"

local fail, show = apierror.fail, apierror.show
local pair, pair_str = spatial.pair, spatial.pair_str

local Conv2d = base.class("Conv2d")

local known = {stride = true, padding = true, dilation = true, groups = true, bias = true}

function Conv2d:_init(in_channels, out_channels, kernel_size, opts, ...)
  local fname = "Conv2d"
  apierror.check_nargs(fname, 4, "in_channels, out_channels, kernel_size, opts", in_channels, out_channels,
                       kernel_size, opts, ...)
  local cin = apierror.check_int(fname, "in_channels", in_channels, 1)
  local cout = apierror.check_int(fname, "out_channels", out_channels, 1)
  opts = apierror.check_options(fname, opts, known)
  local kh, kw = pair(fname, "kernel_size", kernel_size, 1)
  local sh, sw = pair(fname, "stride", opts.stride or 1, 1)
  local ph, pw = pair(fname, "padding", opts.padding or 0, 0)
  local dh, dw = pair(fname, "dilation", opts.dilation or 1, 1)
  local groups = apierror.check_int(fname, "groups", opts.groups or 1, 1)
  if cin % groups ~= 0 or cout % groups ~= 0 then
    fail("%s: in_channels %d and out_channels %d must both be divisible by groups %d", fname, cin, cout, groups)
  end
  if opts.bias ~= nil and type(opts.bias) ~= "boolean" then
    fail("%s: bias must be a boolean, got %s", fname, show(opts.bias))
  end
  self.in_channels, self.out_channels, self.groups = cin, cout, groups
  self.kernel_size, self.stride = {kh, kw}, {sh, sw}
  self.padding, self.dilation = {ph, pw}, {dh, dw}
  self._input_desc = string.format("{N, %d, H, W}", cin)
  local fan_in = cin // groups * kh * kw
  local bound = 1 / math.sqrt(fan_in)
  self:register_parameter("weight", core.empty(cout, cin // groups, kh, kw):uniform_(-bound, bound))
  if opts.bias ~= false then
    self:register_parameter("bias", core.empty(cout):uniform_(-bound, bound))
  end
  self:flatten_parameters()
end

-- Checks x and that the output is not empty (a kernel larger than the padded input).
local function check(self, x)
  spatial.check_input(self, x, 4, self.in_channels, 4)
  local k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
  local oh = spatial.out_size(x:size(3), k[1], s[1], p[1], d[1])
  local ow = spatial.out_size(x:size(4), k[2], s[2], p[2], d[2])
  if oh < 1 or ow < 1 then
    error(string.format("Conv2d:forward: input %s with padding %s is smaller than the (dilated) kernel %s: "
                        .. "the output would be %dx%d", apierror.shape_str(x), pair_str(p[1], p[2]),
                        pair_str(d[1] * (k[1] - 1) + 1, d[2] * (k[2] - 1) + 1), oh, ow), 3)
  end
end

function Conv2d:forward(x)
  check(self, x)
  local s, p, d = self.stride, self.padding, self.dilation
  local y = core.conv2d_forward(x, self.weight, self.bias, s[1], s[2], p[1], p[2], d[1], d[2], self.groups)
  self.output = y
  return y
end

--- backward(x, grad_output [, need_grad_input = true]): weight.grad and bias.grad
-- accumulate; returns the input gradient (nil when need_grad_input is false).
function Conv2d:backward(x, g, need_gi)
  self:_reattach_grads()
  local w, b = self.weight, self.bias
  local s, p, d = self.stride, self.padding, self.dilation
  local gi = core.conv2d_backward(x, w, g, s[1], s[2], p[1], p[2], d[1], d[2], self.groups, w.grad,
                                  b and b.grad, need_gi ~= false)
  self.grad_input = gi
  return gi
end

function Conv2d:extra_repr()
  local k, s, p, d = self.kernel_size, self.stride, self.padding, self.dilation
  local parts = {self.in_channels .. ", " .. self.out_channels, "kernel_size=" .. pair_str(k[1], k[2]),
                 "stride=" .. pair_str(s[1], s[2])}
  if p[1] ~= 0 or p[2] ~= 0 then parts[#parts + 1] = "padding=" .. pair_str(p[1], p[2]) end
  if d[1] ~= 1 or d[2] ~= 1 then parts[#parts + 1] = "dilation=" .. pair_str(d[1], d[2]) end
  if self.groups ~= 1 then parts[#parts + 1] = "groups=" .. self.groups end
  if self.bias == nil then parts[#parts + 1] = "bias=false" end
  return table.concat(parts, ", ")
end

return Conv2d
