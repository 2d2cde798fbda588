-- tests/lua/test_shape.lua - the shape family (lua/binding/shape.c, core/shape.c): every op
-- against PyTorch 1.13 golden vectors (tests/golden/make_shape_golden.py), on contiguous,
-- transposed, narrowed and expanded inputs, size-0 and size-1 dims and 0-d tensors; views
-- share storage (writes through them are visible); errors name the op, argument and shape.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"

-- The golden table is read by each test and not kept: tests/lua/test_gc_hostile.lua tunes
-- the collector to the live heap of the whole suite, which must stay small.
local GOLDEN = "tests/golden/shape_golden.lua"
local function golden() return dofile(GOLDEN) end

-- input k of a case: 1..numel (+ 100 (k - 1)) in row-major order, then the prep steps
local function input(shape, k, steps)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local base = n > 0 and (mo.arange(n) + 100 * (k - 1)):view(shape) or mo.zeros(shape)
  local x = base
  for _, st in ipairs(steps) do
    if st[1] == "transpose" then x = x:transpose(st[2], st[3])
    elseif st[1] == "narrow" then x = x:narrow(st[2], st[3], st[4])
    elseif st[1] == "expand" then x = x:expand(st[2])
    else error("unknown prep " .. st[1]) end
  end
  return x, base
end

local function flat(t)
  local out = {}
  if t:numel() == 0 then return out end
  local c = t:reshape(t:numel())
  for i = 1, t:numel() do out[i] = c:get(i) end
  return out
end

local function check(case, got, want, what)
  lu.assertTrue(mo.is_tensor(got), case.name .. what .. ": not a tensor")
  lu.assertEquals(got:shape(), want.shape, case.name .. what .. ": shape")
  lu.assertEquals(flat(got), want.values, case.name .. what .. ": values")
end

local function run(case, xs)
  local x, a = xs[1], case.args
  local op = case.op
  if op == "cat" or op == "stack" then return mo[op](xs, table.unpack(a)) end
  if op == "index" then return x[a[1]] end
  if op == "setindex" then
    local v = a[2]
    if type(v) == "table" then v = input(v.shape, 6, {}) end   -- base(shape, 5) in the script
    x[a[1]] = v
    return x
  end
  if op == "permute" or op == "expand" or op == "view" or op == "reshape" then
    -- both spellings: varargs and one table
    local r1 = x[op](x, table.unpack(a))
    local r2 = x[op](x, a)
    lu.assertEquals(r1:shape(), r2:shape())
    return r1
  end
  return x[op](x, table.unpack(a))
end

