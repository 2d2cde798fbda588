-- Every nn module's backward against central finite differences.
--
-- The objective is f = sum(r * module(x)) for a fixed random r, so backward(x, r)
-- must return df/dx and accumulate df/dparam. Everything is float32: with a step
-- of 1e-2 (the true step is read back after rounding) the finite difference is
-- accurate to ~1e-4 of the gradient's scale, and the tolerance (1% of each
-- element plus 0.1% of the largest) fails any backward that is off by a few
-- percent (test_checker_catches_wrong_gradients shows it does).
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"
local nn = mo.nn

local STEP = 1e-2

-- d f / d t by central differences, as a flat Lua list (t contiguous). Under no_grad:
-- parameters require grad, and the view written into would otherwise be recorded.
local function numeric_grad_(f, t)
  local flat = t:view(-1)
  local g = {}
  for k = 1, flat:numel() do
    local v = flat:get(k)
    flat:set(k, v + STEP)
    local vp = flat:get(k)
    local fp = f()
    flat:set(k, v - STEP)
    local vm = flat:get(k)
    local fm = f()
    flat:set(k, v)
    g[k] = (fp - fm) / (vp - vm)
  end
  return g
end
local function numeric_grad(f, t) return mo.no_grad(numeric_grad_, f, t) end

-- Compares an analytic gradient tensor with a numeric one; returns ok, message.
local function compare(ana, num, what)
  local a = ana:contiguous():view(-1)
  if a:numel() ~= #num then return false, what .. ": size " .. a:numel() .. " vs " .. #num end
  local scale = 0
  for k = 1, #num do scale = math.max(scale, math.abs(num[k])) end
  for k = 1, #num do
    local x, n = a:get(k), num[k]
    if math.abs(x - n) > 1e-2 * math.abs(n) + 1e-3 * scale + 1e-5 then
      return false, string.format("%s[%d]: analytic %.6g, numeric %.6g (scale %.3g)", what, k, x, n,
                                  scale)
    end
  end
  return true
end

local function assert_grad(ana, num, what)
  local ok, msg = compare(ana, num, what)
  lu.assertTrue(ok, msg)
end

