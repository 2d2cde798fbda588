-- moonopt.nn in float64: a network converted with model:double() against PyTorch 1.13's
-- float64 forward, loss and gradients (tests/golden/nn_golden.lua, made by
-- tests/golden/make_nn_golden.py), every activation, softmax and the losses; the same
-- network in float32; model:to/double/float keeping the parameters' identity; dtype mixing
-- errors; the data helpers in float64.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"
local helpers = require "helpers"
local nn = mo.nn

-- loaded by each test and dropped after it (run.lua loads every test file first)
local function golden() return dofile("tests/golden/nn_golden.lua") end

local function assert_close(t, want, tol, what)
  local got = helpers.flatten(type(t) == "table" and t or t:totable())
  local exp = helpers.flatten(want)
  lu.assertEquals(#got, #exp, what)
  for i = 1, #exp do
    local err = math.abs(got[i] - exp[i])
    if err > tol * (1 + math.abs(exp[i])) then
      lu.fail(string.format("%s[%d]: got %.17g, want %.17g (tol %g)", what, i, got[i], exp[i], tol))
    end
  end
end

-- The golden network with its weights, as float32 (then converted by the caller).
local function build(g)
  local l1, ln, l2 = nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 3)
  local model = nn.Sequential(l1, nn.GELU(), ln, nn.Tanh(), l2)
  return model, {l1 = l1, ln = ln, l2 = l2}, g
end

local function load(parts, g, dtype)
  local function t(v) return mo.tensor(v, {dtype = dtype}) end
  parts.l1.weight:copy_(t(g.W1)); parts.l1.bias:copy_(t(g.B1))
  parts.ln.weight:copy_(t(g.G)); parts.ln.bias:copy_(t(g.BETA))
  parts.l2.weight:copy_(t(g.W2)); parts.l2.bias:copy_(t(g.B2))
end

-- forward, loss (label smoothing 0.1), backward; returns out, loss, dx
local function run(model, g, dtype)
  local x = mo.tensor(g.X, {dtype = dtype})
  local ce = nn.CrossEntropyLoss({label_smoothing = 0.1})
  local out = model:forward(x)
  local loss = ce:forward(out, g.Y)
  model:zero_grad()
  local dx = model:backward(x, ce:backward(out, g.Y))
  return out, loss, dx
end

local TestNnF64 = {}

function TestNnF64.test_network_matches_pytorch_float64()
  local model, parts, g = build(golden())
  local w = parts.l1.weight
  lu.assertIs(model:double(), model)
  lu.assertIs(parts.l1.weight, w)                       -- identity kept
  lu.assertEquals(w.dtype, "float64")
  lu.assertEquals(w.grad.dtype, "float64")
  load(parts, g, "float64")
  local out, loss, dx = run(model, g, "float64")
  lu.assertEquals(out.dtype, "float64")
  local r = g.f64
  assert_close(out, r.out, 1e-12, "out")
  assert_close({loss}, {r.loss}, 1e-12, "loss")
  assert_close(dx, r.dx, 1e-11, "dx")
  assert_close(parts.l1.weight.grad, r.dw1, 1e-11, "dw1")
  assert_close(parts.l1.bias.grad, r.db1, 1e-11, "db1")
  assert_close(parts.ln.weight.grad, r.dg, 1e-11, "dgamma")
  assert_close(parts.ln.bias.grad, r.dbeta, 1e-11, "dbeta")
  assert_close(parts.l2.weight.grad, r.dw2, 1e-11, "dw2")
  assert_close(parts.l2.bias.grad, r.db2, 1e-11, "db2")
  -- the flat buffers are float64 and hold the parameters
  local fp, fg = model:flat_parameters()
  lu.assertEquals(fp.dtype, "float64")
  lu.assertEquals(fg.dtype, "float64")
  lu.assertEquals(fp:numel(), model:num_parameters())
end

