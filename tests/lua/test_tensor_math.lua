-- Elementwise math, in place versus new, operators, reductions, dot/norm, matmul
-- (hand-computed values; NumPy references are in test_tensor_ref.lua).
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local function near(actual, expected, tol)
  tol = tol or 1e-6
  if type(expected) == "table" then
    lu.assertEquals(#actual, #expected)
    for i = 1, #expected do near(actual[i], expected[i], tol) end
  else
    local scale = math.max(1, math.abs(expected))
    if math.abs(actual - expected) <= tol * scale then return end
    lu.fail(string.format("got %.9g, expected %.9g", actual, expected))
  end
end

-- x rounded to float32, as the tensors store it
local function f32(x) return (string.unpack("f", string.pack("f", x))) end

local function m23() return mo.tensor{{1, 2, 3}, {4, 5, 6}} end

local TestTensorMath = {}

function TestTensorMath.test_binary_new_leaves_input()
  local a, b = m23(), mo.tensor{{6, 5, 4}, {3, 2, 1}}
  local r = a:add(b)
  lu.assertEquals(r:totable(), {{7, 7, 7}, {7, 7, 7}})
  lu.assertEquals(a:totable(), {{1, 2, 3}, {4, 5, 6}})
  lu.assertFalse(r:same_storage(a))
  lu.assertEquals(a:sub(b):totable(), {{-5, -3, -1}, {1, 3, 5}})
  lu.assertEquals(a:mul(b):totable(), {{6, 10, 12}, {12, 10, 6}})
  lu.assertEquals(a:div(b):totable(), {{f32(1 / 6), f32(2 / 5), f32(3 / 4)}, {f32(4 / 3), 2.5, 6}})
  lu.assertEquals(a:add(1):totable(), {{2, 3, 4}, {5, 6, 7}})
  lu.assertEquals(a:sub(1):totable(), {{0, 1, 2}, {3, 4, 5}})
  lu.assertEquals(a:mul(-2):totable(), {{-2, -4, -6}, {-8, -10, -12}})
  lu.assertEquals(a:div(4):totable(), {{0.25, 0.5, 0.75}, {1, 1.25, 1.5}})
end

function TestTensorMath.test_binary_in_place_returns_self()
  local a = m23()
  lu.assertIs(a:add_(1), a)
  lu.assertEquals(a:totable(), {{2, 3, 4}, {5, 6, 7}})
  lu.assertIs(a:mul_(a), a)
  lu.assertEquals(a:totable(), {{4, 9, 16}, {25, 36, 49}})
  lu.assertIs(a:sub_(mo.ones(2, 3)), a)
  lu.assertIs(a:div_(2), a)
  lu.assertEquals(a:totable(), {{1.5, 4, 7.5}, {12, 17.5, 24}})
end

function TestTensorMath.test_unary()
  local x = mo.tensor{-2, -0.5, 0, 0.5, 4}
  lu.assertEquals(x:neg():totable(), {2, 0.5, 0, -0.5, -4})
  lu.assertEquals(x:abs():totable(), {2, 0.5, 0, 0.5, 4})
  lu.assertEquals(x:relu():totable(), {0, 0, 0, 0.5, 4})
  lu.assertEquals(x:sign():totable(), {-1, -1, 0, 1, 1})
  near(x:exp():totable(), {math.exp(-2), math.exp(-0.5), 1, math.exp(0.5), math.exp(4)}, 1e-6)
  near(x:tanh():totable(), {-0.964027580, -0.462117157, 0, 0.462117157, 0.999329300}, 1e-6)
  near(x:sigmoid():totable(), {0.119202922, 0.377540669, 0.5, 0.622459331, 0.982013790}, 1e-6)
  local p = mo.tensor{1, 4, 9, 0.25}
  lu.assertEquals(p:sqrt():totable(), {1, 2, 3, 0.5})
  near(p:log():totable(), {0, math.log(4), math.log(9), math.log(0.25)}, 1e-6)
  lu.assertEquals(p:pow(2):totable(), {1, 16, 81, 0.0625})
  lu.assertEquals(p:pow(0.5):totable(), {1, 2, 3, 0.5})
  lu.assertEquals(p:pow(-1):totable(), {1, 0.25, f32(1 / 9), 4})
  -- the input is untouched; the underscore versions change it and return it
  lu.assertEquals(x:totable(), {-2, -0.5, 0, 0.5, 4})
  lu.assertIs(x:relu_(), x)
  lu.assertEquals(x:totable(), {0, 0, 0, 0.5, 4})
  for _, name in ipairs{"neg_", "abs_", "sign_", "exp_", "tanh_", "sigmoid_"} do
    local y = mo.tensor{1, -1}
    lu.assertIs(y[name](y), y, name)
  end
  local q = mo.tensor{4, 9}
  lu.assertIs(q:sqrt_(), q)
  lu.assertIs(q:log_(), q)
  near(q:totable(), {math.log(2), math.log(3)}, 1e-6)
  lu.assertIs(q:pow_(2), q)
end

function TestTensorMath.test_clamp()
  local x = mo.tensor{-3, -1, 0, 2, 5}
  lu.assertEquals(x:clamp(-1, 2):totable(), {-1, -1, 0, 2, 2})
  lu.assertEquals(x:clamp(0):totable(), {0, 0, 0, 2, 5})
  lu.assertEquals(x:clamp(nil, 1):totable(), {-3, -1, 0, 1, 1})
  lu.assertEquals(x:clamp(1, 1):totable(), {1, 1, 1, 1, 1})
  lu.assertIs(x:clamp_(-2, 3), x)
  lu.assertEquals(x:totable(), {-2, -1, 0, 2, 3})
end

function TestTensorMath.test_addcmul_addcdiv()
  local a = mo.tensor{1, 2, 3}
  local t1, t2 = mo.tensor{2, 4, 6}, mo.tensor{1, 2, 4}
  lu.assertEquals(a:addcmul(0.5, t1, t2):totable(), {2, 6, 15})
  lu.assertEquals(a:addcdiv(2, t1, t2):totable(), {5, 6, 6})
  lu.assertEquals(a:totable(), {1, 2, 3})
  -- PyTorch's argument order (t1, t2 [, value]) works too
  lu.assertEquals(a:addcmul(t1, t2):totable(), {3, 10, 27})
  lu.assertEquals(a:addcdiv(t1, t2, -1):totable(), {-1, 0, 1.5})
  lu.assertIs(a:addcmul_(1, t1, t2), a)
  lu.assertEquals(a:totable(), {3, 10, 27})
  lu.assertIs(a:addcdiv_(1, t1, t2), a)
  lu.assertEquals(a:totable(), {5, 12, 28.5})
end

function TestTensorMath.test_add_row_bias()
  local m = mo.tensor{{1, 2, 3}, {4, 5, 6}}
  local b = mo.tensor{10, 20, 30}
  local r = m:add_row_bias(b)
  lu.assertEquals(r:totable(), {{11, 22, 33}, {14, 25, 36}})
  lu.assertEquals(m:totable(), {{1, 2, 3}, {4, 5, 6}})
  lu.assertIs(m:add_row_bias_(b), m)
  lu.assertEquals(m:totable(), {{11, 22, 33}, {14, 25, 36}})
  -- a row of the matrix itself as the bias: read before it is changed
  local s = mo.tensor{{1, 2}, {3, 4}}
  s:add_row_bias_(s:select(1, 1))
  lu.assertEquals(s:totable(), {{2, 4}, {4, 6}})
end

function TestTensorMath.test_operators()
  local a, b = m23(), mo.tensor{{1, 1, 1}, {2, 2, 2}}
  lu.assertEquals((a + b):totable(), {{2, 3, 4}, {6, 7, 8}})
  lu.assertEquals((a - b):totable(), {{0, 1, 2}, {2, 3, 4}})
  lu.assertEquals((a * b):totable(), {{1, 2, 3}, {8, 10, 12}})
  lu.assertEquals((a / b):totable(), {{1, 2, 3}, {2, 2.5, 3}})
  lu.assertEquals((a + 1):totable(), {{2, 3, 4}, {5, 6, 7}})
  lu.assertEquals((1 + a):totable(), {{2, 3, 4}, {5, 6, 7}})
  lu.assertEquals((10 - a):totable(), {{9, 8, 7}, {6, 5, 4}})
  lu.assertEquals((a - 10):totable(), {{-9, -8, -7}, {-6, -5, -4}})
  lu.assertEquals((2 * a):totable(), {{2, 4, 6}, {8, 10, 12}})
  lu.assertEquals((12 / a):totable(), {{12, 6, 4}, {3, f32(12 / 5), 2}})
  lu.assertEquals((a / 2):totable(), {{0.5, 1, 1.5}, {2, 2.5, 3}})
  lu.assertEquals((-a):totable(), {{-1, -2, -3}, {-4, -5, -6}})
  lu.assertEquals((a ^ 2):totable(), {{1, 4, 9}, {16, 25, 36}})
  -- operators never change their operands
  lu.assertEquals(a:totable(), {{1, 2, 3}, {4, 5, 6}})
  lu.assertEquals(b:totable(), {{1, 1, 1}, {2, 2, 2}})
  -- and work on strided views
  lu.assertEquals((a:t() + 1):totable(), {{2, 5}, {3, 6}, {4, 7}})
end

function TestTensorMath.test_reductions()
  local a = mo.tensor{{1, 5, 3}, {4, 2, 6}}
  lu.assertEquals(a:sum():item(), 21)
  lu.assertEquals(a:mean():item(), 3.5)
  lu.assertEquals(a:max():item(), 6)
  lu.assertEquals(a:min():item(), 1)
  lu.assertEquals(a:argmax():item(), 6)
  lu.assertEquals(a:argmax().dtype, "float32")   -- a 0-d tensor of the input's dtype
  lu.assertEquals(a:sum(1):totable(), {5, 7, 9})
  lu.assertEquals(a:sum(2):totable(), {9, 12})
  lu.assertEquals(a:mean(1):totable(), {2.5, 3.5, 4.5})
  lu.assertEquals(a:max(1):totable(), {4, 5, 6})
  lu.assertEquals(a:min(2):totable(), {1, 2})
  lu.assertEquals(a:argmax(1):totable(), {2, 1, 2})
  lu.assertEquals(a:argmax(2):totable(), {2, 3})
  -- first maximum wins
  lu.assertEquals(mo.tensor{3, 7, 7, 1}:argmax():item(), 2)
  -- a 1-d reduction along its only dim gives a 0-d tensor
  local s = mo.tensor{1, 2, 3}:sum(1)
  lu.assertEquals(s:dim(), 0)
  lu.assertEquals(s:item(), 6)
  lu.assertEquals(mo.zeros(0):sum():item(), 0)
  -- sums accumulate in double: 1e8 + 1 + ... is not lost
  local big = mo.full(1000, 0.1)
  near(big:sum():item(), 1000 * mo.tensor{0.1}:get(1), 1e-7) -- float32 result; float sums miss by 1e-5
end

function TestTensorMath.test_dot_norm_norm_many()
  local a, b = mo.tensor{1, 2, 3}, mo.tensor{4, -5, 6}
  lu.assertEquals(a:dot(b):item(), 12)
  lu.assertEquals(a:dot(b):dim(), 0)   -- a 0-d tensor, like every reduction without a dim
  near(a:norm():item(), math.sqrt(14), 1e-7)   -- a float32 0-d result
  lu.assertEquals(mo.tensor{{3, 0}, {0, 4}}:norm():item(), 5)
  near(core.norm_many{a, b}, math.sqrt(14 + 77), 1e-12)
  lu.assertEquals(core.norm_many{}, 0)
  lu.assertEquals(core.norm_many{mo.tensor{{3}}, mo.tensor{4}}, 5)
end

function TestTensorMath.test_matmul()
  local a = mo.tensor{{1, 2, 3}, {4, 5, 6}}            -- {2, 3}
  local b = mo.tensor{{1, 0}, {0, 1}, {2, -1}}         -- {3, 2}
  local c = mo.matmul(a, b)
  lu.assertEquals(c:totable(), {{7, -1}, {16, -1}})
  lu.assertEquals(a:matmul(b):totable(), {{7, -1}, {16, -1}})
  lu.assertEquals(mo.matmul(a, a, {trans_b = true}):totable(), {{14, 32}, {32, 77}})
  lu.assertEquals(mo.matmul(a, a, {trans_a = true}):totable(),
                  {{17, 22, 27}, {22, 29, 36}, {27, 36, 45}})
  lu.assertEquals(mo.matmul(b, a, {trans_a = true, trans_b = true}):totable(),
                  {{7, 16}, {-1, -1}})
  lu.assertEquals(mo.matmul(a:t(), b:t()):totable(), {{1, 4, -2}, {2, 5, -1}, {3, 6, 0}})
  -- alpha, beta and out
  local out = mo.ones(2, 2)
  local r = mo.matmul(a, b, {out = out, alpha = 2, beta = 3})
  lu.assertIs(r, out)
  lu.assertEquals(out:totable(), {{17, 1}, {35, 1}})
  mo.matmul(a, b, {out = out})                         -- beta 0: old contents ignored
  lu.assertEquals(out:totable(), {{7, -1}, {16, -1}})
  out:fill(0 / 0)
  mo.matmul(a, b, {out = out})
  lu.assertEquals(out:totable(), {{7, -1}, {16, -1}})  -- NaN in out does not leak
  -- out may share memory with an input
  local sq = mo.tensor{{1, 2}, {3, 4}}
  mo.matmul(sq, sq, {out = sq})
  lu.assertEquals(sq:totable(), {{7, 10}, {15, 22}})
  -- empty inner dimension: zeros
  lu.assertEquals(mo.matmul(mo.zeros(2, 0), mo.zeros(0, 3)):totable(), {{0, 0, 0}, {0, 0, 0}})
end

return {TestTensorMath = TestTensorMath}
