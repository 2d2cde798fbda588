-- tests/lua/test_reduce.lua - the reduce family (docs/api.md "Reductions and products")
-- against PyTorch 1.13, in float32 and float64.
--
-- tests/golden/reduce_golden.lua (made by tests/golden/make_reduce_golden.py) holds inputs
-- and, per case, the method, its Lua arguments, an optional view (transpose, narrow, select:
-- non-contiguous inputs) and PyTorch's values and 1-based indices in both dtypes. Values
-- must match to a few float32 ulps (float32) or 1e-12 (float64), shapes exactly (keepdim,
-- 0-d results), indices exactly (ties, NaN), and the result dtype is the input's.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"

-- loaded by each golden test and dropped after it: run.lua loads every test file first, and
-- a 400 KB table alive for the whole run would change the collector's pace for the others
-- (test_gc_hostile counts finalizer runs)
local function golden() return dofile("tests/golden/reduce_golden.lua") end

local TOL = {float32 = 4e-6, float64 = 1e-12}

local function make(spec, dtype)
  local t
  if #spec.shape == 0 then
    t = mo.zeros({}, {dtype = dtype}):fill(spec.data[1])
  elseif #spec.data == 0 then
    t = mo.zeros(spec.shape, {dtype = dtype})
  else
    t = mo.tensor(spec.data, {dtype = dtype}):reshape(spec.shape)
  end
  return t
end

local function apply_view(t, v)
  if not v then return t end
  if v[1] == "t" then return t:t() end
  if v[1] == "transpose" then return t:transpose(v[2], v[3]) end
  if v[1] == "narrow" then return t:narrow(v[2], v[3], v[4]) end
  if v[1] == "select" then return t:select(v[2], v[3]) end
  error("unknown view " .. tostring(v[1]))
end

local function flat(t)
  local n, out = t:numel(), {}
  if t:dim() == 0 then return {t:item()} end
  local c = t:contiguous():view(n)
  for i = 1, n do out[i] = c:get(i) end
  return out
end

local function same_number(got, want, tol)
  if want ~= want then return got ~= got end
  if want == math.huge or want == -math.huge then return got == want end
  return math.abs(got - want) <= tol * math.max(1, math.abs(want))
end

local function check_tensor(got, want, dtype, tol, what)
  lu.assertTrue(mo.is_tensor(got), what .. ": expected a tensor, got " .. type(got))
  lu.assertEquals(got.dtype, dtype, what .. ": dtype")
  lu.assertEquals(got:shape(), want.shape, what .. ": shape")
  local g = flat(got)
  for i = 1, #want.data do
    if not same_number(g[i], want.data[i], tol) then
      lu.fail(string.format("%s: element %d is %.17g, want %.17g", what, i, g[i], want.data[i]))
    end
  end
end

local function describe(c)
  local a = {}
  for i = 1, c.args.n do a[i] = tostring(c.args[i]) end
  local v = c.view and (" on " .. table.concat(c.view, ",")) or ""
  return string.format("%s:%s(%s)%s", c.x, c.op, table.concat(a, ", "), v)
end

local function run_case(G, c, dtype)
  local x = apply_view(make(G.inputs[c.x], dtype), c.view)
  local want = dtype == "float32" and c.f32 or c.f64
  local what = describe(c) .. " " .. dtype
  local v, i = x[c.op](x, table.unpack(c.args, 1, c.args.n))
  if type(want[1]) == "boolean" then
    lu.assertEquals(v, want[1], what)
    return
  end
  check_tensor(v, want[1], dtype, TOL[dtype], what)
  if want[2] then
    check_tensor(i, want[2], dtype, 0, what .. " indices")
  else
    lu.assertNil(i, what .. ": one result")
  end
end

local TestReduceGolden = {}

function TestReduceGolden.test_float32()
  local G = golden()
  for _, c in ipairs(G.cases) do run_case(G, c, "float32") end
end

function TestReduceGolden.test_float64()
  local G = golden()
  for _, c in ipairs(G.cases) do run_case(G, c, "float64") end
end

function TestReduceGolden.test_golden_covers_every_op()
  local seen = {}
  for _, c in ipairs(golden().cases) do seen[c.op] = true end
  for _, op in ipairs{"sum", "mean", "prod", "std", "var", "max", "min", "argmax", "argmin", "norm",
                      "logsumexp", "softmax", "log_softmax", "cumsum", "sort", "topk", "any", "all"} do
    lu.assertTrue(seen[op], op)
  end
end

local TestReduceApi = {}

