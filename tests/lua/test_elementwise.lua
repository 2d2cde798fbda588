-- tests/lua/test_elementwise.lua - the elementwise family (issue 11): unary math, broadcasting
-- binary ops with numbers on either side, comparisons, maximum/minimum, where, masked_fill,
-- clamp; in float32 and float64 against PyTorch 1.13 (tests/golden/elementwise_golden.lua,
-- made by tests/golden/make_elementwise_golden.py), plus broadcasting corner cases (size-0,
-- size-1, 0-d, numbers on both sides), non-contiguous inputs, NaN/inf and errors.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"

-- Loaded per test and dropped after it: a large table kept alive for the whole run would
-- change the collector's pacing for every later test (the hostile-finalizer harness and the
-- optimizer finalizer test count on a small heap).
local G
local DTYPES = {"float32", "float64"}
-- float32 kernels call expf/sinf/powf, PyTorch its own vectorized ones: a few ulp apart
local RTOL = {float32 = 4e-6, float64 = 4e-14}

local function T(g, dt) return mo.tensor(g.data, g.shape, {dtype = dt}) end

local function flat(t)
  local v = t:contiguous():view(t:numel()):totable()
  return type(v) == "table" and v or {v}
end

-- t must have the golden's shape, t's dtype dt and every value within RTOL (NaN == NaN,
-- infinities exact).
local function check(t, g, dt, what)
  lu.assertEquals(t.dtype, dt, what)
  lu.assertEquals(t:shape(), g.shape, what .. ": shape")
  local got = flat(t)
  for i, w in ipairs(g.data) do
    local v = got[i]
    local ok
    if w ~= w then ok = v ~= v
    elseif w == math.huge or w == -math.huge then ok = v == w
    else ok = math.abs(v - w) <= RTOL[dt] * math.max(1, math.abs(w)) end
    if not ok then
      lu.fail(string.format("%s (%s) [%d]: got %.17g, want %.17g", what, dt, i, v, w))
    end
  end
end

local UNARY = {"exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "abs", "sign", "sin", "cos",
               "tan", "tanh", "sigmoid", "relu", "floor", "ceil", "round", "neg", "erf"}
local POSITIVE = {log = true, sqrt = true, rsqrt = true, log1p = true}
local SCALED = {floor = true, ceil = true, round = true}

local TestElementwiseGolden = {}

function TestElementwiseGolden.setUp() G = dofile("tests/golden/elementwise_golden.lua") end
function TestElementwiseGolden.tearDown() G = nil end

function TestElementwiseGolden.test_unary_methods_and_in_place()
  for _, dt in ipairs(DTYPES) do
    local g = G[dt]
    for _, op in ipairs(UNARY) do
      local src = POSITIVE[op] and T(g.pos, dt) or (SCALED[op] and T(g.x, dt) * 3 or T(g.x, dt))
      check(src[op](src), g["u_" .. op], dt, op)
      local c = src:clone()
      lu.assertIs(c[op .. "_"](c), c)
      check(c, g["u_" .. op], dt, op .. "_")
      -- special values: NaN, +-inf, signed zeros (sign(NaN) is NaN here, 0 in PyTorch 1.13)
      local sp = T(g.sp, dt)
      local got = sp[op](sp)
      if op == "sign" then
        lu.assertTrue(flat(got)[1] ~= flat(got)[1], "sign(NaN) stays NaN")
        got = got:narrow(1, 2, 7)
        check(got, {shape = {7}, data = {table.unpack(g.sp_sign.data, 2)}}, dt, "sign sp")
      else
        check(got, g["sp_" .. op], dt, op .. " special values")
      end
    end
    check(T(g.q, dt):round(), g.round_q, dt, "round halves to even")
    check(-T(g.x, dt), g.u_neg, dt, "__unm")
  end
end

function TestElementwiseGolden.test_clamp()
  for _, dt in ipairs(DTYPES) do
    local g, x = G[dt], T(G[dt].x, dt)
    check(x:clamp(-0.3, 0.7), g.clamp, dt, "clamp")
    check(x:clamp(-0.3), g.clamp_lo, dt, "clamp lo")
    check(x:clamp(nil, 0.2), g.clamp_hi, dt, "clamp hi")
    check(x:clone():clamp_(nil, 0.2), g.clamp_hi, dt, "clamp_ hi")
    check(T(g.sp, dt):clamp(-1, 1), g.sp_clamp, dt, "clamp keeps NaN")
  end
end

