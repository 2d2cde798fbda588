-- Reductions over several dims at once, clamp with tensor bounds, addcmul/addcdiv with
-- broadcasting, the in-place comparisons and dot as a 0-d tensor: against PyTorch 1.13 in
-- float32 and float64 (tests/golden/gaps_golden.lua, made by
-- tests/golden/make_gaps_golden.py), plus the error cases.
local lu = require "luaunit"
local mo = require "moonopt"
local helpers = require "helpers"

-- loaded by each test and dropped after it (run.lua loads every test file first)
local function golden() return dofile("tests/golden/gaps_golden.lua") end

local DTYPES = {float32 = {"f32", 2e-6}, float64 = {"f64", 1e-13}}

local function close(t, want, tol, what)
  lu.assertTrue(mo.is_tensor(t), what .. ": a tensor")
  local got = helpers.flatten(t:totable())
  local exp = helpers.flatten(want)
  lu.assertEquals(#got, #exp, what)
  for i = 1, #exp do
    if math.abs(got[i] - exp[i]) > tol * (1 + math.abs(exp[i])) then
      lu.fail(string.format("%s[%d]: got %.17g, want %.17g", what, i, got[i], exp[i]))
    end
  end
end

local function each_dtype(f)
  local g = golden()
  for dt, v in pairs(DTYPES) do
    local function T(x) return mo.tensor(x, {dtype = dt}) end
    f(g, g[v[1]], v[2], T, dt)
  end
end

local TestMultiDim = {}

function TestMultiDim.test_sum_mean_std_var_logsumexp_norm_over_dim_lists()
  each_dtype(function(g, r, tol, T, dt)
    local x = T(g.X)
    for name, dims in pairs{["13"] = {1, 3}, ["23"] = {2, 3}, ["123"] = {1, 2, 3}, m1m3 = {-1, -3}} do
      local w = dt .. " " .. name
      close(x:sum(dims), r["sum_" .. name], tol, "sum " .. w)
      close(x:mean(dims), r["mean_" .. name], tol, "mean " .. w)
      close(x:std(dims), r["std_" .. name], tol, "std " .. w)
      close(x:var(dims, false), r["var_" .. name], tol, "var " .. w)
      close(x:logsumexp(dims), r["lse_" .. name], tol, "logsumexp " .. w)
      close(x:norm(3, dims), r["norm_" .. name], tol, "norm " .. w)
      lu.assertEquals(x:sum(dims).dtype, dt)
    end
    local k = x:sum({1, 3}, true)
    lu.assertEquals(k:shape(), {1, 3, 1})
    close(k, r.sum_13_keep, tol, "sum keepdim")
    local s = x:std({2, 3}, true, true)
    lu.assertEquals(s:shape(), {2, 1, 1})
    close(s, r.std_23_keep, tol, "std keepdim")
    -- non-contiguous input (a transpose): permuted dims that cannot be flattened as a view
    local xt = x:transpose(1, 3)
    close(xt:sum({1, 2}), r.sum_t12, tol, "sum of a transpose")
    close(xt:var({1, 3}), r.var_t13, tol, "var of a transpose")
    -- every dim gives a 0-d tensor; one dim in a list is the plain reduction; {} is all dims
    lu.assertEquals(x:sum({1, 2, 3}):dim(), 0)
    lu.assertEquals(x:sum({2}):totable(), x:sum(2):totable())
    lu.assertEquals(x:sum({}):item(), x:sum():item())
  end)
end

function TestMultiDim.test_corner_cases()
  local z = mo.zeros(2, 0, 3)
  lu.assertEquals(z:sum({2, 3}):totable(), {0, 0})
  lu.assertTrue(z:mean({2, 3}):totable()[1] ~= z:mean({2, 3}):totable()[1])   -- NaN
  local s = mo.tensor(5)
  lu.assertEquals(s:sum({1}):item(), 5)                                     -- 0-d: one pseudo-dim
  local e = mo.arange(1, 24):view(2, 3, 4):expand(2, 2, 3, 4)               -- stride 0
  lu.assertEquals(e:sum({1, 2}):totable(), (mo.arange(1, 24):view(2, 3, 4):sum(1) * 2):totable())
end

function TestMultiDim.test_errors_name_the_op_and_the_dims()
  local x = mo.zeros(2, 3, 4)
  helpers.fails("bad argument #1 to 'sum' (dimension 2 appears twice in the list)",
                function() return x:sum({2, 2}) end)
  helpers.fails("bad argument #1 to 'mean' (dims[2] = 4 is not a dimension of a 3-d tensor of shape "
                .. "{2, 3, 4} (expected 1..3 or -3..-1))",
                function() return x:mean({1, 4}) end)
  helpers.fails("bad argument #1 to 'std' (dims[1] = string is not a dimension",
                function() return x:std({"a"}) end)
  helpers.fails("bad argument #1 to 'sum' (4 dimensions listed for a 3-d tensor)",
                function() return x:sum({1, 2, 3, 1}) end)
  -- PyTorch's prod takes one dim only
  helpers.fails("bad argument #1 to 'prod'", function() return x:prod({1, 2}) end)
end

local TestClampTensor = {}

function TestClampTensor.test_tensor_bounds_broadcast()
  each_dtype(function(g, r, tol, T, dt)
    local x, lo, hi = T(g.X), T(g.LO), T(g.HI)
    close(x:clamp(lo, hi), r.clamp_tt, tol, "clamp " .. dt)
    close(x:clamp(lo), r.clamp_lo, tol, "clamp lo " .. dt)
    close(x:clamp(nil, hi), r.clamp_hi, tol, "clamp hi " .. dt)
    close(x:clamp(lo, 0.2), r.clamp_tn, tol, "clamp lo tensor, hi number " .. dt)
    local y = x:clone()
    lu.assertIs(y:clamp_(lo, hi), y)
    close(y, r.clamp_tt, tol, "clamp_ " .. dt)
  end)
end

function TestClampTensor.test_new_shape_errors_and_aliasing()
  local a = mo.tensor({1, 5, 9})
  -- a bound bigger than self: a new result of the broadcast shape, in place an error
  lu.assertEquals(a:clamp(mo.tensor({{2}, {6}}), 8):totable(), {{2, 5, 8}, {6, 6, 8}})
  helpers.fails("clamp_: bound {2, 1} does not broadcast to self's shape {3}",
                a.clamp_, a, mo.tensor({{2}, {6}}), 8)
  helpers.fails("clamp_: bound {2, 1} does not broadcast to self's shape {3}",
                a.clamp_, a, 0, mo.tensor({{2}, {6}}))
  -- only the bounds given as tensors are named (a number or nil is not a shape {})
  helpers.fails("clamp: shapes {3} and {2} cannot broadcast", a.clamp, a, mo.zeros(2), 1)
  helpers.fails("clamp: shapes {3} and {2} cannot broadcast", a.clamp, a, mo.zeros(2), nil)
  helpers.fails("clamp: shapes {3}, {2} and {4} cannot broadcast", a.clamp, a, mo.zeros(2), mo.ones(4))
  helpers.fails("clamp: dtype mismatch: float32 vs float64", a.clamp, a,
                mo.zeros(3, {dtype = "float64"}))
  -- a bound that is self (or a view of it) in place
  local b = mo.tensor({3, 1, 2})
  b:clamp_(b, 2)
  lu.assertEquals(b:totable(), {2, 1, 2})
  lu.assertEquals(a:totable(), {1, 5, 9})        -- failed calls changed nothing
end

local TestAddcBroadcast = {}

function TestAddcBroadcast.test_addcmul_addcdiv_broadcast()
  each_dtype(function(g, r, tol, T, dt)
    local a, t1, t2 = T(g.A), T(g.T1), T(g.T2)
    close(a:addcmul(t1, t2, 0.7), r.addcmul, tol, "addcmul " .. dt)
    close(a:addcdiv(-1.5, t1, t2), r.addcdiv, tol, "addcdiv (torch7 order) " .. dt)
    local c = a:clone()
    c:addcmul_(t1, t2, 0.7)
    close(c, r.addcmul, tol, "addcmul_ " .. dt)
    -- self itself broadcasts in the new-result form
    close(T(g.T1):addcmul(t1, t2), r.addcmul_grow, tol, "addcmul growing self " .. dt)
  end)
  local s = mo.zeros(3, 1)
  helpers.fails("addcmul_: shapes {3, 1} and {4} do not broadcast to self's shape {3, 1}",
                s.addcmul_, s, mo.ones(3, 1), mo.ones(4))
  -- an operand sharing self's memory in place
  local x = mo.tensor({1, 2, 3})
  x:addcmul_(x, mo.tensor(2))
  lu.assertEquals(x:totable(), {3, 6, 9})
end

local TestInPlaceCompare = {}

function TestInPlaceCompare.test_eq_ne_lt_le_gt_ge_in_place()
  each_dtype(function(g, r, _, T, dt)
    local hi = T(g.HI)
    for _, op in ipairs{"eq", "ne", "lt", "le", "gt", "ge"} do
      local y = T(g.X)
      lu.assertIs(y[op .. "_"](y, hi), y)
      close(y, r[op .. "_"], 0, op .. "_ " .. dt)
      lu.assertEquals(y.dtype, dt)
    end
    local y = T(g.X)
    y:lt_(0.1)
    close(y, r.lt_scalar_, 0, "lt_ number " .. dt)
  end)
  local a = mo.zeros(3)
  helpers.fails("gt_: shape {2, 3} does not broadcast to self's shape {3}", a.gt_, a, mo.zeros(2, 3))
  helpers.fails("eq_: dtype mismatch: float32 vs float64", a.eq_, a, mo.zeros(3, {dtype = "float64"}))
end

function TestInPlaceCompare.test_dot_is_a_0d_tensor()
  each_dtype(function(g, r, tol, T, dt)
    local d = T(g.V):dot(T(g.W))
    lu.assertEquals(d:dim(), 0)
    lu.assertEquals(d.dtype, dt)
    close(d, r.dot, tol, "dot " .. dt)
  end)
end

return {TestMultiDim = TestMultiDim, TestClampTensor = TestClampTensor,
        TestAddcBroadcast = TestAddcBroadcast, TestInPlaceCompare = TestInPlaceCompare}