function TestReduceApi.test_no_dim_gives_0d_tensors_and_item_numbers()
  local t = mo.tensor{{1, 5, 3}, {4, 2, 6}}
  for _, op in ipairs{"sum", "mean", "prod", "std", "var", "max", "min", "argmax", "argmin", "norm"} do
    local r = t[op](t)
    lu.assertTrue(mo.is_tensor(r), op)
    lu.assertEquals(r:dim(), 0, op)
  end
  lu.assertEquals(t:sum():item(), 21)
  lu.assertEquals(t:argmax():item(), 6)   -- flat row-major, 1-based
  lu.assertEquals(t:t():argmax():item(), 6) -- the transposed order: {1,4},{5,2},{3,6}
  lu.assertEquals(t:any(), true)
  lu.assertEquals(mo.zeros(2, 2):any(), false)
  lu.assertEquals(t:all(), true)
  lu.assertEquals(mo.tensor{1, 0}:all(), false)
  lu.assertEquals(mo.zeros(0):all(), true)
  lu.assertEquals(mo.zeros(0):any(), false)
  lu.assertEquals(mo.tensor{0 / 0}:all(), true) -- NaN is nonzero
end

function TestReduceApi.test_negative_dims_and_keepdim()
  local t = mo.tensor{{1, 5, 3}, {4, 2, 6}}
  lu.assertEquals(t:sum(-1):totable(), t:sum(2):totable())
  lu.assertEquals(t:sum(-2):totable(), t:sum(1):totable())
  lu.assertEquals(t:sum(2, true):shape(), {2, 1})
  lu.assertEquals(t:sum(nil, true):shape(), {1, 1})
  local v, i = t:max(-1, true)
  lu.assertEquals(v:totable(), {{5}, {6}})
  lu.assertEquals(i:totable(), {{2}, {3}})
  lu.assertEquals(t:argmin(1, true):totable(), {{1, 2, 1}})
  lu.assertEquals(t:std(2, true, true):shape(), {2, 1})
  lu.assertEquals(t:norm(1, -1, true):totable(), {{9}, {12}})
end

function TestReduceApi.test_indices_are_exact_in_float64_past_2_24()
  -- a float64 index needs no rounding; float32 ones past 2^24 are refused
  local n = (1 << 24) + 3
  local big = mo.zeros(n, {dtype = "float64"})
  big:set(n, 1)
  lu.assertEquals(big:argmax():item(), n)
  local _, i = big:max(1)
  lu.assertEquals(i:item(), n)
  fails("argmax: float32 cannot hold indices up to 16777219 exactly (use t:double())",
        function() return big:float():argmax() end)
  fails("max: float32 cannot hold indices", function() return big:float():max(1) end)
  lu.assertEquals(big:float():max():item(), 1) -- values only: fine
end

function TestReduceApi.test_sort_is_stable_and_topk_takes_its_head()
  local t = mo.tensor{3, 1, 2, 1, 3, 0 / 0, 2}
  local v, i = t:sort()
  lu.assertEquals(i:totable(), {2, 4, 3, 7, 1, 5, 6})
  lu.assertTrue(v:get(7) ~= v:get(7))
  v, i = t:sort(true)     -- descending: NaN first, equal values in their original order
  lu.assertTrue(v:get(1) ~= v:get(1))
  lu.assertEquals(i:totable(), {6, 1, 5, 3, 7, 2, 4})
  v, i = t:topk(3, 1, false)
  lu.assertEquals(v:totable(), {1, 1, 2})
  lu.assertEquals(i:totable(), {2, 4, 3})   -- PyTorch's CPU topk may give {2, 4, 7}
  v, i = t:topk(0)
  lu.assertEquals(v:shape(), {0})
  lu.assertEquals(i:shape(), {0})
  -- a long lane (merge passes beyond the insertion-sorted runs), both dtypes
  for _, dt in ipairs{"float32", "float64"} do
    local vals, s = {}, 7
    for k = 1, 1000 do s = (s * 1103515245 + 12345) % 2147483648; vals[k] = s % 13 end -- many ties
    local r = mo.tensor(vals, {dtype = dt})
    local sv, si = r:sort()
    for k = 2, 1000 do
      local a, b = sv:get(k - 1), sv:get(k)
      lu.assertTrue(a <= b)
      if a == b then lu.assertTrue(si:get(k - 1) < si:get(k)) end
      lu.assertEquals(r:get(si:get(k)), b)
    end
  end
end