function TestNnF64.test_float32_network_stays_float32_and_agrees_loosely()
  local model, parts, g = build(golden())
  load(parts, g, "float32")
  local out, loss, dx = run(model, g, "float32")
  lu.assertEquals(out.dtype, "float32")
  assert_close(out, g.f32.out, 2e-6, "out")
  assert_close({loss}, {g.f32.loss}, 2e-6, "loss")
  assert_close(dx, g.f32.dx, 1e-5, "dx")
  -- float32 cannot reach the float64 reference to 1e-12: the golden inputs need float64
  local worst = 0
  for i, v in ipairs(helpers.flatten(out:totable())) do
    worst = math.max(worst, math.abs(v - helpers.flatten(g.f64.out)[i]))
  end
  lu.assertTrue(worst > 1e-12)
end

function TestNnF64.test_double_then_float_round_trips_values()
  local model, parts, g = build(golden())
  load(parts, g, "float32")
  local before = parts.l2.weight:totable()
  model:double()
  model:float()
  lu.assertEquals(parts.l2.weight.dtype, "float32")
  lu.assertEquals(parts.l2.weight:totable(), before)     -- float32 -> float64 -> float32 is exact
  lu.assertIs(model:to("float64"), model)
  lu.assertEquals(parts.ln.bias.dtype, "float64")
  helpers.fails('dtype must be "float32" or "float64", got string "int8"', model.to, model, "int8")
end

function TestNnF64.test_activations_and_softmax_match_pytorch()
  local g = golden()
  local v, go = mo.tensor(g.V, {dtype = "float64"}), mo.tensor(g.GO, {dtype = "float64"})
  local mods = {
    relu = nn.ReLU(), sigmoid = nn.Sigmoid(), tanh = nn.Tanh(), leaky_relu = nn.LeakyReLU(0.2),
    gelu = nn.GELU(), gelu_tanh = nn.GELU("tanh"),
  }
  for name, m in pairs(mods) do
    local y = m:forward(v)
    lu.assertEquals(y.dtype, "float64", name)
    assert_close(y, g[name], 1e-13, name)
    assert_close(m:backward(v, go), g[name .. "_grad"], 1e-13, name .. " grad")
  end
  local sm = nn.Softmax(2)
  local o = mo.tensor(g.O, {dtype = "float64"})
  assert_close(sm:forward(o), g.softmax, 1e-14, "softmax")
  assert_close(sm:backward(o, mo.tensor(g.T, {dtype = "float64"})), g.softmax_grad, 1e-13,
               "softmax grad")
end

function TestNnF64.test_losses_match_pytorch()
  local g = golden()
  local o = mo.tensor(g.O, {dtype = "float64"})
  for _, red in ipairs{"mean", "sum"} do
    local mse = nn.MSELoss({reduction = red})
    local t = mo.tensor(g.T, {dtype = "float64"})
    assert_close({mse:forward(o, t)}, {g["mse_" .. red]}, 1e-14, "mse " .. red)
    assert_close(mse:backward(o, t), g["mse_" .. red .. "_grad"], 1e-14, "mse grad " .. red)
    local bce = nn.BCEWithLogitsLoss({reduction = red})
    local tb = mo.tensor(g.TB, {dtype = "float64"})
    assert_close({bce:forward(o, tb)}, {g["bce_" .. red]}, 1e-14, "bce " .. red)
    assert_close(bce:backward(o, tb), g["bce_" .. red .. "_grad"], 1e-14, "bce grad " .. red)
  end
end

function TestNnF64.test_layernorm_and_dropout_in_float64()
  local ln = nn.LayerNorm(4):double()
  local x = mo.tensor({{1 + 1e-12, 2, 3, 4}, {-1, 0, 1, 2e-12}}, {dtype = "float64"})
  local y = ln:forward(x)
  lu.assertEquals(y.dtype, "float64")
  local m = y:mean(2)
  for i = 1, 2 do lu.assertAlmostEquals(m[i]:item(), 0, 1e-15) end
  local d = nn.Dropout(0.5):double()
  mo.manual_seed(3)
  local z = d:forward(mo.ones({64}, {dtype = "float64"}))
  lu.assertEquals(z.dtype, "float64")
  for _, v in ipairs(z:totable()) do lu.assertTrue(v == 0 or v == 2) end
  -- the same seed gives the same pattern in float32
  mo.manual_seed(3)
  local z32 = nn.Dropout(0.5):forward(mo.ones(64))
  lu.assertEquals(z32:totable(), z:totable())
  lu.assertEquals(d:backward(nil, mo.ones({64}, {dtype = "float64"})):totable(), z:totable())