-- Moves every element at least `margin` away from 0 (for kinks such as ReLU's).
local function away_from_zero(t, margin)
  local flat = t:view(-1)
  for k = 1, flat:numel() do
    local v = flat:get(k)
    if math.abs(v) < margin then flat:set(k, v < 0 and v - 2 * margin or v + 2 * margin) end
  end
  return t
end

-- Checks a module's input gradient and every parameter gradient.
local function check_module(m, x)
  local y = m:forward(x)
  local r = mo.randn(y:shape())
  m:zero_grad()
  local gi = m:backward(x, r):clone()
  local function f() return m:forward(x):dot(r):item() end
  assert_grad(gi, numeric_grad(f, x), m._class_name .. " input")
  for _, np in ipairs(m:named_parameters()) do
    local p = np[2]
    local ana = p.grad:clone()
    assert_grad(ana, numeric_grad(f, p), m._class_name .. " " .. np[1])
  end
end

-- Checks a loss's gradient with respect to its first argument.
local function check_loss(loss_fn, out, target)
  local g = loss_fn:backward(out, target):clone()
  local function f() return loss_fn:forward(out, target) end
  assert_grad(g, numeric_grad(f, out), loss_fn._class_name)
  -- forward_backward agrees with forward and backward
  local l2, g2 = loss_fn:forward_backward(out, target)
  lu.assertAlmostEquals(l2, f(), 1e-6 * math.max(1, math.abs(l2)))
  lu.assertTrue(compare(g2, numeric_grad(f, out), "forward_backward"))
end

local TestNnGrad = {}

function TestNnGrad.setUp()
  mo.manual_seed(1234)
end

function TestNnGrad.test_checker_catches_wrong_gradients()
  local m = nn.Linear(4, 3)
  local x = mo.randn(2, 4)
  local r = mo.randn(2, 3)
  m:forward(x)
  m:zero_grad()
  local gi = m:backward(x, r):clone()
  local num = numeric_grad(function() return m:forward(x):dot(r):item() end, x)
  lu.assertTrue(compare(gi, num, "right"))
  lu.assertFalse(compare(gi:mul(1.03), num, "3% too large"))
  lu.assertFalse(compare(gi:t():contiguous():view(2, 4), num, "transposed"))
end

function TestNnGrad.test_linear()
  check_module(nn.Linear(5, 4), mo.randn(3, 5))
end

function TestNnGrad.test_linear_without_bias()
  local m = nn.Linear(5, 4, false)
  lu.assertNil(m.bias)
  lu.assertEquals(#m:parameters(), 1)
  check_module(m, mo.randn(3, 5))
end

function TestNnGrad.test_linear_strided_input()
  -- a transposed view goes through mo_matmul's strided path
  local m = nn.Linear(3, 2)
  local x = mo.randn(3, 4):t()
  check_module(m, x:contiguous())
  local y1 = m:forward(x):clone()
  local y2 = m:forward(x:contiguous())
  lu.assertTrue(compare(y1, y2:view(-1):totable(), "strided forward"))
end

function TestNnGrad.test_relu()
  check_module(nn.ReLU(), away_from_zero(mo.randn(3, 4), 0.05))
end

function TestNnGrad.test_leaky_relu()
  check_module(nn.LeakyReLU(0.2), away_from_zero(mo.randn(3, 4), 0.05))
  check_module(nn.LeakyReLU{negative_slope = -0.5}, away_from_zero(mo.randn(2, 5), 0.05))
end

function TestNnGrad.test_tanh_sigmoid()
  check_module(nn.Tanh(), mo.randn(3, 4))
  check_module(nn.Sigmoid(), mo.randn(3, 4):mul(2))
end

function TestNnGrad.test_gelu()
  check_module(nn.GELU(), mo.randn(3, 4):mul(2))
  check_module(nn.GELU("tanh"), mo.randn(3, 4):mul(2))
end

function TestNnGrad.test_softmax()
  check_module(nn.Softmax(2), mo.randn(3, 4))
  check_module(nn.Softmax(1), mo.randn(3, 4))
  check_module(nn.Softmax(2), mo.randn(2, 3, 4))
  check_module(nn.Softmax(), mo.randn(2, 3, 4))   -- the last dimension
end

function TestNnGrad.test_layernorm()
  local m = nn.LayerNorm(6)
  -- non-trivial affine parameters, so a missing gamma in dx would show
  m.weight:copy(mo.randn(6):add(1))
  m.bias:copy(mo.randn(6))
  check_module(m, mo.randn(2, 3, 6):mul(1.5):add(0.5))
  check_module(nn.LayerNorm(5, {elementwise_affine = false}), mo.randn(4, 5))
end

function TestNnGrad.test_sequential_with_fused_activations()
  local model = nn.Sequential(
    nn.Linear(4, 6), nn.ReLU(),
    nn.Linear(6, 5), nn.Tanh(),
    nn.Linear(5, 5), nn.Sigmoid(),
    nn.LayerNorm(5),
    nn.Linear(5, 4), nn.GELU(),
    nn.Linear(4, 3), nn.Softmax(2))
  -- the three Linear + activation pairs run fused
  lu.assertEquals(model._fuse[1], core.NN_ACT_RELU)
  lu.assertEquals(model._fuse[3], core.NN_ACT_TANH)
  lu.assertEquals(model._fuse[5], core.NN_ACT_SIGMOID)
  lu.assertNil(model._fuse[8])
  check_module(model, mo.randn(3, 4))
end

function TestNnGrad.test_fused_equals_unfused()
  local lin, relu = nn.Linear(4, 5), nn.ReLU()
  local x = mo.randn(3, 4)
  local want = relu:forward(lin:forward(x)):clone()
  local model = nn.Sequential(lin, relu)
  local got = model:forward(x)
  lu.assertTrue(compare(got, want:view(-1):totable(), "fused forward"))
end

function TestNnGrad.test_dropout_backward_uses_the_mask()
  local d = nn.Dropout(0.4)
  local x = mo.randn(4, 5)
  local y = d:forward(x)
  local g = mo.randn(4, 5)
  local gi = d:backward(x, g)
  -- y = x * mask and gi = g * mask with the same mask
  for k = 1, 20 do
    local xv, yv = x:view(-1):get(k), y:view(-1):get(k)
    local mask = yv / xv
    lu.assertTrue(math.abs(mask) < 1e-6 or math.abs(mask - 1 / 0.6) < 1e-5)
    lu.assertAlmostEquals(gi:view(-1):get(k), g:view(-1):get(k) * mask, 1e-5)
  end
end

function TestNnGrad.test_mse()
  check_loss(nn.MSELoss(), mo.randn(3, 4), mo.randn(3, 4))
  check_loss(nn.MSELoss{reduction = "sum"}, mo.randn(5), mo.randn(5))
end

function TestNnGrad.test_bce_with_logits()
  check_loss(nn.BCEWithLogitsLoss(), mo.randn(3, 4):mul(3), mo.rand(3, 4))
end

function TestNnGrad.test_cross_entropy()
  local y = {3, 1, 4, 4, 2}
  check_loss(nn.CrossEntropyLoss(), mo.randn(5, 4):mul(2), y)
  check_loss(nn.CrossEntropyLoss{label_smoothing = 0.2}, mo.randn(5, 4):mul(2), y)
  check_loss(nn.CrossEntropyLoss{reduction = "sum"}, mo.randn(5, 4), mo.tensor(y))
end

return {TestNnGrad = TestNnGrad}