local TestShapeGolden = {}
for index, name in ipairs((function()
  local names = {}
  for i, c in ipairs(golden()) do names[i] = c.name end
  return names
end)()) do
  TestShapeGolden["test_" .. name] = function()
    local case = golden()[index]
    local xs, bases = {}, {}
    for k, s in ipairs(case.shapes) do xs[k], bases[k] = input(s, k, case.prep) end
    local res = run(case, xs)
    if case.parts then
      lu.assertEquals(#res, #case.parts, case.name .. ": number of parts")
      for i, p in ipairs(case.parts) do
        check(case, res[i], p, " part " .. i)
        lu.assertTrue(res[i]:same_storage(bases[1]), case.name .. ": part " .. i .. " is a view")
      end
      return
    end
    check(case, res, case.out, "")
    lu.assertEquals(res:same_storage(bases[1]), case.view, case.name .. ": view or copy")
    if case.view and res:numel() > 0 and case.op ~= "setindex" then
      -- a write through the view is visible in the base, and the other way round
      local before = flat(bases[1])
      res:fill(-7)
      local after = flat(bases[1])
      local changed = 0
      for i = 1, #after do if after[i] ~= before[i] then changed = changed + 1 end end
      lu.assertTrue(changed > 0, case.name .. ": a write through the view reached the base")
      for _, v in ipairs(flat(res)) do lu.assertEquals(v, -7) end
    end
  end
end

local function m23() return mo.tensor{{1, 2, 3}, {4, 5, 6}} end

local TestShape = {}

function TestShape.test_views_never_copy()
  local a = mo.arange(24):view(2, 3, 4)
  for _, v in ipairs{a:permute(3, 1, 2), a:squeeze(), a:unsqueeze(2), a:flatten(),
                     a:transpose(1, 3), a:select(2, 2), a[2], a[{{}, {2, 3}, -1}], a:expand(5, 2, 3, 4),
                     a:view(6, 4), a:reshape(-1), a:narrow(3, 2, 2):flatten(1, 2)} do
    lu.assertTrue(v:same_storage(a))
  end
  for _, part in ipairs(a:chunk(2, 3)) do lu.assertTrue(part:same_storage(a)) end
  for _, part in ipairs(a:split(1, 2)) do lu.assertTrue(part:same_storage(a)) end
  lu.assertFalse(mo.cat({a, a}):same_storage(a))
  lu.assertFalse(mo.stack({a, a}):same_storage(a))
  lu.assertIs(a:contiguous(), a)
end

function TestShape.test_expand_strides_and_memory()
  local e = mo.tensor{1, 2, 3}:view(3, 1):expand(3, 1000)
  lu.assertEquals(e:stride(), {1, 0})
  lu.assertEquals(e:sum():item(), 6000)
  lu.assertEquals(mo.tensor(2):expand(2, 2):stride(), {0, 0})
end

function TestShape.test_index_reads_and_writes()
  local a = m23()
  lu.assertEquals(a[2]:totable(), {4, 5, 6})
  lu.assertEquals(a[2][3]:dim(), 0)
  lu.assertEquals(a[2][3]:item(), 6)
  lu.assertEquals(a[-1][-1]:item(), 6)
  a[1][2] = 20
  lu.assertEquals(a:get(1, 2), 20)
  a[2] = a[1]                             -- a row from the same storage
  lu.assertEquals(a:totable(), {{1, 20, 3}, {1, 20, 3}})
  a[{{}, 1}] = mo.tensor{8, 9}
  lu.assertEquals(a:totable(), {{8, 20, 3}, {9, 20, 3}})
  a[{2, {2, 3}}] = 0
  lu.assertEquals(a:totable(), {{8, 20, 3}, {9, 0, 0}})
  local t = a:t()
  t[1] = -1                                -- a column of a, through the transpose
  lu.assertEquals(a:totable(), {{-1, 20, 3}, {-1, 0, 0}})
  lu.assertNil(a.nosuchmethod)
  lu.assertEquals(a[{}]:shape(), {2, 3})   -- an empty slicing is the whole tensor
end

-- A number written through t[k] = v keeps a float64 tensor's precision (it was once rounded
-- through float32 on the way: 0.1 became 0.10000000149011612).
function TestShape.test_number_write_keeps_float64()
  local t = mo.zeros({2, 2}, {dtype = "float64"})
  t[1] = 0.1
  t[{2, 2}] = 1 / 3
  lu.assertEquals(t:get(1, 1), 0.1)
  lu.assertEquals(t:get(1, 2), 0.1)
  lu.assertEquals(t:get(2, 2), 1 / 3)
  local f = mo.zeros(2)
  f[1] = 0.1                                -- float32 rounds to nearest, as ever
  lu.assertEquals(f:get(1), mo.tensor{0.1}:get(1))
end

