-- The index family (issue 11): index_select, gather, scatter_add(_), torch.matmul for 1-d,
-- 2-d and 3-d operands, the creation helpers (linspace, eye, *_like, randint) and print(t).
-- Golden vectors: tests/golden/index_golden.lua (PyTorch 1.13, float32 and float64), made by
-- tests/golden/make_index_golden.py. Index tensors are tried in both dtypes against data of
-- both dtypes (the one place dtypes may differ).
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
-- The golden file is read inside each test, never kept: a large table alive while the whole
-- suite runs would change the collector's pacing that test_gc_hostile.lua and
-- test_optim_contract.lua measure.
local GOLDEN = "tests/golden/index_golden.lua"
local G
local CASE_NAMES = {}
for i, c in ipairs(dofile(GOLDEN).cases) do CASE_NAMES[i] = c.name end
local function load_golden() G = dofile(GOLDEN) end
local function drop_golden() G = nil end

local DTYPES = {"float32", "float64"}

-- every value of t in row-major order (0-d: one value)
local function flat(t)
  if t:dim() == 0 then return {t:item()} end
  if t:numel() == 0 then return {} end
  return t:reshape(t:numel()):totable()
end

local function near(got, want, rtol, what)
  lu.assertEquals(#got, #want, what .. ": element count")
  for i = 1, #want do
    local tol = rtol * math.max(1, math.abs(want[i]))
    if math.abs(got[i] - want[i]) > tol then
      lu.fail(string.format("%s: element %d is %.17g, expected %.17g", what, i, got[i], want[i]))
    end
  end
end

-- An input of the golden file as a tensor; "x_t" is the transposed VIEW of x.
local function input(name, dt)
  local base = name:match("^(.*)_t$")
  if base then return mo.tensor(G.inputs[base], {dtype = dt}):t() end
  return mo.tensor(G.inputs[name], {dtype = dt})
end

local function index(name, dt) return mo.tensor(G.index[name], {dtype = dt}) end

-- ---- golden cases ----------------------------------------------------------------------

local TestIndexGolden = {}

local function run_case(c, dt, idt)
  local a = c.args
  if c.op == "index_select" then return input(a[1], dt):index_select(a[2], index(a[3], idt)) end
  if c.op == "gather" then return input(a[1], dt):gather(a[2], index(a[3], idt)) end
  if c.op == "scatter_add" then
    local new = input(a[1], dt):scatter_add(a[2], index(a[3], idt), input(a[4], dt))
    local self = input(a[1], dt)
    lu.assertIs(self:scatter_add_(a[2], index(a[3], idt), input(a[4], dt)), self)
    lu.assertEquals(flat(self), flat(new), c.name .. ": scatter_add_ vs scatter_add")
    return new
  end
  return mo.matmul(input(a[1], dt), input(a[2], dt))
end

TestIndexGolden.setUp, TestIndexGolden.tearDown = load_golden, drop_golden

for i, name in ipairs(CASE_NAMES) do
  TestIndexGolden["test_" .. name] = function()
    local c = G.cases[i]
    for _, dt in ipairs(DTYPES) do
      for _, idt in ipairs(DTYPES) do
        local what = string.format("%s %s (index %s)", c.name, dt, idt)
        local r = run_case(c, dt, idt)
        lu.assertEquals(r.dtype, dt, what)
        lu.assertEquals(r:shape(), c.shape, what .. ": shape")
        -- index ops move values: exact; matmul sums: float32 rounding order may differ
        local exact = c.op ~= "matmul"
        local want = dt == "float64" and c.f64 or c.f32
        if type(want) == "number" then want = {want} end
        near(flat(r), want, exact and 0 or (dt == "float64" and 1e-13 or 2e-6), what)
      end
    end
  end
end

-- ---- index ops: semantics, corner cases, errors ------------------------------------------

local TestIndexOps = {}

function TestIndexOps.test_index_select_order_repeats_and_0d_index()
  local t = mo.tensor{{1, 2, 3}, {4, 5, 6}}
  lu.assertEquals(t:index_select(2, mo.tensor{3, 3, 1}):totable(), {{3, 3, 1}, {6, 6, 4}})
  lu.assertEquals(t:index_select(1, mo.tensor(2)):totable(), {{4, 5, 6}})   -- 0-d index
  local e = t:index_select(2, mo.zeros(0))
  lu.assertEquals(e:shape(), {2, 0})
  -- a strided (narrowed, transposed) source and a strided index
  local big = mo.arange(20):view(4, 5)
  local v = big:narrow(2, 2, 3):t()                 -- {3, 4} view, non-contiguous
  local idx = mo.tensor{{4, 1}, {2, 9}}:t():select(2, 1)   -- {4, 1}, stride 2
  lu.assertEquals(v:index_select(2, idx):totable(), {{17, 2}, {18, 3}, {19, 4}})
end

function TestIndexOps.test_gather_3d_and_strided_index()
  local y = mo.arange(24):view(2, 3, 4)
  local idx = mo.tensor{{{3}, {1}}, {{2}, {4}}}      -- {2, 2, 1}, dim 3
  lu.assertEquals(y:gather(3, idx):totable(), {{{3}, {5}}, {{14}, {20}}})
  local it = mo.tensor({{1, 2, 3}, {3, 2, 1}}, {dtype = "float64"}):t()   -- {3, 2} view
  lu.assertEquals(mo.tensor{{1, 2}, {3, 4}, {5, 6}}:gather(1, it):totable(), {{1, 6}, {3, 4}, {5, 2}})
end

function TestIndexOps.test_scatter_add_accumulates_repeats_in_both_dtypes()
  for _, dt in ipairs(DTYPES) do
    local t = mo.zeros({2, 3}, {dtype = dt})
    t:scatter_add_(2, mo.tensor{{1, 1, 1}, {3, 2, 3}}, mo.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = dt}))
    lu.assertEquals(t:totable(), {{6, 0, 0}, {0, 5, 10}}, dt)
  end
  -- 1-d counts (a histogram): index larger than self along dim
  local h = mo.zeros(3):scatter_add_(1, mo.tensor{1, 3, 3, 2, 3}, mo.ones(5))
  lu.assertEquals(h:totable(), {1, 1, 3})
