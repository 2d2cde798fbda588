-- The convolution kernels' binding (issue 13): core.conv2d_*, core.max_pool2d_*,
-- core.avg_pool2d_*, core.adaptive_avg_pool2d_*, core.batch_norm_*.
-- Golden vectors: tests/golden/conv_golden.lua (PyTorch 1.13, float32 and float64), made by
-- tests/golden/make_conv_golden.py: forward values and the gradients of sum(y * gy). Then
-- finite differences in float64 for every backward, and every error case.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
local core = require "moonopt.core"

-- The golden file is read inside each test, never kept (see test_index.lua: a large table
-- alive for the whole suite changes the collector's pacing other tests measure).
local GOLDEN = "tests/golden/conv_golden.lua"
local G
local CASES = {}
for i, c in ipairs(dofile(GOLDEN)) do CASES[i] = {op = c.op, name = c.name or c.out and
  string.format("%dx%d", c.out[1], c.out[2]) or ""} end
local function load_golden() G = dofile(GOLDEN) end
local function drop_golden() G = nil end

local DTYPES = {"float32", "float64"}
-- relative tolerance (to max(1, |want|)): float32 results are PyTorch's float32 run on the
-- same rounded inputs, so only the summation order differs
local TOL = {float32 = 2e-5, float64 = 1e-11}

local function flat(t) return t:reshape(t:numel()):totable() end

local function near(got, want, rtol, what)
  lu.assertEquals(#got, #want, what .. ": element count")
  for i = 1, #want do
    local tol = rtol * math.max(1, math.abs(want[i]))
    if math.abs(got[i] - want[i]) > tol then
      lu.fail(string.format("%s: element %d is %.17g, expected %.17g", what, i, got[i], want[i]))
    end
  end
end

-- case field `name` (flat values + name_shape) as a tensor of dtype dt, or nil
local function T(c, name, dt)
  if not c[name] then return nil end
  return mo.tensor(c[name], {dtype = dt}):reshape(c[name .. "_shape"])
end

local function check(got, want, want_shape, dt, what)
  lu.assertEquals(got.dtype, dt, what .. ": dtype")
  lu.assertEquals(got:shape(), want_shape, what .. ": shape")
  near(flat(got), want, TOL[dt], what)
end

-- ---- runners: forward + backward of one golden case -----------------------------------

local function conv_args(c)
  return c.stride[1], c.stride[2], c.padding[1], c.padding[2], c.dilation[1], c.dilation[2],
    c.groups
end

local RUN = {}

function RUN.conv2d(c, dt)
  local x, w, b, gy = T(c, "x", dt), T(c, "w", dt), T(c, "b", dt), T(c, "gy", dt)
  local y = core.conv2d_forward(x, w, b, conv_args(c))
  local gw = mo.zeros(w:shape(), {dtype = dt})
  local gb = b and mo.zeros(b:shape(), {dtype = dt})
  local s1, s2, p1, p2, d1, d2, groups = conv_args(c)
  local gx = core.conv2d_backward(x, w, gy, s1, s2, p1, p2, d1, d2, groups, gw, gb, true)
  return {y = y, gx = gx, gw = gw, gb = gb}
end

local function pool_args(c)
  return c.kernel[1], c.kernel[2], c.stride[1], c.stride[2], c.padding[1], c.padding[2]
end

function RUN.max_pool2d(c, dt)
  local x, gy = T(c, "x", dt), T(c, "gy", dt)
  local y, idx = core.max_pool2d_forward(x, pool_args(c))
  lu.assertEquals(idx:shape(), y:shape())
  -- idx: each max's 1-based flat position in its plane, so gathering x there gives y
  local W, H = x:shape()[4], x:shape()[3]
  local planes = x:reshape(-1, H * W)
  local got = planes:gather(2, idx:reshape(planes:shape()[1], -1))
  lu.assertEquals(flat(got), flat(y), "max_pool2d: x at idx is y")
  return {y = y, gx = core.max_pool2d_backward(gy, idx, x)}
end

function RUN.avg_pool2d(c, dt)
  local x, gy = T(c, "x", dt), T(c, "gy", dt)
  local k1, k2, s1, s2, p1, p2 = pool_args(c)
  local y = core.avg_pool2d_forward(x, k1, k2, s1, s2, p1, p2, c.count_include_pad)
  return {y = y, gx = core.avg_pool2d_backward(gy, x, k1, k2, s1, s2, p1, p2, c.count_include_pad)}
end

function RUN.adaptive_avg_pool2d(c, dt)
  local x, gy = T(c, "x", dt), T(c, "gy", dt)
  local y = core.adaptive_avg_pool2d_forward(x, c.out[1], c.out[2])
  return {y = y, gx = core.adaptive_avg_pool2d_backward(gy, x)}
end

function RUN.batch_norm(c, dt)
  local x, gy, w, b = T(c, "x", dt), T(c, "gy", dt), T(c, "weight", dt), T(c, "bias", dt)
  local rm, rv = T(c, "running_mean", dt), T(c, "running_var", dt)
  local y, sm, si = core.batch_norm_forward(x, w, b, rm, rv, c.training, c.momentum, c.eps)
  local gw = w and mo.zeros(w:shape(), {dtype = dt})
  local gb = b and mo.zeros(b:shape(), {dtype = dt})
  local gx = core.batch_norm_backward(x, gy, w, sm, si, c.training, gw, gb, true)
  return {y = y, gx = gx, gweight = gw, gbias = gb, running_mean_after = rm,
          running_var_after = rv}
end

local TestConvGolden = {}
TestConvGolden.setUp, TestConvGolden.tearDown = load_golden, drop_golden

for i, info in ipairs(CASES) do
  TestConvGolden[string.format("test_%02d_%s_%s", i, info.op, info.name:gsub("%W+", "_"))] =
    function()
      local c = G[i]
      for _, dt in ipairs(DTYPES) do
        local want = dt == "float64" and c.f64 or c.f32
        local got = RUN[c.op](c, dt)
        for key, r in pairs(got) do
          local what = string.format("%s %s %s: %s", c.op, c.name or "", dt, key)
          lu.assertNotNil(want[key], what .. " has no golden value")
          check(r, want[key], want[key .. "_shape"], dt, what)
        end
        for key in pairs(want) do
          if not key:find("_shape$") then
            lu.assertNotNil(got[key], c.op .. " " .. dt .. ": nothing computed for " .. key)
          end
        end
      end
    end
end

-- ---- finite differences in float64 ---------------------------------------------------

-- The numerical gradient of loss(...) = sum(f() * gy) with respect to every element of t
-- (changed in place and restored), by central differences. The values are assigned as
-- float64 0-d tensors: t[i] = number rounds through float32 (see the report of issue 13).
local function numgrad(t, loss)
  local n, h = t:numel(), 1e-6
  local v = t:reshape(n)
  local out = {}
  local function f64(a) return mo.tensor(a, {dtype = "float64"}) end
  for i = 1, n do
    local old = v[i]:item()
    v[i] = f64(old + h)
    local lp = loss()
    v[i] = f64(old - h)
    local lm = loss()
    v[i] = f64(old)
    out[i] = (lp - lm) / (2 * h)
  end
  return out
end

local function dot(a, b) return (a * b):sum():item() end

local function rand(shape) return mo.randn(shape, {dtype = "float64"}) end

local TestConvGradcheck = {}

function TestConvGradcheck.test_conv2d()
  mo.manual_seed(5)
  -- general (stride, padding, dilation, groups), 1x1, depthwise
  for _, cfg in ipairs {
    {{2, 4, 5, 4}, {4, 2, 3, 2}, {2, 1, 1, 2, 2, 1, 2}},
    {{1, 3, 3, 4}, {2, 3, 1, 1}, {1, 1, 0, 0, 1, 1, 1}},
    {{2, 2, 5, 5}, {4, 1, 3, 3}, {2, 1, 1, 1, 1, 1, 2}},
  } do
    local x, w, b = rand(cfg[1]), rand(cfg[2]), rand({cfg[2][1]})
    local a = cfg[3]
    local y = core.conv2d_forward(x, w, b, table.unpack(a))
    local gy = rand(y:shape())
    local gw, gb = mo.zeros(w:shape(), {dtype = "float64"}), mo.zeros({cfg[2][1]}, {dtype = "float64"})
    local gx = core.conv2d_backward(x, w, gy, a[1], a[2], a[3], a[4], a[5], a[6], a[7], gw, gb, true)
    local function loss() return dot(core.conv2d_forward(x, w, b, table.unpack(a)), gy) end
    near(flat(gx), numgrad(x, loss), 1e-6, "conv2d gx")
    near(flat(gw), numgrad(w, loss), 1e-6, "conv2d gw")
    near(flat(gb), numgrad(b, loss), 1e-6, "conv2d gb")
  end
end

function TestConvGradcheck.test_pooling()
  mo.manual_seed(7)
  local x = rand({2, 2, 5, 6})
  -- max: random values have no ties, so the max is differentiable at x
  local y, idx = core.max_pool2d_forward(x, 3, 2, 2, 1, 1, 1)
  local gy = rand(y:shape())
  near(flat(core.max_pool2d_backward(gy, idx, x)),
    numgrad(x, function() return dot(core.max_pool2d_forward(x, 3, 2, 2, 1, 1, 1), gy) end),
    1e-6, "max_pool2d gx")
  for _, cip in ipairs{true, false} do
    y = core.avg_pool2d_forward(x, 3, 3, 2, 2, 1, 1, cip)
    gy = rand(y:shape())
    near(flat(core.avg_pool2d_backward(gy, x, 3, 3, 2, 2, 1, 1, cip)),
      numgrad(x, function() return dot(core.avg_pool2d_forward(x, 3, 3, 2, 2, 1, 1, cip), gy) end),
      1e-6, "avg_pool2d gx")
  end
  y = core.adaptive_avg_pool2d_forward(x, 3, 4)
  gy = rand(y:shape())
  near(flat(core.adaptive_avg_pool2d_backward(gy, x)),
    numgrad(x, function() return dot(core.adaptive_avg_pool2d_forward(x, 3, 4), gy) end),
    1e-6, "adaptive_avg_pool2d gx")
end

function TestConvGradcheck.test_batch_norm()
  mo.manual_seed(8)
  for _, shape in ipairs{{4, 3}, {3, 2, 5}, {2, 3, 2, 3}} do
    for _, training in ipairs{true, false} do
      local c = shape[2]
      local x, w, b = rand(shape), rand({c}), rand({c})
      local rm, rv = rand({c}), rand({c}):abs() + 0.5
      -- the forward updates the running stats in training: give each call fresh copies
      local function fwd() return core.batch_norm_forward(x, w, b, rm:clone(), rv:clone(), training,
        0.1, 1e-5) end
      local y, sm, si = fwd()
      local gy = rand(y:shape())
      local gw, gb = mo.zeros({c}, {dtype = "float64"}), mo.zeros({c}, {dtype = "float64"})
      local gx = core.batch_norm_backward(x, gy, w, sm, si, training, gw, gb, true)
      local function loss() return dot(fwd(), gy) end
      local what = string.format("batch_norm %d-d %s", #shape, training and "train" or "eval")
      near(flat(gx), numgrad(x, loss), 1e-6, what .. " gx")
      near(flat(gw), numgrad(w, loss), 1e-6, what .. " gw")
      near(flat(gb), numgrad(b, loss), 1e-6, what .. " gb")
    end
  end
end

-- ---- accumulation and options ------------------------------------------------------------

local TestConvBackward = {}

function TestConvBackward.test_accumulates_into_strided_views()
  mo.manual_seed(6)
  for _, dt in ipairs(DTYPES) do
    local x, w = mo.randn({2, 3, 4, 4}, {dtype = dt}), mo.randn({2, 3, 3, 3}, {dtype = dt})
    local gy = mo.randn({2, 2, 4, 4}, {dtype = dt})
    local gw0, gb0 = mo.zeros({2, 3, 3, 3}, {dtype = dt}), mo.zeros({2}, {dtype = dt})
    core.conv2d_backward(x, w, gy, 1, 1, 1, 1, 1, 1, 1, gw0, gb0, false)
    -- a flat buffer: gw a contiguous view at an offset, gb a strided one; both start at 1
    local flatbuf = mo.ones({60}, {dtype = dt})
    local gw = flatbuf:narrow(1, 1, 54):view({2, 3, 3, 3})
    local gb = flatbuf:narrow(1, 55, 4):view({2, 2}):select(2, 1)
    local r = core.conv2d_backward(x, w, gy, 1, 1, 1, 1, 1, 1, 1, gw, gb, false)
    lu.assertNil(r)
    near(flat(gw), flat(gw0 + 1), TOL[dt], dt .. " gw accumulated")
    near(flat(gb), flat(gb0 + 1), TOL[dt], dt .. " gb accumulated")
    lu.assertEquals(flatbuf[56]:item(), 1, dt .. ": the element between gb's entries untouched")
    -- a transposed (non-contiguous) gw too
    local gwt = mo.zeros({3, 3, 3, 2}, {dtype = dt}):permute(4, 1, 2, 3)
    core.conv2d_backward(x, w, gy, 1, 1, 1, 1, 1, 1, 1, gwt, nil, false)
    near(flat(gwt), flat(gw0), TOL[dt], dt .. " strided gw")
    -- nil gw and gb: only gx; strided x and gy are copied first
    local xt = x:transpose(3, 4):contiguous():transpose(3, 4)
    local gx = core.conv2d_backward(xt, w, gy, 1, 1, 1, 1, 1, 1, 1, nil, nil, true)
    local gx0 = core.conv2d_backward(x, w, gy, 1, 1, 1, 1, 1, 1, 1, nil, nil, true)
    near(flat(gx), flat(gx0), 0, dt .. " gx from a strided x")
  end
end

-- ---- errors ----------------------------------------------------------------------------

local TestConvErrors = {}

function TestConvErrors.test_conv2d_errors()
  local x, w = mo.zeros({2, 4, 5, 5}), mo.zeros({6, 2, 3, 3})
  local f = core.conv2d_forward
  fails("conv2d_forward: input {2, 4, 5, 5} has 4 channels, but weight {6, 3, 3, 3} with " ..
    "groups 1 expects 3", f, x, mo.zeros({6, 3, 3, 3}), nil, 1, 1, 0, 0, 1, 1, 1)
  fails("conv2d_forward: input {2, 4, 5, 5} has 4 channels, but weight {6, 2, 3, 3} with " ..
    "groups 1 expects 2", f, x, w, nil, 1, 1, 0, 0, 1, 1, 1)
  fails("conv2d_forward: groups 3 must divide both the input channels 4 and the output " ..
    "channels 6", f, x, w, nil, 1, 1, 0, 0, 1, 1, 3)
  fails("conv2d_forward: groups 4 must divide both the input channels 4 and the output " ..
    "channels 6", f, x, mo.zeros({6, 1, 3, 3}), nil, 1, 1, 0, 0, 1, 1, 4)
  -- a kernel larger than its padded input; a zero output size
  fails("conv2d_forward: the kernel's height extent 7 (kernel 7, dilation 1) is larger than " ..
    "the padded input 5 (size 5 + 2 * padding 0) of input {2, 4, 5, 5}: the output height " ..
    "would be -1", f, x, mo.zeros({1, 4, 7, 3}), nil, 1, 1, 0, 0, 1, 1, 1)
  fails("the kernel's width extent 7 (kernel 3, dilation 3) is larger than the padded input " ..
    "6 (size 6 + 2 * padding 0) of input {2, 4, 5, 6}: the output width would be 0",
    f, mo.zeros({2, 4, 5, 6}), w, nil, 1, 2, 0, 0, 1, 3, 2)
  lu.assertEquals(f(x, mo.zeros({1, 4, 7, 7}), nil, 1, 1, 1, 1, 1, 1, 1):shape(), {2, 1, 1, 1})
  -- arguments
  fails("bad argument #4 to 'conv2d_forward' (stride_h must be a positive integer, got 0)",
    f, x, w, nil, 0, 1, 0, 0, 1, 1, 2)
  fails("bad argument #5 to 'conv2d_forward' (stride_w must be a positive integer, got -2)",
    f, x, w, nil, 1, -2, 0, 0, 1, 1, 2)
  fails("bad argument #6 to 'conv2d_forward' (padding_h must be a non-negative integer, got -1)",
    f, x, w, nil, 1, 1, -1, 0, 1, 1, 2)
  fails("padding_w must be an integer, got 1.5", f, x, w, nil, 1, 1, 0, 1.5, 1, 1, 2)
  fails("bad argument #9 to 'conv2d_forward' (dilation_w must be a positive integer, got 0)",
    f, x, w, nil, 1, 1, 0, 0, 1, 0, 2)
  fails("bad argument #10 to 'conv2d_forward' (groups must be a positive integer, got 0)",
    f, x, w, nil, 1, 1, 0, 0, 1, 1, 0)
  -- shapes, dtypes, types
  fails("conv2d_forward: input must be 4-d {N, C, H, W}, got {4, 5, 5}",
    f, mo.zeros({4, 5, 5}), w, nil, 1, 1, 0, 0, 1, 1, 2)
  fails("conv2d_forward: weight must be 4-d", f, x, mo.zeros({6, 2, 3}), nil, 1, 1, 0, 0, 1, 1, 2)
  fails("conv2d_forward: bias must have shape {6}, got {5}",
    f, x, w, mo.zeros({5}), 1, 1, 0, 0, 1, 1, 2)
  fails("conv2d_forward: dtype mismatch: float32 vs float64",
    f, x, w:double(), nil, 1, 1, 0, 0, 1, 1, 2)
  fails("conv2d_forward: dtype mismatch: float32 vs float64",
    f, x, w, mo.zeros({6}, {dtype = "float64"}), 1, 1, 0, 0, 1, 1, 2)
  fails("conv2d_forward", f, 5, w, nil, 1, 1, 0, 0, 1, 1, 2)
  fails("conv2d_forward", f, x, w, nil, 1, 1, 0, 0, 1, 1, "2")
  local dead = mo.zeros({2, 4, 5, 5})
  dead:__gc()
  fails("freed", f, dead, w, nil, 1, 1, 0, 0, 1, 1, 2)
end

function TestConvErrors.test_conv2d_backward_errors()
  local x, w = mo.zeros({2, 4, 5, 5}), mo.ones({6, 2, 3, 3})
  local gy = mo.ones({2, 6, 3, 3})
  local f = core.conv2d_backward
  fails("conv2d_backward: grad_output must have shape {2, 6, 3, 3}, got {2, 6, 5, 5}",
    f, x, w, mo.zeros({2, 6, 5, 5}), 1, 1, 0, 0, 1, 1, 2, nil, nil, true)
  fails("conv2d_backward: grad_weight must have shape {6, 2, 3, 3}, got {6, 2, 3}",
    f, x, w, gy, 1, 1, 0, 0, 1, 1, 2, mo.zeros({6, 2, 3}), nil, true)
  fails("conv2d_backward: dtype mismatch", f, x, w, gy:double(), 1, 1, 0, 0, 1, 1, 2, nil, nil,
    true)
  fails("conv2d_backward: dtype mismatch", f, x, w, gy, 1, 1, 0, 0, 1, 1, 2,
    mo.zeros({6, 2, 3, 3}, {dtype = "float64"}), nil, true)
  fails("conv2d_backward: input {2, 4, 5, 5} has 4 channels, but weight {6, 2, 3, 3} with " ..
    "groups 1 expects 2", f, x, w, gy, 1, 1, 0, 0, 1, 1, 1, nil, nil, true)
  -- a bad gb after a good gw: nothing written
  local gw = mo.zeros({6, 2, 3, 3})
  fails("conv2d_backward: grad_bias must have shape {6}, got {2}",
    f, mo.ones({2, 4, 5, 5}), w, gy, 1, 1, 0, 0, 1, 1, 2, gw, mo.zeros({2}), true)
  lu.assertEquals(gw:abs():sum():item(), 0)
  -- gw overlapping an input: refused by the core, nothing written
  local buf = mo.ones({6, 2, 3, 3})
  fails("conv2d_backward", f, x, buf, gy, 1, 1, 0, 0, 1, 1, 2, buf, nil, false)
  lu.assertEquals(buf:sum():item(), 108)
end

function TestConvErrors.test_pooling_errors()
  local x = mo.zeros({2, 3, 5, 5})
  local f = core.max_pool2d_forward
  fails("bad argument #6 to 'max_pool2d_forward' (padding_h must be at most half of kernel_h, " ..
    "got padding_h = 2 and kernel_h = 3)", f, x, 3, 3, 1, 1, 2, 0)
  fails("bad argument #7 to 'avg_pool2d_forward' (padding_w must be at most half of kernel_w, " ..
    "got padding_w = 1 and kernel_w = 1)", core.avg_pool2d_forward, x, 2, 1, 1, 1, 0, 1, true)
  fails("max_pool2d_forward: the kernel's height extent 6 (kernel 6, dilation 1) is larger " ..
    "than the padded input 5 (size 5 + 2 * padding 0) of input {2, 3, 5, 5}: the output " ..
    "height would be 0", f, x, 6, 2, 1, 1, 0, 0)
  fails("bad argument #2 to 'max_pool2d_forward' (kernel_h must be a positive integer, got 0)",
    f, x, 0, 2, 1, 1, 0, 0)
  fails("bad argument #5 to 'max_pool2d_forward' (stride_w must be a positive integer, got 0)",
    f, x, 2, 2, 1, 0, 0, 0)
  fails("max_pool2d_forward: input must be 3-d {C, H, W} or 4-d {N, C, H, W}, got {5, 5}",
    f, mo.zeros({5, 5}), 2, 2, 2, 2, 0, 0)
  fails("max_pool2d_forward: input {2, 3, 0, 5} has an empty plane",
    f, mo.zeros({2, 3, 0, 5}), 2, 2, 2, 2, 1, 1)
  -- a 3-d input pools its planes too
  lu.assertEquals(f(mo.zeros({3, 5, 5}), 2, 2, 2, 2, 0, 0):shape(), {3, 2, 2})
  fails("bad argument #8 to 'avg_pool2d_forward' (boolean (count_include_pad) expected, got nil)",
    core.avg_pool2d_forward, x, 2, 2, 2, 2, 0, 0)
  -- backward: shapes, dtypes, indices that are not forward's
  local y, idx = f(x, 2, 2, 2, 2, 0, 0)
  fails("max_pool2d_backward: indices must have shape {2, 3, 2, 2}, got {2, 3, 2, 3}",
    core.max_pool2d_backward, y, mo.ones({2, 3, 2, 3}), x)
  fails("max_pool2d_backward: dtype mismatch", core.max_pool2d_backward, y, idx:double(), x)
  fails("max_pool2d_backward: grad_output {3, 2, 2} does not match input {2, 3, 5, 5}",
    core.max_pool2d_backward, mo.zeros({3, 2, 2}), mo.ones({3, 2, 2}), x)
  for _, bad in ipairs{0, 26, 1.5, 0 / 0} do
    fails("max_pool2d_backward: indices hold a value that is not a whole number in 1 .. 25",
      core.max_pool2d_backward, y, mo.full({2, 3, 2, 2}, bad), x)
  end
  fails("avg_pool2d_backward: grad_output must have shape {2, 3, 2, 2}, got {2, 3, 5, 5}",
    core.avg_pool2d_backward, x, x, 2, 2, 2, 2, 0, 0, false)
  fails("adaptive_avg_pool2d_forward' (output_w must be a positive integer, got 0)",
    core.adaptive_avg_pool2d_forward, x, 2, 0)
  fails("adaptive_avg_pool2d_backward: grad_output {2, 4, 2, 2} does not match input " ..
    "{2, 3, 5, 5}", core.adaptive_avg_pool2d_backward, mo.zeros({2, 4, 2, 2}), x)
  fails("adaptive_avg_pool2d_backward: dtype mismatch", core.adaptive_avg_pool2d_backward,
    mo.zeros({2, 3, 2, 2}), x:double())
  -- float32 indices are exact up to 2^24 positions per plane
  fails("too large for exact float32 indices", f, mo.zeros({1, 1, 1, 1}):expand(1, 1, 4097, 4097),
    2, 2, 2, 2, 0, 0)
end

function TestConvErrors.test_batch_norm_errors()
  local x, v = mo.randn({4, 3, 2}), mo.ones({3})
  local f = core.batch_norm_forward
  fails("batch_norm_forward: input must have at least 2 dims {N, C, ...}, got {4}",
    f, mo.zeros({4}), nil, nil, nil, nil, true, 0.1, 1e-5)
  fails("batch_norm_forward: weight must have shape {3}, got {4}",
    f, x, mo.ones({4}), nil, nil, nil, true, 0.1, 1e-5)
  fails("batch_norm_forward: running_var must have shape {3}, got {3, 1}",
    f, x, v, v, mo.zeros({3}), mo.ones({3, 1}), true, 0.1, 1e-5)
  fails("batch_norm_forward: dtype mismatch", f, x, v:double(), nil, nil, nil, true, 0.1, 1e-5)
  fails("bad argument #7 to 'batch_norm_forward' (momentum must be in [0, 1], got 1.5)",
    f, x, v, v, nil, nil, true, 1.5, 1e-5)
  fails("bad argument #8 to 'batch_norm_forward' (eps must be a positive finite number, got 0)",
    f, x, v, v, nil, nil, true, 0.1, 0)
  fails("bad argument #6 to 'batch_norm_forward' (boolean (training) expected, got number)",
    f, x, v, v, nil, nil, 1, 0.1, 1e-5)
  fails("batch_norm_forward: running_mean and running_var must be given together",
    f, x, v, v, mo.zeros({3}), nil, true, 0.1, 1e-5)
  fails("batch_norm_forward: running_mean and running_var are needed when not training",
    f, x, v, v, nil, nil, false, 0.1, 1e-5)
  fails("batch_norm_forward: expected more than 1 value per channel when training, got " ..
    "input {1, 3}", f, mo.zeros({1, 3}), nil, nil, nil, nil, true, 0.1, 1e-5)
  -- training without running stats (track_running_stats=False) works; nothing to update
  local y = f(x, nil, nil, nil, nil, true, 0.1, 1e-5)
  lu.assertEquals(y:shape(), {4, 3, 2})
  -- the running stats are updated in place, whatever their strides
  local buf = mo.zeros({3, 2})
  local rm, rv = buf:select(2, 1), buf:select(2, 2):fill(1)
  f(x, nil, nil, rm, rv, true, 0.5, 1e-5)
  local mean = x:mean(3):mean(1)
  near(flat(rm), flat(mean * 0.5), 1e-6, "strided running_mean")
  -- the same running tensor twice: refused, nothing changed
  local r = mo.ones({3})
  fails("batch_norm_forward", f, x, nil, nil, r, r, true, 0.1, 1e-5)
  lu.assertEquals(flat(r), {1, 1, 1})
  local b = core.batch_norm_backward
  local _, sm, si = f(x, nil, nil, nil, nil, true, 0.1, 1e-5)
  fails("batch_norm_backward: grad_output must have shape {4, 3, 2}, got {4, 3}",
    b, x, mo.zeros({4, 3}), nil, sm, si, true, nil, nil, true)
  fails("batch_norm_backward: save_mean and save_invstd are needed",
    b, x, x, nil, nil, si, true, nil, nil, true)
  fails("batch_norm_backward: grad_bias must have shape {3}, got {2}",
    b, x, x, nil, sm, si, true, mo.zeros({3}), mo.zeros({2}), true)
  fails("batch_norm_backward: dtype mismatch", b, x, x:double(), nil, sm, si, true, nil, nil, true)
  lu.assertNil(b(x, x, nil, sm, si, true, mo.zeros({3}), nil, false))
end

return {
  TestConvGolden = TestConvGolden,
  TestConvGradcheck = TestConvGradcheck,
  TestConvBackward = TestConvBackward,
  TestConvErrors = TestConvErrors,
}