function TestElementwiseGolden.test_binary_broadcasting()
  local ops = {add = "__add", sub = "__sub", mul = "__mul", div = "__div"}
  for _, dt in ipairs(DTYPES) do
    local g = G[dt]
    local x, r, c, s, blk = T(g.x, dt), T(g.r, dt), T(g.c, dt), T(g.s, dt), T(g.blk, dt)
    local sp, sp2 = T(g.sp, dt), T(g.sp2, dt)
    for _, op in ipairs{"add", "sub", "mul", "div", "maximum", "minimum"} do
      check(x[op](x, r), g["xr_" .. op], dt, "x:" .. op .. "(r)")
      check(c[op](c, x), g["cx_" .. op], dt, "c:" .. op .. "(x)")
      check(x[op](x, s), g["xs_" .. op], dt, "x:" .. op .. "(0-d)")
      check(blk[op](blk, c), g["blkc_" .. op], dt, "{2,1,4}:" .. op .. "({3,1})")
      check(sp[op](sp, sp2), g["sp_" .. op .. "2"], dt, op .. " special values")
      if ops[op] then
        local mm = getmetatable(x)[ops[op]]
        check(mm(x, r), g["xr_" .. op], dt, ops[op])
        check(mm(c, x), g["cx_" .. op], dt, ops[op] .. " column")
        -- in place: self keeps its shape, the other operand broadcasts
        local y = x:clone()
        lu.assertIs(y[op .. "_"](y, r), y)
        check(y, g["xr_" .. op], dt, op .. "_")
        y = x:clone()
        y[op .. "_"](y, s)
        check(y, g["xs_" .. op], dt, op .. "_ 0-d")
      else
        check(mo[op](x, r), g["xr_" .. op], dt, "mo." .. op)
        check(mo[op](sp, sp2), g["sp_" .. op .. "2"], dt, "mo." .. op .. " NaN propagates")
      end
    end
    local pos = T(g.pos, dt)
    check(pos:pow(r), g.pow_pr, dt, "pow(row)")
    check(pos ^ c, g.pow_pc, dt, "^ column")
    local y = pos:clone()
    y:pow_(r)
    check(y, g.pow_pr, dt, "pow_(row)")
  end
end

function TestElementwiseGolden.test_comparisons()
  for _, dt in ipairs(DTYPES) do
    local g = G[dt]
    local q, qr, sp, sp2 = T(g.q, dt), T(g.qr, dt), T(g.sp, dt), T(g.sp2, dt)
    for _, op in ipairs{"eq", "ne", "lt", "le", "gt", "ge"} do
      check(q[op](q, qr), g["cmp_" .. op], dt, op .. " broadcast")
      check(q[op](q, 0.5), g["cmpn_" .. op], dt, op .. " number")
      check(sp[op](sp, sp2), g["cmpsp_" .. op], dt, op .. " NaN")
    end
    -- some of each: the goldens are not all 0 or all 1
    local eq = q:eq(qr):sum():item()
    lu.assertTrue(eq > 0 and eq < 12)
  end
end

function TestElementwiseGolden.test_numbers_on_either_side()
  for _, dt in ipairs(DTYPES) do
    local g = G[dt]
    local x, pos = T(g.x, dt), T(g.pos, dt)
    check(2 - x, g.n_rsub, dt, "2 - x")
    check(1 / x, g.n_rdiv, dt, "1 / x")
    check(x - 0.1, g.n_sub, dt, "x - 0.1")
    check(x:sub(0.1), g.n_sub, dt, "x:sub(0.1)")
    check(pos ^ 0.5, g.n_powh, dt, "pos ^ 0.5")
    check(2 ^ x, g.n_rpow, dt, "2 ^ x")
    check(x ^ 3, g.n_pow3, dt, "x ^ 3")
    check(mo.maximum(0, x), g.u_relu, dt, "mo.maximum(0, x)")
    check(-mo.minimum(x, 0):neg():maximum(0), {shape = g.x.shape, data = (function()
      local d = {}
      for i, v in ipairs(g.x.data) do d[i] = math.min(v, 0) end
      return d
    end)()}, dt, "minimum(x, 0)")
  end
end