end

function TestIndexOps.test_scatter_add_src_sharing_self()
  local t = mo.tensor{{1, 2}, {3, 4}}
  local want = t:clone():scatter_add_(1, mo.tensor{{2, 2}, {1, 1}}, t:clone())
  t:scatter_add_(1, mo.tensor{{2, 2}, {1, 1}}, t)
  lu.assertEquals(t:totable(), want:totable())
  lu.assertEquals(t:totable(), {{4, 6}, {4, 6}})
  -- into a transposed (non-contiguous) self
  local u = mo.zeros(3, 2)
  u:t():scatter_add_(2, mo.tensor{{3}, {1}}, mo.tensor{{7}, {8}})
  lu.assertEquals(u:totable(), {{0, 8}, {0, 0}, {7, 0}})
end

function TestIndexOps.test_bad_entries_are_named_and_nothing_is_written()
  local t = mo.tensor{{1, 2, 3}, {4, 5, 6}}
  fails("bad argument #3 to 'index_select' (index[3] = 4.0 is out of range 1..3 (dimension 2 has size 3))",
    t.index_select, t, 2, mo.tensor{1, 2, 4})
  fails("bad argument #3 to 'index_select' (index[1] = 0.0 is out of range 1..2 (dimension 1 has size 2))",
    t.index_select, t, 1, mo.tensor{0})
  fails("bad argument #3 to 'index_select' (index[2] = 1.5 is not an integer)",
    t.index_select, t, 1, mo.tensor({1, 1.5}, {dtype = "float64"}))
  fails("(index[1] = nan is not an integer)", t.index_select, t, 1, mo.tensor{0 / 0})
  fails("(index[1] = inf is not an integer)", t.index_select, t, 1, mo.tensor{math.huge})
  fails("bad argument #3 to 'gather' (index[2][1] = -1.0 is out of range 1..3 (dimension 2 has size 3))",
    t.gather, t, 2, mo.tensor{{1}, {-1}})
  -- scatter_add_: the bad entry is the LAST one; the valid ones before it must not be added
  local s = mo.ones(2, 3)
  fails("bad argument #3 to 'scatter_add_' (index[2][3] = 3.0 is out of range 1..2 (dimension 1 has size 2))",
    t.scatter_add_, t, 1, mo.tensor{{1, 2, 1}, {2, 1, 3}}, s)
  fails("bad argument #3 to 'scatter_add_' (index[1][2] = 1.25 is not an integer)",
    t.scatter_add_, t, 2, mo.tensor({{1, 1.25}}, {dtype = "float64"}), s)
  lu.assertEquals(t:totable(), {{1, 2, 3}, {4, 5, 6}})
  -- 2^24 + 1 is not a float32; a float64 index holds it exactly and it is out of range
  fails("index[1] = 16777217.0 is out of range", t.index_select, t, 1,
    mo.tensor({2 ^ 24 + 1}, {dtype = "float64"}))