end

function TestNnF64.test_mixing_dtypes_is_an_error_naming_both()
  local lin = nn.Linear(3, 2)
  helpers.fails("Linear:forward: dtype mismatch: float64 vs float32",
                lin.forward, lin, mo.zeros({4, 3}, {dtype = "float64"}))
  local mse = nn.MSELoss()
  helpers.fails("MSELoss:forward: dtype mismatch: float64 vs float32", mse.forward, mse,
                mo.zeros({2}, {dtype = "float64"}), mo.zeros(2))
  -- a module whose parameters were converted apart from its container's
  local a, b = nn.Linear(2, 2), nn.Linear(2, 2)
  local seq = nn.Sequential(a, b)
  a:double()
  helpers.fails("is float32, parameter #1 float64", seq.parameters, seq)
  seq:double()
  lu.assertEquals(#seq:parameters(), 4)
  -- class indices in a float32 tensor work for float64 logits (index tensors may differ)
  local ce = nn.CrossEntropyLoss()
  local logits = mo.tensor({{1, 2}, {3, 1}}, {dtype = "float64"})
  lu.assertAlmostEquals(ce:forward(logits, mo.tensor({2, 1})), ce:forward(logits, {2, 1}), 0)
  helpers.fails("target[2] = 3 is not a class index in 1..2", ce.forward, ce, logits,
                mo.tensor({2, 3}, {dtype = "float64"}))
end

function TestNnF64.test_optimizer_trains_a_float64_model()
  mo.manual_seed(5)
  local model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)):double()
  local opt = mo.optim.Adam(model:parameters(), {lr = 0.05})
  local x = mo.tensor({{0, 0}, {0, 1}, {1, 0}, {1, 1}}, {dtype = "float64"})
  local y = mo.tensor({{0}, {1}, {1}, {0}}, {dtype = "float64"})
  local mse = nn.MSELoss()
  local first, last
  for i = 1, 300 do
    local out = model:forward(x)
    local l = mse:forward(out, y)
    if i == 1 then first = l end
    last = l
    model:zero_grad()
    model:backward(x, mse:backward(out, y))
    opt:step()
  end
  lu.assertTrue(last < first * 0.1, string.format("loss %g -> %g", first, last))
end

function TestNnF64.test_data_helpers_in_float64()
  local x = mo.tensor({{1, 2 + 1e-12}, {3, 4}, {5, 6}}, {dtype = "float64"})
  local mean, sd = core.mean_std(x)
  lu.assertAlmostEquals(mean, (21 + 1e-12) / 6, 1e-15)
  lu.assertTrue(sd > 0)
  local cm, cs = core.column_mean_std(x)
  lu.assertEquals(cm.dtype, "float64")
  lu.assertEquals(cm:totable()[2], (12 + 1e-12) / 3)     -- float32 would lose the 1e-12
  local n = x:clone()
  core.normalize_columns_(n, cm, cs)
  local m2 = core.column_mean_std(n)
  for _, v in ipairs(m2:totable()) do lu.assertAlmostEquals(v, 0, 1e-15) end
  local dst = mo.zeros({2, 2}, {dtype = "float64"})
  core.gather_rows(dst, x, {3, 1}, 1, 2)
  lu.assertEquals(dst:totable(), {{5, 6}, {1, 2 + 1e-12}})
  lu.assertEquals(core.count_correct(x, mo.tensor({2, 2, 1})), 2)
  helpers.fails("gather_rows: dtype mismatch: float32 vs float64", core.gather_rows,
                mo.zeros(2, 2), x, {1, 2}, 1, 2)
  -- a float64 data set through the loader keeps its dtype
  local ds = mo.data.dataset(x, mo.tensor({{1}, {2}, {3}}, {dtype = "float64"}))
  local seen = 0
  for xb, yb in mo.data.batches(ds, 2) do
    lu.assertEquals(xb.dtype, "float64")
    lu.assertEquals(yb.dtype, "float64")
    seen = seen + xb:shape()[1]
  end
  lu.assertEquals(seen, 3)
end

return {TestNnF64 = TestNnF64}