function TestElementwiseGolden.test_where_and_masked_fill()
  for _, dt in ipairs(DTYPES) do
    local g = G[dt]
    local x, r, mask, mrow = T(g.x, dt), T(g.r, dt), T(g.mask, dt), T(g.mrow, dt)
    check(mo.where(mask, x, r), g.where_xr, dt, "where(mask, x, r)")
    check(mo.where(mrow, x, -1), g.where_rn, dt, "where(row mask, x, number)")
    check(mo.where(mask, 2, -3), g.where_nn, dt, "where(mask, number, number)")
    check(x:masked_fill(mrow, 9.5), g.masked_fill, dt, "masked_fill(row mask)")
    check(x:masked_fill(mask, -0.25), g.masked_fill_m, dt, "masked_fill")
    local y = x:clone()
    lu.assertIs(y:masked_fill_(mrow, 9.5), y)
    check(y, g.masked_fill, dt, "masked_fill_")
    -- a mask made by a comparison
    check(mo.where(x:gt(0), x, 0), G[dt].u_relu, dt, "where(x > 0, x, 0)")
  end
end

function TestElementwiseGolden.test_non_contiguous_inputs()
  for _, dt in ipairs(DTYPES) do
    local g = G[dt]
    local x, r = T(g.x, dt), T(g.r, dt)
    local col = mo.full({4, 1}, 0.5, {dtype = dt})
    check(x:t() + col, g.xt_c, dt, "transposed + column")
    check(x:narrow(2, 2, 2) * r:narrow(1, 2, 2), g.xn_r, dt, "narrowed * narrowed row")
    -- the output of an in-place op may be a strided view too
    local big = x:clone()
    local win = big:narrow(2, 2, 2)
    win:mul_(r:narrow(1, 2, 2))
    check(win, g.xn_r, dt, "narrowed mul_")
    lu.assertEquals(big:get(1, 1), x:get(1, 1))
    lu.assertEquals(big:get(3, 4), x:get(3, 4))
    if mo.Tensor.expand then -- stride-0 views (the shape family)
      local e = r:view(1, 4):expand(3, 4)
      check(x + e, g.xr_add, dt, "expanded (stride 0)")
      check(mo.maximum(x, e), g.xr_maximum, dt, "maximum expanded")
    end
  end
end

local TestElementwiseCorners = {}

function TestElementwiseCorners.test_shapes()
  local function shape(t) return t:shape() end
  lu.assertEquals(shape(mo.zeros(2, 0) + mo.zeros(1)), {2, 0})
  lu.assertEquals(shape(mo.zeros(0) + mo.zeros(3, 1)), {3, 0})
  lu.assertEquals(shape(mo.zeros(1) + mo.zeros(3, 1)), {3, 1})
  lu.assertEquals(shape(mo.zeros(4, 1) * mo.zeros(1, 5)), {4, 5})
  lu.assertEquals(shape(mo.zeros(2, 1, 3) - mo.zeros(4, 1)), {2, 4, 3})
  lu.assertEquals(shape(mo.tensor(2) + mo.tensor(3)), {})
  lu.assertEquals((mo.tensor(2) + mo.tensor(3)):item(), 5)
  lu.assertEquals((2 - mo.tensor(3)):item(), -1)
  lu.assertEquals(shape(mo.tensor(2) + mo.zeros(2, 3)), {2, 3})
  lu.assertEquals(shape(mo.zeros(2, 0):gt(mo.zeros(1))), {2, 0})
  lu.assertEquals(shape(mo.where(mo.zeros(0), 1, 2)), {0})
  lu.assertEquals(shape(mo.where(mo.tensor(1), mo.zeros(2, 1), mo.zeros(3))), {2, 3})
  lu.assertEquals(shape(mo.zeros(0, 3):masked_fill(mo.ones(3), 1)), {0, 3})
  lu.assertEquals((mo.zeros(3) + 1):totable(), {1, 1, 1})
  local z = mo.zeros(2, 0)
  lu.assertIs(z:add_(mo.ones(1)), z)
  -- size-1 dims on both sides
  local a = mo.tensor{{1}, {2}}       -- {2, 1}
  local b = mo.tensor{{10, 20, 30}}   -- {1, 3}
  lu.assertEquals((a + b):totable(), {{11, 21, 31}, {12, 22, 32}})
  lu.assertEquals((b - a):totable(), {{9, 19, 29}, {8, 18, 28}})
  lu.assertEquals(a:lt(b:div(15)):totable(), {{0, 1, 1}, {0, 0, 0}})
end

function TestElementwiseCorners.test_aliasing()
  -- in place with an operand broadcast from self's own storage: row 1 added to every row
  local m = mo.tensor{{1, 2}, {3, 4}, {5, 6}}
  m:add_(m:narrow(1, 1, 1))
  lu.assertEquals(m:totable(), {{2, 4}, {4, 6}, {6, 8}})
  -- self's transpose (a square matrix): every element read before it is written
  local s = mo.tensor{{1, 2}, {3, 4}}
  s:sub_(s:t())
  lu.assertEquals(s:totable(), {{0, -1}, {1, 0}})
  -- the mask is self
  local t = mo.tensor{0, 2, 0, -1}
  t:masked_fill_(t, 7)
  lu.assertEquals(t:totable(), {0, 7, 0, 7})
  -- where writing a new tensor from views of one storage
  local v = mo.tensor{1, 0, 3}
  lu.assertEquals(mo.where(v, v, v:neg()):totable(), {1, 0, 3})