end

function TestIndexOps.test_shape_errors_name_both_shapes()
  local t = mo.tensor{{1, 2, 3}, {4, 5, 6}}
  fails("bad argument #2 to 'index_select' (dimension 3 out of range for a 2-d tensor of shape {2, 3})",
    t.index_select, t, 3, mo.tensor{1})
  fails("bad argument #3 to 'index_select' (index must be 1-d (or 0-d), got shape {1, 1})",
    t.index_select, t, 1, mo.tensor{{1}})
  fails("bad argument #3 to 'index_select' (moonopt.Tensor expected, got table)",
    t.index_select, t, 1, {1})
  fails("gather: index {2} and input {2, 3}: index must have as many dimensions", t.gather, t, 1, mo.tensor{1, 1})
  fails("gather: index {3, 1} and input {2, 3}: index is larger in dimension 1", t.gather, t, 2,
    mo.tensor{{1}, {1}, {1}})
  fails("scatter_add_: index {1, 3} and src {1, 2}: index is larger than src in dimension 2",
    t.scatter_add_, t, 1, mo.tensor{{1, 1, 1}}, mo.ones(1, 2))
  fails("scatter_add_: index {1, 4} and self {2, 3}: index is larger in dimension 2",
    t.scatter_add_, t, 1, mo.tensor{{1, 1, 1, 1}}, mo.ones(1, 4))
  fails("scatter_add_: dtype mismatch: float32 vs float64", t.scatter_add_, t, 1, mo.tensor{{1}},
    mo.ones({1, 1}, {dtype = "float64"}))
  fails("scatter_add: index {1} and src {1, 1}: src must have as many dimensions",
    mo.zeros(3).scatter_add, mo.zeros(3), 1, mo.tensor{1}, mo.ones(1, 1))
  lu.assertEquals(t:totable(), {{1, 2, 3}, {4, 5, 6}})
end

function TestIndexOps.test_scatter_add_refuses_expanded_self()
  if mo.Tensor.expand == nil then return end    -- the shape family brings expand
  local t = mo.zeros(1, 3):expand{2, 3}
  fails("scatter_add_: self is an expanded view", t.scatter_add_, t, 1, mo.tensor{{1, 1, 1}}, mo.ones(1, 3))
end

-- ---- matmul ----------------------------------------------------------------------------

local TestMatmulND = {}

