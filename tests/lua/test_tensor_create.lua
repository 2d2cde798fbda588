-- Tensor constructors, element access, totable/tostring, the RNG and the module table.
local lu = require "luaunit"
local mo = require "moonopt"

local function assert_shape(t, shape)
  lu.assertEquals(t:shape(), shape)
  lu.assertEquals(t:dim(), #shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  lu.assertEquals(t:numel(), n)
end

local TestTensorCreate = {}

function TestTensorCreate.test_module_fields()
  lu.assertEquals(mo._VERSION, "moonopt 0.1.0")
  lu.assertTrue(mo.blas_backend == "cblas" or mo.blas_backend == "portable")
  -- OpenBLAS's kernel set (e.g. "Haswell"): a non-empty name; "portable" exactly without CBLAS
  lu.assertEquals(type(mo.blas_kernel), "string")
  lu.assertTrue(#mo.blas_kernel > 0)
  lu.assertEquals(mo.blas_kernel == "portable", mo.blas_backend == "portable")
  lu.assertEquals(type(mo.clock), "function")
  -- mo.Tensor is the methods table every tensor reads
  lu.assertEquals(type(mo.Tensor.add_), "function")
  lu.assertIs(mo.zeros(1).add_, mo.Tensor.add_)
  mo.Tensor.zz_probe = function(t) return t:numel() * 10 end
  lu.assertEquals(mo.zeros(2, 2):zz_probe(), 40)
  mo.Tensor.zz_probe = nil
  lu.assertTrue(mo.is_tensor(mo.zeros(1)))
  lu.assertFalse(mo.is_tensor({}))
  lu.assertFalse(mo.is_tensor(nil))
  lu.assertFalse(mo.is_tensor(io.stdout))
end

function TestTensorCreate.test_zeros_ones_full_empty()
  local z = mo.zeros(2, 3)
  assert_shape(z, {2, 3})
  lu.assertEquals(z:totable(), {{0, 0, 0}, {0, 0, 0}})
  assert_shape(mo.zeros{2, 3}, {2, 3})
  lu.assertEquals(mo.ones{3}:totable(), {1, 1, 1})
  lu.assertEquals(mo.ones(2, 1):totable(), {{1}, {1}})
  lu.assertEquals(mo.full({2, 2}, 0.5):totable(), {{0.5, 0.5}, {0.5, 0.5}})
  lu.assertEquals(mo.full(3, -2):totable(), {-2, -2, -2})
  assert_shape(mo.empty(4, 5, 6), {4, 5, 6})
  -- sizes given as integral floats are fine
  assert_shape(mo.zeros(2.0, 3.0), {2, 3})
end

function TestTensorCreate.test_zero_sizes_and_0d()
  local e = mo.zeros(0)
  assert_shape(e, {0})
  lu.assertEquals(e:totable(), {})
  assert_shape(mo.zeros(3, 0), {3, 0})
  lu.assertEquals(mo.zeros(2, 0):totable(), {{}, {}})
  local s = mo.zeros()
  lu.assertEquals(s:dim(), 0)
  lu.assertEquals(s:numel(), 1)
  lu.assertEquals(s:totable(), 0)
  lu.assertEquals(mo.tensor(3.5):totable(), 3.5)
  lu.assertEquals(mo.tensor(3.5):get(), 3.5)
  lu.assertEquals(mo.tensor(3.5):item(), 3.5)
  assert_shape(mo.zeros{}, {})
end

function TestTensorCreate.test_eight_dims()
  local t = mo.zeros(1, 2, 1, 2, 1, 2, 1, 2)
  assert_shape(t, {1, 2, 1, 2, 1, 2, 1, 2})
  t:set(1, 2, 1, 2, 1, 2, 1, 2, 7)
  lu.assertEquals(t:get(1, 2, 1, 2, 1, 2, 1, 2), 7)
  lu.assertEquals(t:sum():item(), 7)
end

function TestTensorCreate.test_tensor_from_nested_tables()
  local t = mo.tensor{{1, 2, 3}, {4, 5, 6}}
  assert_shape(t, {2, 3})
  lu.assertEquals(t:get(1, 1), 1)
  lu.assertEquals(t:get(2, 3), 6)
  lu.assertEquals(t:get(2, 1), 4)
  lu.assertEquals(t:totable(), {{1, 2, 3}, {4, 5, 6}})
  local c = mo.tensor{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}
  assert_shape(c, {2, 2, 2})
  lu.assertEquals(c:get(2, 1, 2), 6)
  assert_shape(mo.tensor{}, {0})
  assert_shape(mo.tensor{{}, {}}, {2, 0})
end

function TestTensorCreate.test_tensor_from_flat_list_and_shape()
  local t = mo.tensor({1, 2, 3, 4, 5, 6}, {2, 3})
  lu.assertEquals(t:totable(), {{1, 2, 3}, {4, 5, 6}})
  lu.assertEquals(mo.tensor({1, 2, 3, 4, 5, 6}, {3, -1}):shape(), {3, 2})
  lu.assertEquals(mo.tensor({1, 2, 3, 4}, 4):totable(), {1, 2, 3, 4})
  lu.assertEquals(mo.tensor({}, {0, 3}):shape(), {0, 3})
end

function TestTensorCreate.test_tensor_copies_a_tensor()
  local a = mo.tensor{1, 2}
  local b = mo.tensor(a)
  b:set(1, 9)
  lu.assertEquals(a:totable(), {1, 2})
  lu.assertFalse(a:same_storage(b))
end

function TestTensorCreate.test_float32_rounding()
  -- values are stored as float32: 0.1 comes back as the nearest float
  local v = mo.tensor{0.1}:get(1)
  lu.assertNotEquals(v, 0.1)
  lu.assertAlmostEquals(v, 0.1, 1e-8)
  lu.assertEquals(v, string.unpack("f", string.pack("f", 0.1)))
  lu.assertEquals(mo.tensor{16777217}:get(1), 16777216)
end

function TestTensorCreate.test_totable_round_trip()
  local src = {{{1.5, -2}, {3, 4}, {5, 6.25}}, {{-7, 8}, {9, 10}, {11, 0}}}
  lu.assertEquals(mo.tensor(src):totable(), src)
  lu.assertEquals(mo.tensor(mo.tensor(src):totable()):totable(), src)
end

function TestTensorCreate.test_get_set_item()
  local t = mo.zeros(2, 3)
  lu.assertIs(t:set(2, 3, 7), t)
  lu.assertEquals(t:get(2, 3), 7)
  t:set(1.0, 2.0, -1.25)
  lu.assertEquals(t:get(1, 2), -1.25)
  lu.assertEquals(t:totable(), {{0, -1.25, 0}, {0, 0, 7}})
  lu.assertEquals(mo.tensor{{4}}:item(), 4)
end

function TestTensorCreate.test_shape_queries()
  local t = mo.zeros(2, 3, 4)
  lu.assertEquals(t:size(), {2, 3, 4})
  lu.assertEquals(t:size(1), 2)
  lu.assertEquals(t:size(3), 4)
  lu.assertEquals(#t, 2)
  lu.assertEquals(t:stride(), {12, 4, 1})
  lu.assertEquals(t:stride(2), 4)
  lu.assertTrue(t:is_contiguous())
  -- shape() returns a fresh table each time
  local s = t:shape()
  s[1] = 99
  lu.assertEquals(t:shape(), {2, 3, 4})
end

function TestTensorCreate.test_tostring()
  -- the full format is tested in test_index.lua (TestPrint)
  lu.assertEquals(tostring(mo.tensor{{1, 2, 3}, {4, 5, 6}}),
    "  1  2  3\n  4  5  6\n[moonopt.Tensor float32 of size {2, 3}]")
  lu.assertEquals(tostring(mo.tensor{0.5, -1e-8}), "   5.0000e-01  -1.0000e-08\n[moonopt.Tensor float32 of size {2}]")
  lu.assertEquals(tostring(mo.zeros(0)), "[moonopt.Tensor float32 of size {0}]")
  lu.assertEquals(tostring(mo.tensor(2)), "  2\n[moonopt.Tensor float32 of size {}]")
  -- a strided view prints its own values
  lu.assertEquals(tostring(mo.tensor{{1, 2}, {3, 4}}:t()), "  1  3\n  2  4\n[moonopt.Tensor float32 of size {2, 2}]")
end

function TestTensorCreate.test_arange()
  lu.assertEquals(mo.arange(4):totable(), {1, 2, 3, 4})
  lu.assertEquals(mo.arange(0):totable(), {})
  lu.assertEquals(mo.arange(2, 5):totable(), {2, 3, 4, 5})
  lu.assertEquals(mo.arange(0, 1, 0.25):totable(), {0, 0.25, 0.5, 0.75, 1})
  lu.assertEquals(mo.arange(3, 1, -1):totable(), {3, 2, 1})
  lu.assertEquals(mo.arange(3, 1):totable(), {})
  -- fractional steps: the values a + k*step up to b, counted as they are computed (the
  -- quotient (b - a) / step rounds either way: 0.7 / 0.1 is 6.999..., 0.3 / 0.1 3.000...4)
  local function ends(t) return {t:numel(), t:get(t:numel())} end
  local D = {dtype = "float64"}
  lu.assertEquals(ends(mo.arange(0, 0.7, 0.1, D)), {7, 6 * 0.1})   -- 7 * 0.1 > 0.7
  lu.assertEquals(ends(mo.arange(0, 0.3, 0.1, D)), {3, 2 * 0.1})   -- 3 * 0.1 > 0.3
  lu.assertEquals(ends(mo.arange(0, 1, 0.1, D)), {11, 1})          -- 10 * 0.1 == 1
  lu.assertEquals(ends(mo.arange(1, 0, -0.1, D)), {11, 1 - 10 * 0.1})
  -- where the quotient's rounding misled the count: 0.29 / 0.01 = 28.999... though
  -- 29 * 0.01 == 0.29, and 0.35 / 0.01 = 35 though 35 * 0.01 > 0.35
  lu.assertEquals(ends(mo.arange(0, 0.29, 0.01, D)), {30, 29 * 0.01})
  lu.assertEquals(ends(mo.arange(0, 0.35, 0.01, D)), {35, 34 * 0.01})
end

function TestTensorCreate.test_randperm()
  mo.manual_seed(7)
  local p = mo.randperm(50)
  lu.assertEquals(#p, 50)
  local seen = {}
  for _, v in ipairs(p) do
    lu.assertEquals(math.type(v), "integer")
    lu.assertTrue(v >= 1 and v <= 50)
    lu.assertNil(seen[v])
    seen[v] = true
  end
  local identity = true
  for i, v in ipairs(p) do identity = identity and i == v end
  lu.assertFalse(identity)
  lu.assertEquals(mo.randperm(0), {})
  lu.assertEquals(mo.randperm(1), {1})
end

function TestTensorCreate.test_manual_seed_reproduces()
  mo.manual_seed(42)
  local a, pa, na = mo.rand(5):totable(), mo.randperm(10), mo.randn(2, 3):totable()
  mo.manual_seed(42)
  local b, pb, nb = mo.rand(5):totable(), mo.randperm(10), mo.randn(2, 3):totable()
  lu.assertEquals(a, b)
  lu.assertEquals(pa, pb)
  lu.assertEquals(na, nb)
  mo.manual_seed(43)
  lu.assertNotEquals(mo.rand(5):totable(), a)
  -- the in-place fills use the same generator
  mo.manual_seed(42)
  lu.assertEquals(mo.empty(5):uniform_():totable(), a)
  -- negative and float-integral seeds are accepted
  mo.manual_seed(-1)
  mo.manual_seed(3.0)
end

function TestTensorCreate.test_rand_and_randn_distribution()
  mo.manual_seed(1)
  local u = mo.rand(20000)
  lu.assertTrue(u:min():item() >= 0)
  lu.assertTrue(u:max():item() < 1)
  lu.assertAlmostEquals(u:mean():item(), 0.5, 0.01)
  local n = mo.randn(100, 200)
  lu.assertAlmostEquals(n:mean():item(), 0, 0.01)
  local var = n:pow(2):mean():item() - n:mean():item() ^ 2
  lu.assertAlmostEquals(var, 1, 0.02)
  local w = mo.empty(10000):uniform_(-3, -1)
  lu.assertTrue(w:min():item() >= -3 and w:max():item() < -1)
  local g = mo.empty(20000):normal_(5, 0.5)
  lu.assertAlmostEquals(g:mean():item(), 5, 0.02)
  lu.assertAlmostEquals(math.sqrt(g:sub(5):pow(2):mean():item()), 0.5, 0.02)
end

function TestTensorCreate.test_clock_is_monotonic()
  local a = mo.clock()
  local b = mo.clock()
  lu.assertEquals(type(a), "number")
  lu.assertTrue(b >= a)
end

return {TestTensorCreate = TestTensorCreate}
