-- tests/lua/test_dtype.lua - float64 through the tensor API (docs/api.md "Two dtypes").
--
-- tests/golden/dtype_golden.lua (made by tests/golden/make_dtype_golden.py, NumPy float64)
-- holds inputs with digits float32 cannot carry (1e-12 offsets) and every op's float64
-- result; each op run in float64 must match to 1e-14 relative, which a path that computed
-- in float32 anywhere would miss by ~1e-8.
local lu = require "luaunit"
local mo = require "moonopt"

local G = dofile("tests/golden/dtype_golden.lua")

local function f64(v) return mo.tensor(v, {dtype = "float64"}) end

local function close(got, want, what)
  if type(want) == "table" then
    lu.assertEquals(#got, #want, what)
    for i = 1, #want do close(got[i], want[i], what .. "[" .. i .. "]") end
    return
  end
  local tol = 1e-14 * math.max(1, math.abs(want))
  if math.abs(got - want) > tol then
    lu.fail(string.format("%s: got %.17g, want %.17g", what, got, want))
  end
end

local function check(t, want, what)
  lu.assertEquals(t.dtype, "float64", what)
  close(t:totable(), want, what)
end

local TestDtypeGolden = {}

function TestDtypeGolden.test_unary()
  local x, pos = f64(G.x), f64(G.pos)
  for _, op in ipairs{"neg", "exp", "tanh", "sigmoid", "relu", "abs", "sign"} do
    check(x[op](x), G[op], op)
    local c = x:clone(); c[op .. "_"](c); check(c, G[op], op .. "_")
  end
  check(pos:sqrt(), G.sqrt, "sqrt")
  check(pos:log(), G.log, "log")
  check(-x, G.neg, "__unm")
end

function TestDtypeGolden.test_binary_and_scalars()
  local x, y, pos = f64(G.x), f64(G.y), f64(G.pos)
  check(x:add(y), G.add, "add"); check(x - y, G.sub, "__sub")
  check(x * y, G.mul, "__mul"); check(x:div(y), G.div, "div")
  check(x + 0.1, G.add_s, "x + 0.1"); check(0.1 - x, G.rsub_s, "0.1 - x")
  check(0.1 / y, G.rdiv_s, "0.1 / y")
  check(pos ^ 3, G.pow3, "pow 3"); check(x:pow(2), G.pow2, "pow 2"); check(pos:pow(0.5), G.powh, "pow .5")
  check(x:clamp(-0.3, 0.7), G.clamp, "clamp")
  check(x:addcmul(0.3, x, y), G.addcmul, "addcmul"); check(x:addcdiv(0.3, x, y), G.addcdiv, "addcdiv")
  local c = x:clone(); c:add_(y); check(c, G.add, "add_")
end

function TestDtypeGolden.test_reductions()
  local x, y = f64(G.x), f64(G.y)
  close(x:sum():item(), G.sum, "sum"); close(x:mean():item(), G.mean, "mean")
  close(x:max():item(), G.max, "max"); close(x:min():item(), G.min, "min")
  check(x:sum(1), G.sum1, "sum(1)"); check(x:sum(2), G.sum2, "sum(2)")
  check(x:mean(2), G.mean2, "mean(2)"); check(x:max(1), G.max1, "max(1)")
  check(x:min(2), G.min2, "min(2)"); check(x:argmax(2), G.argmax2, "argmax(2)")
  close(x:dot(y):item(), G.dot, "dot"); close(x:norm():item(), G.norm, "norm")
  close(require("moonopt.core").norm_many{x, x}, G.norm * math.sqrt(2), "norm_many")
end

function TestDtypeGolden.test_matmul()
  local x, m = f64(G.x), f64(G.m)
  check(mo.matmul(x, m), G.matmul, "matmul")
  check(mo.matmul(x:t(), m, {trans_a = true}), G.matmul, "matmul trans_a")
  check(mo.matmul(x:t():contiguous():t(), m), G.matmul_tt, "matmul strided")
  local out = mo.zeros({3, 5}, {dtype = "float64"})
  check(mo.matmul(x, m, {out = out}), G.matmul, "matmul out")
end

local TestDtypeApi = {}

function TestDtypeApi.test_constructors()
  for _, t in ipairs{mo.zeros({2, 3}, {dtype = "float64"}), mo.zeros(2, 3, {dtype = "float64"}),
                     mo.ones({2}, {dtype = "float64"}), mo.empty({2}, {dtype = "float64"}),
                     mo.full({2}, 0.1, {dtype = "float64"}), mo.rand({2}, {dtype = "float64"}),
                     mo.randn(2, {dtype = "float64"}), mo.arange(3, {dtype = "float64"}),
                     mo.arange(1, 2, 0.5, {dtype = "float64"}), mo.tensor(0.1, {dtype = "float64"}),
                     mo.tensor({1, 2}, {dtype = "float64"}), mo.tensor({1, 2, 3, 4}, {2, 2}, {dtype = "float64"})} do
    lu.assertEquals(t.dtype, "float64")
  end
  lu.assertEquals(mo.zeros(2).dtype, "float32")
  lu.assertEquals(mo.zeros({}).dtype, "float32")
  lu.assertEquals(mo.zeros({}):dim(), 0)
  lu.assertEquals(mo.full({2}, 0.1, {dtype = "float64"}):get(1), 0.1)     -- exact
  lu.assertNotEquals(mo.full({2}, 0.1):get(1), 0.1)                         -- float32 rounds
  lu.assertEquals(mo.tensor(0.1, {dtype = "float64"}):item(), 0.1)
  lu.assertEquals(mo.tensor{{0.1}}:double().dtype, "float64")
  local r = mo.rand({1000}, {dtype = "float64"})
  lu.assertTrue(r:min():item() >= 0 and r:max():item() < 1)
  lu.assertErrorMsgContains("unknown option dtyp", mo.zeros, {2}, {dtyp = "float64"})
  lu.assertErrorMsgContains('dtype must be "float32" or "float64", got int64', mo.zeros, {2}, {dtype = "int64"})
  lu.assertErrorMsgContains('dtype must be "float32" or "float64"', mo.tensor, {1}, {dtype = 64})
end

function TestDtypeApi.test_exact_values_and_access()
  local v = 1 + 2^-40
  local t = mo.zeros({2, 2}, {dtype = "float64"})
  t:set(1, 2, v)
  lu.assertEquals(t:get(1, 2), v)
  lu.assertEquals(t:totable()[1][2], v)
  lu.assertEquals(t:t():get(2, 1), v)
  lu.assertEquals(t:narrow(2, 2, 1):reshape(2):totable(), {v, 0})
  t:fill(v); lu.assertEquals(t:sum():item(), 4 * v)
  lu.assertEquals((t + 2^-45):get(1, 1), v + 2^-45)
  lu.assertStrContains(tostring(t), "[moonopt.Tensor float64 of size {2, 2}]")
  lu.assertStrContains(tostring(mo.zeros(2)), "[moonopt.Tensor float32 of size {2}]")
end

function TestDtypeApi.test_propagation_through_views_clone_copy()
  local t = mo.arange(6, {dtype = "float64"}):view(2, 3)
  for _, u in ipairs{t:t(), t:narrow(1, 1, 1), t:select(1, 2), t:transpose(1, 2), t:reshape(3, 2),
                     t:clone(), t:contiguous(), t:t():contiguous(), mo.tensor(t), t:sum(1), t:argmax(2)} do
    lu.assertEquals(u.dtype, "float64")
  end
  lu.assertEquals(mo.tensor(t, {dtype = "float32"}).dtype, "float32")
end

function TestDtypeApi.test_conversion()
  local d = mo.tensor({0.1, 1e300, -1e300, 2^-30 + 1}, {dtype = "float64"})
  local f = d:float()
  lu.assertEquals(f.dtype, "float32")
  lu.assertEquals(f:get(2), math.huge); lu.assertEquals(f:get(3), -math.huge)
  lu.assertEquals(f:get(4), 1)
  lu.assertEquals(f:double():get(1), mo.tensor{0.1}:get(1))
  lu.assertTrue(d:double() == d)             -- already float64: self
  lu.assertEquals(d:to("float32"):get(1), f:get(1))
  local c = mo.zeros(4); c:copy(d)           -- copy converts
  lu.assertEquals(c:get(1), f:get(1))
  local e = mo.zeros({4}, {dtype = "float64"}); e:copy_(mo.tensor{0.5, 1, 2, 3})
  lu.assertEquals(e:totable(), {0.5, 1, 2, 3})
  lu.assertErrorMsgContains('dtype must be', d.to, d, "half")
end

function TestDtypeApi.test_mixing_is_an_error()
  local a, b = mo.ones(2), mo.ones({2}, {dtype = "float64"})
  local msg = "dtype mismatch: float32 vs float64"
  lu.assertErrorMsgContains("__add: " .. msg, function() return a + b end)
  lu.assertErrorMsgContains("add: " .. msg, a.add, a, b)
  lu.assertErrorMsgContains("mul_: " .. msg, a.mul_, a, b)
  lu.assertErrorMsgContains("dot: " .. msg, a.dot, a, b)
  lu.assertErrorMsgContains("addcmul: " .. msg, a.addcmul, a, 1, a, b)
  lu.assertErrorMsgContains("matmul: " .. msg, mo.matmul, mo.ones(2, 2), mo.ones({2, 2}, {dtype = "float64"}))
  lu.assertErrorMsgContains("axpy_: " .. msg, require("moonopt.core").axpy_, a, 1, b)
  lu.assertErrorMsgContains("grad: dtype mismatch", function() a.grad = b end)
  lu.assertEquals(a:totable(), {1, 1})       -- nothing half-changed
  lu.assertEquals((b + 1):get(1), 2)         -- numbers adapt
end

function TestDtypeApi.test_float32_only_families_refuse()
  -- the optimizers take float64 since issue 11 (tests/lua/test_optim_f64.lua); nn does not
  local p = mo.ones({2}, {dtype = "float64"})
  p.grad = mo.ones({2}, {dtype = "float64"})
  local opt = mo.optim.SGD({p}, {lr = 0.1})
  opt:step()
  lu.assertEquals(p:totable(), {0.9, 0.9})
  local lin = mo.nn.Linear(2, 1)
  lu.assertError(lin.forward, lin, mo.ones({1, 2}, {dtype = "float64"}))
end

function TestDtypeApi.test_checkpoint_round_trip()
  local path = os.tmpname()
  local ck = require "moonopt.checkpoint"
  local v = 1 + 2^-40
  ck.save_tensors(path, {w = mo.full({2, 2}, v, {dtype = "float64"}), s = mo.ones(2)})
  local ts = ck.load_tensors(path)
  os.remove(path)
  lu.assertEquals(ts.w.dtype, "float64"); lu.assertEquals(ts.w:get(2, 2), v)
  lu.assertEquals(ts.s.dtype, "float32")
end

return {TestDtypeGolden = TestDtypeGolden, TestDtypeApi = TestDtypeApi}