function TestShape.test_errors()
  local a = m23()
  fails("permute: dims {1, 1} repeat dimension 1 (shape {2, 3})", a.permute, a, 1, 1)
  fails("permute: dims {1} name 1 dimensions for a 2-d tensor (shape {2, 3})", a.permute, a, 1)
  fails("permute: dims {1, 3}: dimension 3 out of range for shape {2, 3}", a.permute, a, {1, 3})
  fails("permute: dims #2 must be an integer, got 1.5", a.permute, a, 1, 1.5)
  fails("bad argument #1 to 'squeeze' (dimension 3 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:squeeze(3) end)
  fails("bad argument #1 to 'unsqueeze' (dimension 4 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:unsqueeze(4) end)
  fails("bad argument #1 to 'unsqueeze' (dimension 0 out of range", function() return a:unsqueeze(0) end)
  fails("unsqueeze: a tensor of shape {1, 1, 1, 1, 1, 1, 1, 1} already has 8 dimensions",
        function() return mo.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end)
  fails("flatten: start dimension 2 comes after stop dimension 1 (shape {2, 3})",
        function() return a:flatten(2, 1) end)
  fails("expand: size #2 of {2, 4} is 4, but dimension 2 of shape {2, 3} is 3, not 1",
        function() return a:expand(2, 4) end)
  fails("expand: sizes {3} have fewer dimensions than the tensor's shape {2, 3}",
        function() return a:expand(3) end)
  fails("expand: size #1 of {-1, 2, 3} must be a non-negative integer (a new leading dimension",
        function() return a:expand(-1, 2, 3) end)
  fails("view: shape {6} cannot be a view of shape {3, 2} with strides {1, 3}",
        function() return a:t():view(6) end)
  fails("view: shape {4} does not match the tensor's 6 elements (shape {2, 3})",
        function() return a:view(4) end)
  fails("bad argument #2 to 'select' (index 0 out of range for dimension 2 of size 3 (shape {2, 3}))",
        function() return a:select(2, 0) end)
  fails("bad argument #2 to 'select' (index -4 out of range", function() return a:select(2, -4) end)
  fails("t: expects a tensor of at most 2 dimensions, got 3-d (shape {1, 2, 3})",
        function() return mo.zeros(1, 2, 3):t() end)
  fails("bad argument #1 to 'chunk' (chunks must be at least 1, got 0)", function() return a:chunk(0) end)
  fails("bad argument #1 to 'split' (size must be at least 1, got 0 (shape {2, 3}))",
        function() return a:split(0) end)
  fails("split: sizes add up to 2, but dimension 2 of shape {2, 3} is 3",
        function() return a:split({1, 1}, 2) end)
  fails("split: size #2 must be a non-negative integer, got -1", function() return a:split({4, -1}, 2) end)
  -- cat and stack
  fails("cat: tensors #1 {2, 3} and #2 {3, 2} differ in dimension 2 (cat along dimension 1)",
        mo.cat, {a, a:t()})
  fails("cat: tensors #1 {2, 3} and #2 {6} differ in rank", mo.cat, {a, a:view(6)})
  fails("cat: tensor #1 is 0-d (shape {}); cat needs at least one dimension (use stack)",
        mo.cat, {mo.tensor(1), mo.tensor(2)})
  fails("bad argument #1 to 'cat' (the list of tensors is empty)", mo.cat, {})
  fails("bad argument #1 to 'cat' (table of tensors expected, got moonopt.Tensor)", mo.cat, a)
  fails("cat: element #2 of the list is a number, not a tensor", mo.cat, {a, 3})
  fails("bad argument #2 to 'cat' (dimension 3 out of range for a 2-d tensor of shape {2, 3})",
        mo.cat, {a, a}, 3)
  fails("stack: tensors #1 {2, 3} and #2 {3, 2} differ in shape", mo.stack, {a, a:t()})
  fails("bad argument #2 to 'stack' (dimension 4 out of range", mo.stack, {a, a}, 4)
  -- dtypes never mix implicitly (converting is copy_'s, to's, double's and float's job)
  local a64 = a:double()
  fails("cat: dtype mismatch: element #1 is float32, element #3 is float64 (convert one with "
        .. ":double() or :float())", mo.cat, {a, a, a64})
  fails("stack: dtype mismatch: element #1 is float64, element #2 is float32", mo.stack, {a64, a})
  lu.assertEquals(mo.cat({a64, a64}).dtype, "float64")
  lu.assertEquals(mo.stack({a64, a64}, 2).dtype, "float64")
  -- indexing
  fails("__index: index #1 = 3 out of range for dimension 1 of size 2 (shape {2, 3})",
        function() return a[3] end)
  fails("__index: index #1 = 0 out of range", function() return a[0] end)
  fails("__index: index #1 must be an integer, got 1.5", function() return a[1.5] end)
  fails("__index: a 0-d tensor cannot be indexed", function() return mo.tensor(1)[1] end)
  fails("__index: 3 indices for a 2-d tensor (shape {2, 3})", function() return a[{1, 1, 1}] end)
  fails("__index: range {2, 4} of index #2 out of range for dimension 2 of size 3 (shape {2, 3})",
        function() return a[{{}, {2, 4}}] end)
  fails("__index: range {3, 1} of index #2 out of range", function() return a[{{}, {3, 1}}] end)
  fails("__index: range of index #1 has 3 entries", function() return a[{{1, 2, 3}}] end)
  fails("__index: index #1 must be an integer or a range table, got string", function() return a[{"x"}] end)
  fails("__newindex: a value of shape {4} does not broadcast to the target's shape {3}",
        function() a[1] = mo.zeros(4) end)
  fails("__newindex: a value of shape {2, 3} does not broadcast to the target's shape {3}",
        function() a[1] = mo.zeros(2, 3) end)
  fails("__newindex: the value must be a number or a tensor, got string", function() a[1] = "x" end)
  fails("__newindex: index #1 = 5 out of range", function() a[5] = 1 end)
  fails("__newindex: dtype mismatch: float32 vs float64 (convert one with :double() or :float())",
        function() a[1] = mo.tensor({7, 8, 9}, {dtype = "float64"}) end)
  lu.assertEquals(a:totable(), {{1, 2, 3}, {4, 5, 6}})   -- nothing half-changed
  -- freed tensors
  local f = m23()
  local row = f[1]
  f:__gc()
  fails("tensor has been freed", function() return row[1] end)
  fails("tensor has been freed", function() return f:permute(2, 1) end)
  fails("tensor has been freed", mo.cat, {m23(), row})
end

return {TestShapeGolden = TestShapeGolden, TestShape = TestShape}