function TestMatmulND.test_shapes_as_torch()
  local cases = {
    {{3}, {3}, {}}, {{3}, {3, 4}, {4}}, {{2, 3}, {3}, {2}}, {{2, 3}, {3, 4}, {2, 4}},
    {{5, 2, 3}, {5, 3, 4}, {5, 2, 4}}, {{5, 2, 3}, {3, 4}, {5, 2, 4}}, {{2, 3}, {5, 3, 4}, {5, 2, 4}},
    {{1, 2, 3}, {5, 3, 4}, {5, 2, 4}}, {{5, 2, 3}, {1, 3, 4}, {5, 2, 4}}, {{5, 2, 3}, {3}, {5, 2}},
    {{3}, {5, 3, 4}, {5, 4}}, {{0, 2, 3}, {3, 4}, {0, 2, 4}}, {{2, 0}, {0, 4}, {2, 4}},
  }
  for _, c in ipairs(cases) do
    for _, dt in ipairs(DTYPES) do
      local r = mo.matmul(mo.ones(c[1], {dtype = dt}), mo.ones(c[2], {dtype = dt}))
      lu.assertEquals(r:shape(), c[3])
      lu.assertEquals(r.dtype, dt)
      local k = c[2][#c[2] == 1 and 1 or #c[2] - 1]
      for _, v in ipairs(flat(r)) do lu.assertEquals(v, k) end
    end
  end
end

function TestMatmulND.test_batched_strided_and_method()
  -- a transposed batch (non-contiguous) against per-entry 2-d products
  local a = mo.arange(24):view(2, 4, 3)
  local b = mo.arange(8):view(2, 4)
  local at = a:transpose(2, 3)                       -- {2, 3, 4} view
  local r = at:matmul(b:t())
  for i = 1, 2 do
    lu.assertEquals(r:select(1, i):totable(), mo.matmul(at:select(1, i):contiguous(), b:t()):totable())
  end
  -- batched with float64 precision (dgemm): 1 + 2^-40 survives
  local x = mo.full({2, 1, 1}, 1 + 2 ^ -40, {dtype = "float64"})
  lu.assertEquals(mo.matmul(x, mo.ones({1, 1}, {dtype = "float64"})):get(2, 1, 1), 1 + 2 ^ -40)
end

function TestMatmulND.test_errors()
  local v3 = mo.ones(3)
  fails("matmul: shapes {3} and {4} do not agree (inner sizes differ)", mo.matmul, v3, mo.ones(4))
  fails("matmul: shapes {2, 2, 3} and {3, 3, 4} do not agree (batch sizes differ and neither is 1)",
    mo.matmul, mo.ones(2, 2, 3), mo.ones(3, 3, 4))
  fails("matmul: shapes {2, 2, 3} and {2, 4, 4} do not agree (inner sizes differ)",
    mo.matmul, mo.ones(2, 2, 3), mo.ones(2, 4, 4))
  fails("bad argument #3 to 'matmul' (options need two 2-d operands, got {3} and {3, 2})",
    mo.matmul, v3, mo.ones(3, 2), {trans_a = true})
  fails("matmul: dtype mismatch: float32 vs float64", mo.matmul, v3, mo.ones({3}, {dtype = "float64"}))
  fails("bad argument #1 to 'matmul' (1-d, 2-d or 3-d tensor expected, got 0-d)", mo.matmul, mo.tensor(1), v3)
end

-- ---- creation helpers -------------------------------------------------------------------

local TestCreateHelpers = {}
TestCreateHelpers.setUp, TestCreateHelpers.tearDown = load_golden, drop_golden

function TestCreateHelpers.test_linspace_golden()
  for _, c in ipairs(G.linspace) do
    local a, b, n = table.unpack(c.args)
    near(flat(mo.linspace(a, b, n)), c.f32, 1.2e-7, "linspace f32")
    near(flat(mo.linspace(a, b, n, {dtype = "float64"})), c.f64, 1e-15, "linspace f64")
    lu.assertEquals(mo.linspace(a, b, n, {dtype = "float64"}):get(n), b)   -- the end is exact
  end
  lu.assertEquals(mo.linspace(0, 1, 0):shape(), {0})
  -- one point is the start, as torch.linspace(2, 5, 1) = [2.] (not the stop)
  lu.assertEquals(mo.linspace(2, 5, 1):totable(), {2})
  lu.assertEquals(mo.linspace(2, 5, 1, {dtype = "float64"}):totable(), {2})
  fails("bad argument #3 to 'linspace' (n must be an integer in 0..", mo.linspace, 0, 1, 2.5)
  fails("bad argument #2 to 'linspace' (stop must be finite, got inf)", mo.linspace, 0, math.huge, 3)
  fails("bad argument #4 to 'linspace' (options table expected, got number)", mo.linspace, 0, 1, 3, 4)
end

function TestCreateHelpers.test_eye()
  for _, c in ipairs(G.eye) do
    local r = mo.eye(table.unpack(c.args))
    lu.assertEquals(r:totable(), c.f64)
    lu.assertEquals(r.dtype, "float32")
  end
  lu.assertEquals(mo.eye(2, {dtype = "float64"}).dtype, "float64")
  lu.assertEquals(mo.eye(2, 3, {dtype = "float64"}):shape(), {2, 3})
  fails("bad argument #1 to 'eye' (n must be an integer in 0..", mo.eye, -1)
end

function TestCreateHelpers.test_like_keeps_shape_and_dtype()
  local t = mo.ones({2, 3}, {dtype = "float64"}):t()         -- a non-contiguous float64 view
  local z = mo.zeros_like(t)
  lu.assertEquals(z:shape(), {3, 2})
  lu.assertEquals(z.dtype, "float64")
  lu.assertTrue(z:is_contiguous())
  lu.assertEquals(z:sum():item(), 0)
  lu.assertEquals(mo.ones_like(t):sum():item(), 6)
  lu.assertEquals(mo.ones_like(t, {dtype = "float32"}).dtype, "float32")
  mo.manual_seed(3)
  local r = mo.randn_like(t)
  mo.manual_seed(3)
  lu.assertEquals(r:totable(), mo.randn({3, 2}, {dtype = "float64"}):totable())
  local u = mo.rand_like(mo.zeros(1000))
  lu.assertTrue(u:min():item() >= 0 and u:max():item() < 1)
  lu.assertEquals(u.dtype, "float32")
  fails("bad argument #1 to 'zeros_like' (moonopt.Tensor expected, got table)", mo.zeros_like, {2, 3})
  fails("bad argument #2 to 'ones_like' (unknown option dtyp", mo.ones_like, t, {dtyp = "float64"})
end

function TestCreateHelpers.test_randint_inclusive_range()
  mo.manual_seed(5)
  local r = mo.randint(-1, 1, {3000})
  local seen = {}
  for _, v in ipairs(r:totable()) do
    lu.assertEquals(math.floor(v), v)
    lu.assertTrue(v >= -1 and v <= 1, "value " .. v)
    seen[v] = (seen[v] or 0) + 1
  end
  lu.assertNotNil(seen[-1]); lu.assertNotNil(seen[0]); lu.assertNotNil(seen[1])   -- both ends
  local h = mo.randint(4, {2, 500}, {dtype = "float64"})       -- 1..4: indices of a size-4 dim
  lu.assertEquals(h.dtype, "float64")
  lu.assertEquals(h:shape(), {2, 500})
  lu.assertEquals(h:min():item(), 1); lu.assertEquals(h:max():item(), 4)
  mo.zeros(4):index_select(1, h:select(1, 1))                   -- valid indices, no error
  lu.assertEquals(mo.randint(7, 7, {3}):totable(), {7, 7, 7})
  mo.manual_seed(9); local a = mo.randint(1, 100, {5}):totable()
  mo.manual_seed(9); lu.assertEquals(mo.randint(1, 100, {5}):totable(), a)
  fails("bad argument #2 to 'randint' (hi 0 is less than lo 1)", mo.randint, 1, 0, {2})
  fails("bad argument #1 to 'randint' (hi must be an integer, got 2.5)", mo.randint, 2.5, {2})
  fails("beyond which float32 does not hold every integer", mo.randint, 0, 2 ^ 25, {2})
  mo.randint(0, 2 ^ 25, {2}, {dtype = "float64"})               -- fine in float64
  fails("bad argument #3 to 'randint' (shape table expected, got number)", mo.randint, 1, 2, 3)
end

-- ---- print -------------------------------------------------------------------------------

local TestPrint = {}

local function lines(...) return table.concat({...}, "\n") end

function TestPrint.test_matrix_vector_scalar_empty()
  lu.assertEquals(tostring(mo.tensor{{1.5, -2, 3}, {4, 5, 6.25}}), lines(
    "   1.5000  -2.0000   3.0000",
    "   4.0000   5.0000   6.2500",
    "[moonopt.Tensor float32 of size {2, 3}]"))
  lu.assertEquals(tostring(mo.tensor({1, 20, -300}, {dtype = "float64"})), lines(
    "     1    20  -300",
    "[moonopt.Tensor float64 of size {3}]"))
  lu.assertEquals(tostring(mo.tensor(0.125)), lines("  0.1250", "[moonopt.Tensor float32 of size {}]"))
  lu.assertEquals(tostring(mo.zeros(2, 0, 3)), "[moonopt.Tensor float32 of size {2, 0, 3}]")
  lu.assertEquals(tostring(mo.tensor{1e-5, 1, 0 / 0, -math.huge}), lines(
    "  1.0000e-05  1.0000e+00         nan        -inf",
    "[moonopt.Tensor float32 of size {4}]"))
  -- a non-contiguous view prints its logical rows
  lu.assertEquals(tostring(mo.tensor{{1, 2}, {3, 4}}:t()), lines("  1  3", "  2  4",
    "[moonopt.Tensor float32 of size {2, 2}]"))
end

function TestPrint.test_3d_slices_are_labelled_1_based()
  lu.assertEquals(tostring(mo.arange(8):view(2, 2, 2)), lines(
    "(1,.,.) =", "  1  2", "  3  4", "",
    "(2,.,.) =", "  5  6", "  7  8", "",
    "[moonopt.Tensor float32 of size {2, 2, 2}]"))
  local s = tostring(mo.zeros(2, 3, 1, 1))
  lu.assertStrContains(s, "(2,3,.,.) =\n  0\n")
end

function TestPrint.test_long_tensors_are_elided()
  lu.assertEquals(tostring(mo.arange(1001)), lines(
    "     1     2     3  ...   999  1000  1001",
    "[moonopt.Tensor float32 of size {1001}]"))
  lu.assertEquals(tostring(mo.arange(1000)):match("[^\n]*$"), "[moonopt.Tensor float32 of size {1000}]")
  lu.assertNotStrContains(tostring(mo.arange(1000)), "Columns")      -- 1-d: continuation lines
  lu.assertStrContains(tostring(mo.arange(1000)), "  1000\n")   -- 1000 elements: all shown
  local m = tostring(mo.arange(2000):view(100, 20))
  lu.assertStrContains(m, lines(
    "     1     2     3  ...    18    19    20",
    "    21    22    23  ...    38    39    40",
    "    41    42    43  ...    58    59    60",
    "  ...",
    "  1941  1942  1943  ...  1958  1959  1960"))
  local b = tostring(mo.arange(3000):view(10, 3, 100))
  lu.assertStrContains(b, "(3,.,.) =")
  lu.assertStrContains(b, "...\n\n(8,.,.) =")
  lu.assertNotStrContains(b, "(4,.,.)")
end

function TestPrint.test_wide_rows_split_into_column_blocks()
  local s = tostring(mo.arange(30):view(1, 30) + 0.5)
  lu.assertStrContains(s, "Columns 1 to 8\n   1.5000")
  lu.assertStrContains(s, "\n\nColumns 25 to 30\n  25.5000")
end

function TestPrint.test_freed()
  local t = mo.zeros(2)
  t:__gc()
  lu.assertEquals(tostring(t), "moonopt.Tensor (freed)")
end

return {
  TestIndexGolden = TestIndexGolden, TestIndexOps = TestIndexOps, TestMatmulND = TestMatmulND,
  TestCreateHelpers = TestCreateHelpers, TestPrint = TestPrint,
}
