-- tests/lua/test_functional.lua - mo.nn.functional against PyTorch 1.13: values and
-- gradients of every function in float64 and float32 (tests/golden/functional_golden.lua,
-- written by tests/golden/make_functional_golden.py with the same calls, 0-based targets
-- there), gradcheck in float64 where a float64 path exists, dropout's properties, double
-- backward, and named errors.
local lu = require "luaunit"
local mo = require "moonopt"
local H = require "helpers"
local G = dofile("tests/golden/functional_golden.lua")

local F = mo.nn.functional
local T5 = G.target5
local T5I = G.target5i -- with an ignored row (-100)

-- the per-class weights in x's dtype
local function W4(x) return mo.tensor(G.weight4, {dtype = x.dtype}) end

-- The same calls as the generator, keyed by case name.
local CALLS = {
  linear = function(x, w, b) return F.linear(x, w, b) end,
  linear_nobias = function(x, w) return F.linear(x, w) end,
  linear_3d = function(x, w, b) return F.linear(x, w, b) end,
  relu = F.relu, sigmoid = F.sigmoid, tanh = F.tanh,
  gelu = function(x) return F.gelu(x) end,
  gelu_tanh = function(x) return F.gelu(x, {approximate = "tanh"}) end,
  softmax = function(x) return F.softmax(x, 2) end,
  log_softmax = function(x) return F.log_softmax(x, {dim = 1}) end,
  layer_norm = function(x, w, b) return F.layer_norm(x, {6}, w, b) end,
  layer_norm_plain = function(x) return F.layer_norm(x, 6, {eps = 1e-3}) end,
  cross_entropy = function(x) return F.cross_entropy(x, T5) end,
  cross_entropy_sum = function(x) return F.cross_entropy(x, T5, {reduction = "sum"}) end,
  cross_entropy_none = function(x) return F.cross_entropy(x, T5, {reduction = "none"}) end,
  cross_entropy_ls = function(x) return F.cross_entropy(x, T5, {label_smoothing = 0.1}) end,
  nll_loss = function(x) return F.nll_loss(x, T5) end,
  nll_loss_sum = function(x) return F.nll_loss(x, mo.tensor(T5), {reduction = "sum"}) end,
  mse_loss = function(a, b) return F.mse_loss(a, b) end,
  mse_loss_sum = function(a, b) return F.mse_loss(a, b, {reduction = "sum"}) end,
  mse_loss_none = function(a, b) return F.mse_loss(a, b, {reduction = "none"}) end,
  l1_loss = function(a, b) return F.l1_loss(a, b) end,
  smooth_l1_loss = function(a, b) return F.smooth_l1_loss(a, b) end,
  smooth_l1_loss_beta = function(a, b) return F.smooth_l1_loss(a, b, {reduction = "sum", beta = 0.5}) end,
  bce_logits = function(a, b) return F.binary_cross_entropy_with_logits(a, b) end,
  bce_logits_sum = function(a, b) return F.binary_cross_entropy_with_logits(a, b, {reduction = "sum"}) end,
  conv2d = function(x, w, b) return F.conv2d(x, w, b, {padding = 1}) end,
  conv2d_strided = function(x, w)
    return F.conv2d(x, w, nil, {stride = 2, padding = {1, 0}, dilation = {1, 2}, groups = 2})
  end,
  max_pool2d = function(x) return F.max_pool2d(x, 2) end,
  max_pool2d_pad = function(x) return F.max_pool2d(x, 3, {stride = 2, padding = 1}) end,
  avg_pool2d = function(x) return F.avg_pool2d(x, 2) end,
  avg_pool2d_pad = function(x) return F.avg_pool2d(x, 3, {stride = 2, padding = 1, count_include_pad = false}) end,
  batch_norm_train = function(x, w, b)
    local d = x.dtype
    return F.batch_norm(x, mo.zeros(3, {dtype = d}), mo.ones(3, {dtype = d}), {weight = w, bias = b, training = true})
  end,
  cross_entropy_w = function(x) return F.cross_entropy(x, T5, {weight = W4(x)}) end,
  cross_entropy_ignore_sum = function(x)
    return F.cross_entropy(x, T5I, {reduction = "sum", ignore_index = -100})
  end,
  cross_entropy_w_ignore_ls = function(x)
    return F.cross_entropy(x, mo.tensor(T5I), {weight = W4(x), ignore_index = -100, label_smoothing = 0.2})
  end,
  cross_entropy_ignore_ls = function(x)
    return F.cross_entropy(x, T5I, {ignore_index = -100, label_smoothing = 0.2})
  end,
  cross_entropy_w_ignore_none = function(x)
    return F.cross_entropy(x, T5I, {weight = W4(x), ignore_index = -100, reduction = "none", label_smoothing = 0.1})
  end,
  nll_loss_w_ignore = function(x) return F.nll_loss(x, T5I, {weight = W4(x), ignore_index = -100}) end,
  nll_loss_ignore_sum = function(x) return F.nll_loss(x, T5I, {reduction = "sum", ignore_index = -100}) end,
  batch_norm_eval = function(x, w, b)
    local d = x.dtype
    return F.batch_norm(x, mo.tensor({0.1, -0.2, 0.3}, {dtype = d}), mo.tensor({1.5, 0.5, 2.0}, {dtype = d}), w, b)
  end,
}