end

function TestElementwiseCorners.test_nan_inf()
  local nan, inf = 0 / 0, math.huge
  local a = mo.tensor{nan, 1, inf, -inf}
  local m = mo.maximum(a, mo.tensor{0, nan, 1, 1}):totable()
  lu.assertTrue(m[1] ~= m[1] and m[2] ~= m[2])
  lu.assertEquals({m[3], m[4]}, {inf, 1})
  lu.assertEquals(a:ne(a):totable(), {1, 0, 0, 0})
  lu.assertEquals(a:eq(a):totable(), {0, 1, 1, 1})
  lu.assertEquals(mo.where(mo.tensor{nan, 0}, 1, 2):totable(), {1, 2})  -- NaN counts as true
  lu.assertEquals((1 / mo.tensor{0, -0.0}):totable(), {inf, -inf})
  lu.assertEquals(mo.tensor{0}:rsqrt():item(), inf)
  lu.assertEquals(mo.tensor{-1}:log1p():item(), -inf)
end

function TestElementwiseCorners.test_errors()
  local a, b = mo.zeros(2, 3), mo.zeros(4)
  fails("add: shapes {2, 3} and {4} cannot broadcast", function() return a:add(b) end)
  fails("__add: shapes {2, 3} and {4} cannot broadcast", function() return a + b end)
  fails("__mul: shapes {4} and {2, 3} cannot broadcast", function() return b * a end)
  fails("maximum: shapes {2, 3} and {4} cannot broadcast", mo.maximum, a, b)
  fails("lt: shapes {2, 3} and {4} cannot broadcast", function() return a:lt(b) end)
  fails("add: shapes {2, 0} and {3} cannot broadcast", function() return mo.zeros(2, 0) + mo.zeros(3) end)
  fails("where: shapes {2, 3}, {4} and {3} cannot broadcast", mo.where, a, b, mo.zeros(3))
  fails("where: shapes {2, 3} and {4} cannot broadcast", mo.where, a, 1, b)
  fails("add_: shape {2, 3} does not broadcast to self's shape {3}",
        function() return mo.zeros(3):add_(a) end)
  fails("masked_fill: mask shape {4} does not broadcast to self's shape {2, 3}",
        function() return a:masked_fill(b, 1) end)
  fails("masked_fill_: mask shape {2, 3} does not broadcast to self's shape {3}",
        function() return mo.zeros(3):masked_fill_(a, 1) end)
  local d = mo.zeros(3, {dtype = "float64"})
  fails("add: dtype mismatch: float32 vs float64", function() return mo.zeros(3):add(d) end)
  fails("__sub: dtype mismatch: float64 vs float32", function() return d - mo.zeros(3) end)
  fails("where: dtype mismatch", mo.where, mo.zeros(3), d, 1)
  fails("masked_fill: dtype mismatch", function() return d:masked_fill(mo.zeros(3), 1) end)
  fails("bad argument #1 to 'maximum' (moonopt.Tensor expected, got number)", mo.maximum, 1, 2)
  fails("bad argument #2 to 'where' (moonopt.Tensor or number expected, got string)",
        mo.where, a, "x", 1)
  fails("bad argument #1 to 'where' (moonopt.Tensor expected, got number)", mo.where, 1, 2, 3)
  fails("bad argument #1 to 'gt' (moonopt.Tensor or number expected, got nil)",
        function() return a:gt(nil) end)
  fails("bad argument #2 to 'masked_fill' (number expected, got no value)",
        function() return a:masked_fill(a) end)
  -- nothing changed by a failing in-place call
  local t = mo.tensor{1, 2, 3}
  pcall(t.add_, t, mo.zeros(2, 3))
  pcall(t.masked_fill_, t, mo.zeros(2), 5)
  lu.assertEquals(t:totable(), {1, 2, 3})
  -- numbers adapt to the tensor's dtype: a float64 tensor plus 0.1 stays exact
  lu.assertEquals((d + 0.1):get(1), 0.1)
  lu.assertEquals((d + 0.1).dtype, "float64")
end

return {TestElementwiseGolden = TestElementwiseGolden, TestElementwiseCorners = TestElementwiseCorners}