function TestReduceApi.test_non_contiguous_views_match_copies()
  mo.manual_seed(5)
  for _, dt in ipairs{"float32", "float64"} do
    local a = mo.randn(5, 7, 3, {dtype = dt})
    local views = {a:transpose(1, 3), a:narrow(2, 2, 4), a:select(3, 2), a:select(3, 2):t()}
    if a.expand then views[#views + 1] = mo.randn(1, 7, {dtype = dt}):expand(5, 7) end
    for _, v in ipairs(views) do
      local c = v:contiguous()
      for d = 1, v:dim() do
        for _, op in ipairs{"sum", "mean", "prod", "std", "var", "logsumexp", "argmax", "argmin",
                            "softmax", "log_softmax", "cumsum"} do
          local want, got = c[op](c, d), v[op](v, d)
          -- summation order may differ between layouts (blocked vs running): last bits only
          check_tensor(got, {shape = want:shape(), data = flat(want)}, dt, TOL[dt], op .. " dim " .. d)
        end
        local vv, vi = v:max(d)
        local cv, ci = c:max(d)
        lu.assertEquals(vv:totable(), cv:totable())
        lu.assertEquals(vi:totable(), ci:totable())
        local sv, si = v:sort(d, true)
        local csv, csi = c:sort(d, true)
        lu.assertEquals(sv:totable(), csv:totable())
        lu.assertEquals(si:totable(), csi:totable())
      end
      for _, op in ipairs{"max", "min", "argmax", "argmin"} do
        lu.assertEquals(v[op](v):item(), c[op](c):item(), op)
      end
      for _, op in ipairs{"sum", "norm", "prod", "mean"} do
        lu.assertTrue(same_number(v[op](v):item(), c[op](c):item(), TOL[dt]), op)
      end
      lu.assertAlmostEquals(v:std():item(), c:std():item(), 1e-6)
    end
  end
end

function TestReduceApi.test_sums_are_deterministic_and_double_accumulated()
  -- 1e6 values of 0.1 (float32): a float running sum drifts by ~1e-3 relative
  local t = mo.full(1000000, 0.1)
  local want = 1000000 * t:get(1)
  lu.assertTrue(math.abs(t:sum():item() - want) <= 1e-7 * want)
  lu.assertEquals(t:sum():item(), t:sum():item())
  local m = mo.full({1000, 1000}, 0.1)
  lu.assertEquals(m:sum(2):totable(), m:t():sum(1):totable()) -- same lanes, same order
end

function TestReduceApi.test_errors_name_op_argument_and_shape()
  local t = mo.tensor{{1, 5, 3}, {4, 2, 6}}
  fails("bad argument #1 to 'sum' (dimension 3 out of range for a 2-d tensor of shape {2, 3} " ..
        "(expected 1..2 or -2..-1))", function() return t:sum(3) end)
  fails("bad argument #1 to 'mean' (dimension -3 out of range", function() return t:mean(-3) end)
  fails("bad argument #1 to 'softmax' (dimension must be an integer, got no value)",
        function() return t:softmax() end)
  fails("bad argument #1 to 'cumsum' (dimension must be an integer, got 1.5)", function() return t:cumsum(1.5) end)
  fails("bad argument #2 to 'sum' (keepdim must be a boolean, got 1)", function() return t:sum(1, 1) end)
  fails("bad argument #2 to 'std' (unbiased must be a boolean, got string)", function() return t:std(1, "x") end)
  fails("bad argument #1 to 'max' (dimension must be an integer, got a tensor (use mo.maximum",
        function() return t:max(t) end)
  fails("bad argument #1 to 'norm' (p must be a positive number or math.huge, got -1)",
        function() return t:norm(-1) end)
  fails("bad argument #1 to 'norm' (p must be a positive number or math.huge, got nan)",
        function() return t:norm(0 / 0) end)
  fails("bad argument #1 to 'topk' (k 4 out of range for dimension 2 of size 3 (shape {2, 3}))",
        function() return t:topk(4) end)
  fails("bad argument #1 to 'topk' (k -1 out of range", function() return t:topk(-1) end)
  fails("bad argument #2 to 'sort' (descending must be a boolean, got 1)", function() return t:sort(1, 1) end)
  fails("max: the tensor of shape {0, 3} is empty", function() return mo.zeros(0, 3):max() end)
  fails("argmin: dimension 1 of shape {0, 3} has size 0", function() return mo.zeros(0, 3):argmin(1) end)
  fails("bad argument #1 to 'logsumexp' (dimension must be an integer, got no value)",
        function() return t:logsumexp() end)
  fails("bad argument #1 to 'sum' (moonopt.Tensor expected, got number)", function() return t.sum(1) end)
  local f = mo.tensor{1, 2}
  f:__gc()
  fails("tensor has been freed", function() return f:sort() end)
  lu.assertEquals(t:totable(), {{1, 5, 3}, {4, 2, 6}}) -- nothing changed
end

function TestReduceApi.test_zero_d_and_size_one()
  local z = mo.zeros({}):fill(2.5)
  lu.assertEquals(z:sum(1):dim(), 0)
  lu.assertEquals(z:sum(-1, true):dim(), 0)
  local v, i = z:max(1)
  lu.assertEquals(v:item(), 2.5)
  lu.assertEquals(i:item(), 1)
  fails("bad argument #1 to 'sum' (dimension 2 out of range for a 0-d tensor of shape {}",
        function() return z:sum(2) end)
  local one = mo.tensor{{7}}
  lu.assertEquals(one:softmax(2):totable(), {{1}})
  local s = one:std(2):get(1)
  lu.assertTrue(s ~= s) -- NaN, as PyTorch
  lu.assertEquals(one:std(2, false):totable(), {0})
end

return {TestReduceGolden = TestReduceGolden, TestReduceApi = TestReduceApi}