-- cases without a float64 path (none since gelu's kernel took float64)
local F32_ONLY = {}

local function make(spec, dtype, rg)
  local t = mo.tensor(H.nest(spec.data, spec.shape), {dtype = dtype})
  if #spec.shape == 0 then t = mo.tensor(spec.data[1], {dtype = dtype}) end
  if rg then t:requires_grad_() end
  return t
end

local function close(name, what, got, want, tol)
  local g = H.flatten(got:totable())
  lu.assertEquals(#g, #want.data, name .. " " .. what .. ": size")
  for i = 1, #g do
    local w = want.data[i]
    if math.abs(g[i] - w) > tol * (1 + math.abs(w)) then
      lu.fail(string.format("%s %s[%d]: got %.10g, PyTorch %.10g", name, what, i, g[i], w))
    end
  end
end

local function scalar_of(out, c, dtype)
  if c.wout then return (out * make(c.wout, dtype)):sum() end
  return out
end

local function run_case(name, dtype, tol)
  local c = G.cases[name]
  local ins = {}
  for k, s in ipairs(c.inputs) do ins[k] = make(s, dtype, true) end
  local f = scalar_of(CALLS[name](table.unpack(ins)), c, dtype)
  lu.assertTrue(math.abs(f:item() - c.value) <= tol * (1 + math.abs(c.value)),
                string.format("%s value %.10g vs PyTorch %.10g", name, f:item(), c.value))
  f:backward()
  for k, x in ipairs(ins) do
    lu.assertNotNil(x.grad, name .. ": no gradient for input " .. k)
    close(name, "grad " .. k, x.grad, c.grads[k], tol)
  end
end

local TestFunctionalGolden = {}

function TestFunctionalGolden.test_every_case_has_a_call()
  for name in pairs(G.cases) do lu.assertNotNil(CALLS[name], name) end
end

function TestFunctionalGolden.test_float64()
  for name in pairs(G.cases) do
    if not F32_ONLY[name] then run_case(name, "float64", 1e-10) end
  end
end

function TestFunctionalGolden.test_float32()
  for name in pairs(G.cases) do run_case(name, "float32", 2e-4) end
end

-- every F.* is covered by a golden case (dropout: by its properties below)
function TestFunctionalGolden.test_every_function_is_covered()
  local covered = {dropout = true, binary_cross_entropy_with_logits = true}
  for name in pairs(G.cases) do
    covered[name] = true
    covered[name:match("^(.-)_[%a%d]+$") or name] = true
  end
  covered.batch_norm = G.cases.batch_norm_train ~= nil
  for name in pairs(F) do lu.assertTrue(covered[name] or false, "no golden case for F." .. name) end
end

local TestFunctionalGradcheck = {}

-- gradcheck in float64 of every case with a float64 path
function TestFunctionalGradcheck.test_gradcheck_float64()
  for name, c in pairs(G.cases) do
    if not F32_ONLY[name] then
      local ins = {}
      for k, s in ipairs(c.inputs) do ins[k] = make(s, "float64", true) end
      local fn = function(...) return scalar_of(CALLS[name](...), c, "float64") end
      lu.assertTrue(mo.autograd.gradcheck(fn, ins), name)
    end
  end
end

-- linear, relu and the fused losses keep their gradient's graph: the float32 kernels' nodes
-- differentiates twice (a gradient penalty)
function TestFunctionalGradcheck.test_double_backward_float32()
  local x = mo.randn(4, 5):requires_grad_()
  local w = mo.randn(3, 5):requires_grad_()
  local y = F.cross_entropy(F.linear(F.relu(x), w), {1, 2, 3, 1})
  local gx = mo.autograd.grad(y, {x}, {create_graph = true})[1]
  local pen = (gx * gx):sum()
  pen:backward()
  -- the same in float64 (tensor ops throughout)
  local x64 = x:detach():to("float64"):requires_grad_()
  local w64 = w:detach():to("float64"):requires_grad_()
  local y64 = F.cross_entropy(F.linear(F.relu(x64), w64), {1, 2, 3, 1})
  local g64 = mo.autograd.grad(y64, {x64}, {create_graph = true})[1]
  ;(g64 * g64):sum():backward()
  local d = (w.grad:to("float64") - w64.grad):abs():max():item()
  lu.assertTrue(d < 1e-4, "double backward of linear + cross_entropy: " .. d)
end

function TestFunctionalGradcheck.test_double_backward_through_a_kernel_is_an_error()
  local x = mo.randn(3, 4):requires_grad_()
  local y = F.layer_norm(x, 4):sum()
  H.fails("layer_norm: double backward", function() mo.autograd.grad(y, {x}, {create_graph = true}) end)
end

-- gelu (both forms) differentiates twice: under create_graph its gradient is tensor ops, equal
-- to the kernel's; their derivative matches central differences of the kernel's gradient, and
-- float32 agrees with float64
function TestFunctionalGradcheck.test_gelu_double_backward()
  for _, approx in ipairs{"none", "tanh"} do
    local function kernel_grad(v) -- gelu'(v) by the kernel's backward (no create_graph)
      local leaf = v:detach():clone():requires_grad_()
      return mo.autograd.grad(F.gelu(leaf, approx):sum(), {leaf})[1]
    end
    local function second(v)
      local leaf = v:detach():clone():requires_grad_()
      local g1 = mo.autograd.grad(F.gelu(leaf, approx):sum(), {leaf}, {create_graph = true})[1]
      return g1, mo.autograd.grad(g1:sum(), {leaf})[1]
    end
    local x = mo.tensor({-2.5, -0.7, 0.1, 0.9, 3}, {dtype = "float64"})
    local g1, g2 = second(x)
    lu.assertTrue((g1 - kernel_grad(x)):abs():max():item() < 1e-12, approx)
    local h = 1e-5
    local num = (kernel_grad(x + h) - kernel_grad(x - h)) / (2 * h)
    lu.assertTrue((g2 - num):abs():max():item() < 1e-7, "gelu'' " .. approx)
    local _, g2f = second(x:to("float32"))
    lu.assertTrue((g2f:to("float64") - g2):abs():max():item() < 1e-5, approx)
  end
end

local TestFunctionalDropout = {}

function TestFunctionalDropout.test_same_draws_as_the_module()
  local x = mo.randn(8, 16)
  mo.manual_seed(5)
  local a = mo.nn.Dropout(0.3):forward(x):clone()
  mo.manual_seed(5)
  local b = F.dropout(x, 0.3)
  lu.assertEquals(b:totable(), a:totable())
end

function TestFunctionalDropout.test_gradient_is_the_mask()
  for _, dtype in ipairs{"float32", "float64"} do
    local x = mo.randn(50, 40, {dtype = dtype}):requires_grad_()
    local y = F.dropout(x, {p = 0.25})
    y:sum():backward()
    -- kept elements: y = x / 0.75 and grad 1 / 0.75; dropped: 0 and 0
    local kept = y:ne(0)
    lu.assertTrue(((x.grad - kept * (1 / 0.75)):abs():max():item()) < 1e-6)
    local frac = kept:mean():item()
    lu.assertTrue(frac > 0.68 and frac < 0.82, dtype .. " kept fraction " .. frac)
  end
end

function TestFunctionalDropout.test_identity_when_not_training()
  local x = mo.randn(3, 3)
  lu.assertTrue(rawequal(F.dropout(x, 0.5, false), x))
  lu.assertTrue(rawequal(F.dropout(x, 0), x))
end

local TestFunctionalClassOptions = {}

-- ignore_index drops a row exactly: the loss equals the loss of the other rows alone, and the
-- ignored row's gradient is 0; all rows ignored gives 0 / 0 (as PyTorch)
function TestFunctionalClassOptions.test_ignored_rows_count_for_nothing()
  for _, dtype in ipairs{"float32", "float64"} do
    local x = mo.randn(4, 3, {dtype = dtype}):requires_grad_()
    local w = mo.tensor({0.5, 2, 1}, {dtype = dtype})
    for _, o in ipairs{{}, {weight = w}, {weight = w, label_smoothing = 0.3}} do
      local full = {ignore_index = 0}
      for k, v in pairs(o) do full[k] = v end
      local l = F.cross_entropy(x, {2, 0, 3, 1}, full)
      local gx = mo.autograd.grad(l, {x})[1]
      local rows = x:index_select(1, mo.tensor{1, 3, 4})
      local want = F.cross_entropy(rows, {2, 3, 1}, o)
      lu.assertAlmostEquals(l:item(), want:item(), 1e-6)
      lu.assertEquals(gx[2]:abs():sum():item(), 0)
    end
    local all = F.nll_loss(x, {7, 7, 7, 7}, {ignore_index = 7})
    lu.assertTrue(all:item() ~= all:item(), "all rows ignored: NaN")
  end
end

-- weights scale each row by its class's weight; the mean divides by the summed weights
function TestFunctionalClassOptions.test_weighted_mean()
  local x = mo.randn(3, 2, {dtype = "float64"})
  local w = mo.tensor({1, 3}, {dtype = "float64"})
  local per = F.cross_entropy(x, {1, 2, 2}, {reduction = "none"})
  local want = (per[1]:item() + 3 * per[2]:item() + 3 * per[3]:item()) / 7
  lu.assertAlmostEquals(F.cross_entropy(x, {1, 2, 2}, {weight = w}):item(), want, 1e-12)
end

-- nn.CrossEntropyLoss takes the same options; its torch7 path equals F's
function TestFunctionalClassOptions.test_module_matches_functional()
  local x = mo.randn(5, 4)
  local w = mo.tensor{1, 2, 0.5, 3}
  local t = {3, 1, -100, 4, 2}
  local crit = mo.nn.CrossEntropyLoss{weight = w, ignore_index = -100, label_smoothing = 0.1}
  local xr = x:clone():requires_grad_()
  local l = F.cross_entropy(xr, t, {weight = w, ignore_index = -100, label_smoothing = 0.1})
  l:backward()
  lu.assertAlmostEquals(crit:forward(x, t), l:item(), 1e-6)
  local loss, g = crit:forward_backward(x, t)
  lu.assertAlmostEquals(loss, l:item(), 1e-6)
  lu.assertTrue((g - xr.grad):abs():max():item() < 1e-6)
  lu.assertTrue((crit:backward(x, t) - xr.grad):abs():max():item() < 1e-6)
  -- and through autograd (model(x) path): the module call records like F
  local xa = x:clone():requires_grad_()
  crit(xa, t):backward()
  lu.assertTrue((xa.grad - xr.grad):abs():max():item() < 1e-6)
  lu.assertStrContains(tostring(crit), "ignore_index=-100")
end

local TestFunctionalErrors = {}

function TestFunctionalErrors.test_named_errors()
  local x, w = mo.randn(4, 5), mo.randn(3, 6)
  H.fails("F.linear: input {4, 5} does not match weight {3, 6}", F.linear, x, w)
  H.fails("F.linear: weight must be a moonopt.Tensor, got nil", F.linear, x)
  H.fails("F.cross_entropy: reduction must be 'mean', 'sum' or 'none', got string \"avg\"",
          F.cross_entropy, x, {1, 1, 1, 1}, {reduction = "avg"})
  H.fails("F.cross_entropy: target holds 6, not a class index in 1..5", F.cross_entropy, x, {1, 6, 1, 1})
  H.fails("F.cross_entropy: target has 3 class indices for a batch of 4", F.cross_entropy, x, {1, 2, 3})
  H.fails("F.cross_entropy: unknown option 'weights'", F.cross_entropy, x, {1, 1, 1, 1}, {weights = x})
  H.fails("F.cross_entropy: weight must be a 1-d tensor of 5 class weights, got {4, 5}",
          F.cross_entropy, x, {1, 1, 1, 1}, {weight = x})
  H.fails("F.nll_loss: weight is float64 but the input is float32 (one dtype per call)",
          F.nll_loss, x, {1, 1, 1, 1}, {weight = mo.ones(5, {dtype = "float64"})})
  H.fails("F.cross_entropy: ignore_index must be an integer, got 0.5", F.cross_entropy, x,
          {1, 1, 1, 1}, {ignore_index = 0.5})
  -- an ignored value passes; any other value outside 1..C still fails
  H.fails("F.cross_entropy: target holds -1, not a class index in 1..5", F.cross_entropy, x,
          {1, -100, -1, 1}, {ignore_index = -100})
  H.fails("F.mse_loss: input {4, 5} and target {3, 6} have different shapes", F.mse_loss, x, w)
  H.fails("F.dropout: p must be a number in [0, 1], got 2", F.dropout, x, 2)
  H.fails("F.gelu: approximate must be 'none' or 'tanh', got string \"fast\"", F.gelu, x, "fast")
  H.fails("F.layer_norm: input {4, 5} does not end in the normalized size 4", F.layer_norm, x, 4)
  H.fails("F.conv2d: input must be 4-d {N, C, H, W}, got {4, 5}", F.conv2d, x, mo.randn(1, 1, 1, 1))
  H.fails("F.max_pool2d: kernel_size must be a positive integer, got 0", F.max_pool2d, mo.randn(1, 1, 4, 4), 0)
  H.fails("F.softmax: dim must be a non-zero integer", F.softmax, x, 0)
end

-- the error is reported at the caller's line
function TestFunctionalErrors.test_error_position()
  local ok, err = pcall(F.linear, mo.randn(2, 2), mo.randn(2, 3))
  lu.assertFalse(ok)
  lu.assertNotStrContains(err, "functional.lua")
end

-- Fused nodes add a parameter's gradient straight into its existing .grad (E.grad_sink):
-- the same .grad tensor afterwards, holding old + gradient, the gradient as
-- mo.autograd.grad returns it (which leaves .grad alone), and double backward unaffected.
local TestFunctionalSinks = {}

local function check_sink(name, f, params, inputs)
  local olds = {}
  for i, p in ipairs(params) do
    local g0 = mo.randn(table.unpack(p:shape()))
    if p.grad then p.grad:copy_(g0) else p.grad = g0 end   -- (a module's: in its flat buffer)
    olds[i] = p.grad:clone()
  end
  local handles = {}
  for i, p in ipairs(params) do handles[i] = p.grad end
  local all = {}
  for _, t in ipairs(inputs) do all[#all + 1] = t end
  for _, p in ipairs(params) do all[#all + 1] = p end
  local refs = mo.autograd.grad(f(), all)
  for i, p in ipairs(params) do
    lu.assertEquals((p.grad - olds[i]):abs():max():item(), 0, name .. ": autograd.grad touched .grad")
  end
  f():backward()
  for i, p in ipairs(params) do
    lu.assertTrue(rawequal(p.grad, handles[i]), name .. ": .grad replaced")
    local want = olds[i] + refs[#inputs + i]
    lu.assertTrue((p.grad - want):abs():max():item() <= 1e-5 * (1 + want:abs():max():item()),
      name .. ": parameter " .. i)
  end
  for i, t in ipairs(inputs) do
    lu.assertTrue((t.grad - refs[i]):abs():max():item() <= 1e-6, name .. ": input " .. i)
  end
end

function TestFunctionalSinks.test_fused_nodes_accumulate_into_existing_grad()
  mo.manual_seed(3)
  local x = mo.randn(4, 5):requires_grad_()
  local w, b = mo.randn(3, 5):requires_grad_(), mo.randn(3):requires_grad_()
  local r = mo.randn(4, 3)
  check_sink("linear", function() return (F.linear(x, w, b) * r):sum() end, {w, b}, {x})
  x.grad = nil
  check_sink("linear no bias", function() return (F.linear(x, w) * r):sum() end, {w}, {x})
  local xc = mo.randn(2, 2, 5, 5):requires_grad_()
  local wc, bc = mo.randn(3, 2, 3, 3):requires_grad_(), mo.randn(3):requires_grad_()
  local rc = mo.randn(2, 3, 5, 5)
  check_sink("conv2d", function() return (F.conv2d(xc, wc, bc, {padding = 1}) * rc):sum() end,
    {wc, bc}, {xc})
  local xb = mo.randn(6, 3):requires_grad_()
  local gb, bb = mo.randn(3):requires_grad_(), mo.randn(3):requires_grad_()
  local rb = mo.randn(6, 3)
  check_sink("batch_norm", function()
    return (F.batch_norm(xb, nil, nil, {weight = gb, bias = bb, training = true}) * rb):sum()
  end, {gb, bb}, {xb})
  -- a module call: the module's kernels add into the parameters' .grad (their flat buffer)
  local m = mo.nn.Linear(5, 3)
  local fg = select(2, m:flat_parameters())
  x.grad = nil
  check_sink("Linear call", function() return (m(x) * r):sum() end, m:parameters(), {x})
  lu.assertTrue(m:parameters()[1].grad:same_storage(fg), "Linear call: .grad left the flat buffer")
end

function TestFunctionalSinks.test_no_sink_for_a_frozen_bias_or_a_missing_grad()
  local x = mo.randn(4, 5)
  local w, b = mo.randn(3, 5):requires_grad_(), mo.randn(3)   -- b needs no gradient
  w.grad = mo.zeros(3, 5)
  local h = w.grad
  F.linear(x, w, b):sum():backward()
  lu.assertTrue(rawequal(w.grad, h))
  lu.assertTrue((w.grad - mo.ones(4, 3):t():matmul(x)):abs():max():item() < 1e-5)
  lu.assertNil(b.grad)
  local w2 = mo.randn(3, 5):requires_grad_()                  -- no .grad yet: set, not added
  F.linear(x, w2):sum():backward()
  lu.assertTrue((w2.grad - mo.ones(4, 3):t():matmul(x)):abs():max():item() < 1e-5)
end

return {TestFunctionalGolden = TestFunctionalGolden, TestFunctionalGradcheck = TestFunctionalGradcheck,
        TestFunctionalDropout = TestFunctionalDropout, TestFunctionalErrors = TestFunctionalErrors,
        TestFunctionalSinks = TestFunctionalSinks, TestFunctionalClassOptions = TestFunctionalClassOptions}
