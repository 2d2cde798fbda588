-- Every bad argument is a Lua error that names the function and the argument,
-- and a failing call changes nothing.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
local core = require "moonopt.core"

local function m23() return mo.tensor{{1, 2, 3}, {4, 5, 6}} end

local TestTensorErrors = {}

function TestTensorErrors.test_sizes()
  fails("zeros: size #1 must be a non-negative integer, got -1", mo.zeros, -1)
  fails("zeros: size #2 must be a non-negative integer, got 2.5", mo.zeros, 3, 2.5)
  fails("zeros: size #1 must be a non-negative integer, got nan", mo.zeros, 0 / 0)
  fails("zeros: size #1 must be a non-negative integer, got inf", mo.zeros, math.huge)
  fails("zeros: size #1 must be a non-negative integer, got -inf", mo.zeros, -math.huge)
  fails("zeros: size #1 must be at most 2^40, got 1099511627777", mo.zeros, (1 << 40) + 1)
  fails("zeros: size #1 must be at most 2^40", mo.zeros, 2.0 ^ 41)
  fails("zeros: size #1 must be at most 2^40", mo.zeros, math.maxinteger)
  fails("zeros: size #1 must be a non-negative integer, got " .. math.mininteger, mo.zeros, math.mininteger)
  fails("zeros: size #1 must be a non-negative integer, got string", mo.zeros, "3")
  fails("zeros: size #2 must be a non-negative integer, got string", mo.zeros, {2, "x"})
  fails("zeros: size #2 must be a non-negative integer, got nil", mo.zeros, {2, nil, 3})
  fails("zeros: size #1 must be a non-negative integer, got table", mo.zeros, {2}, 3)
  -- products that exceed 2^40 or would wrap size_t
  fails("zeros: shape {1048576, 1048576, 1048576} has more than 2^40 elements", mo.zeros, 2 ^ 20, 2 ^ 20, 2 ^ 20)
  fails("has more than 2^40 elements", mo.ones, {1 << 40, 1 << 40, 1 << 40, 1 << 40})
  fails("has more than 2^40 elements", mo.randn, 1 << 21, 1 << 21)
  -- too many dimensions
  fails("zeros: too many dimensions (9, at most 8)", mo.zeros, 1, 1, 1, 1, 1, 1, 1, 1, 1)
  fails("ones: too many dimensions (9, at most 8)", mo.ones, {1, 1, 1, 1, 1, 1, 1, 1, 1})
  for _, f in ipairs{"ones", "empty", "rand", "randn"} do
    fails(f .. ": size #1 must be a non-negative integer, got -3", mo[f], -3)
  end
end

function TestTensorErrors.test_constructors()
  fails("bad argument #2 to 'full' (number expected, got string)", mo.full, {2}, "x")
  fails("bad argument #2 to 'full' (number expected, got no value)", mo.full, {2})
  fails("full: size #1 must be a non-negative integer, got -2", mo.full, -2, 1)
  fails("bad argument #1 to 'tensor' (table expected, got string)", mo.tensor, "x")
  fails("bad argument #1 to 'tensor' (table expected, got no value)", mo.tensor)
  fails("tensor: ragged nested table: element [2] has 1 entries, expected 2", mo.tensor, {{1, 2}, {3}})
  fails("tensor: ragged nested table: element [1][2] has 3 entries, expected 2", mo.tensor,
        {{{1, 2}, {1, 2, 3}}})
  fails("tensor: element [2] must be a table (the tensor is 2-d), got number", mo.tensor, {{1, 2}, 3})
  fails("tensor: element [2] must be a number, got string", mo.tensor, {1, "a"})
  fails("tensor: element [1][2] must be a number, got table", mo.tensor, {{1, {2}}})
  fails("tensor: element [2] must be a number, got boolean", mo.tensor, {1, true})
  fails("tensor: 3 values do not fill shape {2, 2} (4 elements)", mo.tensor, {1, 2, 3}, {2, 2})
  fails("tensor: cannot infer size #2", mo.tensor, {1, 2, 3}, {2, -1})
  fails("tensor: element [2] must be a number, got string", mo.tensor, {1, "2"}, {2})
  fails("tensor: size #1 must be a non-negative integer or -1, got -2", mo.tensor, {1, 2}, {-2})
  fails("tensor: too many dimensions (nested deeper than 8)", mo.tensor, {{{{{{{{{1}}}}}}}}})
  local loop = {}
  loop[1] = loop
  fails("tensor: too many dimensions", mo.tensor, loop)
end

function TestTensorErrors.test_arange_randperm_seed()
  fails("bad argument #1 to 'arange' (n must be an integer in 0..1099511627776, got -1)", mo.arange, -1)
  fails("bad argument #1 to 'arange' (n must be an integer in 0..1099511627776, got 2.5)", mo.arange, 2.5)
  fails("bad argument #1 to 'arange' (number expected, got string)", mo.arange, "3")
  fails("bad argument #3 to 'arange' (step must not be 0)", mo.arange, 1, 2, 0)
  fails("bad argument #2 to 'arange' (stop must be finite", mo.arange, 1, 0 / 0)
  fails("bad argument #1 to 'arange' (start must be finite, got inf)", mo.arange, math.huge, 1)
  fails("arange: more than 2^40 values", mo.arange, 0, 2 ^ 50)
  -- quotients that overflow or exceed every count: an error, never a loop
  fails("arange: more than 2^40 values", mo.arange, -1e308, 1e308)
  fails("arange: more than 2^40 values", mo.arange, 0, 1e300, 1e-300)
  fails("arange: more than 2^40 values", mo.arange, 1e300, 0, -1e-300)
  lu.assertEquals(mo.arange(0, -1e300, 1e-300):numel(), 0)
  fails("bad argument #1 to 'randperm' (n must be an integer in 0..2147483647, got -1)", mo.randperm, -1)
  fails("bad argument #1 to 'randperm' (n must be an integer in 0..2147483647, got 2147483648)",
        mo.randperm, 1 << 31)
  fails("bad argument #1 to 'randperm' (number expected, got nil)", mo.randperm, nil)
  fails("bad argument #1 to 'manual_seed' (seed must be an integer, got 1.5)", mo.manual_seed, 1.5)
  fails("bad argument #1 to 'manual_seed' (number expected, got string)", mo.manual_seed, "1")
  fails("bad argument #1 to 'manual_seed' (number expected, got no value)", mo.manual_seed)
  fails("bad argument #1 to 'manual_seed' (seed must be an integer, got nan)", mo.manual_seed, 0 / 0)
  fails("bad argument #1 to 'manual_seed' (seed must be an integer, got 1e+300)", mo.manual_seed, 1e300)
  local t = mo.zeros(3)
  fails("bad argument #2 to 'uniform_' (hi 1 is less than lo 2)", function() return t:uniform_(2, 1) end)
  fails("bad argument #1 to 'uniform_' (lo must be finite", function() return t:uniform_(0 / 0) end)
  fails("bad argument #2 to 'normal_' (sd must be non-negative, got -1)", function() return t:normal_(0, -1) end)
  fails("bad argument #1 to 'normal_' (number expected, got string)", function() return t:normal_("0") end)
  lu.assertEquals(t:totable(), {0, 0, 0})
end

function TestTensorErrors.test_wrong_self_and_tensor_arguments()
  local T = mo.Tensor
  fails("bad argument #1 to 'get' (moonopt.Tensor expected, got nil)", T.get, nil, 1)
  fails("bad argument #1 to 'numel' (moonopt.Tensor expected, got table)", T.numel, {})
  fails("bad argument #1 to 'add' (moonopt.Tensor expected, got FILE*)", T.add, io.stdout, 1)
  fails("bad argument #1 to 'sum' (moonopt.Tensor expected, got number)", T.sum, 3)
  -- a method call with a bad receiver reads as Lua's own "bad self" message
  local fake = setmetatable({}, {__index = T})
  fails("calling 'numel' on bad self (moonopt.Tensor expected, got table)", function() return fake:numel() end)
  local a = m23()
  fails("bad argument #1 to 'copy' (moonopt.Tensor expected, got nil)", function() return a:copy(nil) end)
  fails("bad argument #1 to 'copy_' (moonopt.Tensor expected, got table)", function() return a:copy_({}) end)
  fails("bad argument #1 to 'add' (moonopt.Tensor or number expected, got string)",
        function() return a:add("1") end)
  fails("bad argument #1 to 'mul_' (moonopt.Tensor or number expected, got no value)",
        function() return a:mul_() end)
  fails("bad argument #1 to 'dot' (moonopt.Tensor expected, got number)", function() return a:dot(1) end)
  fails("bad argument #2 to 'same_storage' (moonopt.Tensor expected, got no value)", T.same_storage, a)
  fails("bad argument #2 to 'same_storage' (moonopt.Tensor expected, got nil)", T.same_storage, a, nil)
  fails("bad argument #1 to 'fill' (number expected, got string)", function() return a:fill("1") end)
  fails("bad argument #1 to 'pow' (moonopt.Tensor or number expected, got boolean)",
        function() return a:pow(true) end)
  -- called as plain functions (e.g. through pcall) the name is still there
  fails("bad argument #2 to 'get' (index 5 out of range for dimension 1 of size 2)", T.get, a, 5, 1)
  fails("bad argument #1 to 'matmul' (moonopt.Tensor expected, got nil)", mo.matmul, nil, a)
end

function TestTensorErrors.test_indices()
  local t = mo.zeros(3, 2)
  fails("bad argument #1 to 'get' (index 5 out of range for dimension 1 of size 3)",
        function() return t:get(5, 1) end)
  fails("bad argument #2 to 'get' (index 3 out of range for dimension 2 of size 2)",
        function() return t:get(1, 3) end)
  fails("bad argument #1 to 'get' (index 0 out of range for dimension 1 of size 3)",
        function() return t:get(0, 1) end)
  fails("bad argument #1 to 'get' (index -1 out of range", function() return t:get(-1, 1) end)
  fails("bad argument #1 to 'get' (index must be an integer, got 1.5)", function() return t:get(1.5, 1) end)
  fails("bad argument #2 to 'get' (index must be an integer, got string)", function() return t:get(1, "1") end)
  fails("bad argument #1 to 'get' (index must be an integer, got nil)", function() return t:get(nil, 1) end)
  fails("bad argument #1 to 'get' (index must be an integer, got nan)", function() return t:get(0 / 0, 1) end)
  fails("bad argument #1 to 'get' (index must be an integer, got 1e+100)", function() return t:get(1e100, 1) end)
  fails("get: a 2-d tensor needs 2 indices, got 1", function() return t:get(1) end)
  fails("get: a 2-d tensor needs 2 indices, got 3", function() return t:get(1, 1, 1) end)
  fails("get: a 0-d tensor needs 0 indices, got 1", function() return mo.tensor(1):get(1) end)
  fails("set: a 2-d tensor needs 2 indices and a value, got 2 arguments", function() return t:set(1, 1) end)
  fails("bad argument #3 to 'set' (number expected, got string)", function() return t:set(1, 1, "x") end)
  fails("bad argument #3 to 'set' (number expected, got nil)", function() return t:set(1, 1, nil) end)
  fails("bad argument #2 to 'set' (index 9 out of range for dimension 2 of size 2)",
        function() return t:set(1, 9, 5) end)
  lu.assertEquals(t:sum():item(), 0)
  fails("item: the tensor has 6 elements, expected 1", function() return t:item() end)
  fails("__len: a 0-d tensor has no length", function() return #mo.tensor(1) end)
end

function TestTensorErrors.test_dims_views()
  local a = m23()
  fails("bad argument #1 to 'size' (dimension 3 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:size(3) end)
  fails("bad argument #1 to 'size' (dimension 0 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:size(0) end)
  -- negative dimensions count from the end, as PyTorch's (-1 the last), in every op
  lu.assertEquals(a:size(-1), 3)
  lu.assertEquals(a:size(-2), 2)
  lu.assertEquals(a:narrow(-1, 2, 2):shape(), {2, 2})
  fails("bad argument #1 to 'size' (dimension -3 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:size(-3) end)
  fails("bad argument #1 to 'stride' (dimension must be an integer, got string)",
        function() return a:stride("1") end)
  fails("view: shape {4} does not match the tensor's 6 elements", function() return a:view(4) end)
  fails("view: only one size may be -1", function() return a:view(-1, -1) end)
  fails("view: size #1 must be a non-negative integer or -1, got -2", function() return a:view(-2, 3) end)
  fails("view: cannot infer size #1: 6 elements are not a multiple", function() return a:view(-1, 4) end)
  fails("view: cannot infer size #2", function() return a:view(0, -1) end)
  fails("view: shape {6} cannot be a view of shape {3, 2} with strides {1, 3} (use reshape or contiguous)",
        function() return a:t():view(6) end)
  fails("reshape: shape {7} does not match the tensor's 6 elements", function() return a:t():reshape(7) end)
  fails("view: too many dimensions (9, at most 8)", function() return a:view(1, 1, 1, 1, 1, 1, 1, 2, 3) end)
  fails("bad argument #1 to 'narrow' (dimension 3 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:narrow(3, 1, 1) end)
  fails("bad argument #2 to 'narrow' (start 0 out of range for dimension 2 of size 3)",
        function() return a:narrow(2, 0, 1) end)
  fails("bad argument #2 to 'narrow' (start 5 out of range for dimension 2 of size 3)",
        function() return a:narrow(2, 5, 0) end)
  fails("bad argument #3 to 'narrow' (length 3 out of range: dimension 2 of size 3 from start 2)",
        function() return a:narrow(2, 2, 3) end)
  fails("bad argument #3 to 'narrow' (length -1 out of range", function() return a:narrow(2, 2, -1) end)
  fails("bad argument #3 to 'narrow' (length must be an integer, got 1.5)",
        function() return a:narrow(2, 2, 1.5) end)
  fails("bad argument #2 to 'transpose' (dimension 3 out of range for a 2-d tensor of shape {2, 3})",
        function() return a:transpose(1, 3) end)
  fails("t: expects a tensor of at most 2 dimensions, got 3-d", function() return mo.zeros(1, 2, 3):t() end)
  fails("bad argument #2 to 'select' (index 3 out of range for dimension 1 of size 2 (shape {2, 3}))",
        function() return a:select(1, 3) end)
  fails("bad argument #1 to 'select' (dimension 1 out of range for a 0-d tensor of shape {})",
        function() return mo.tensor(1):select(1, 1) end)
end

function TestTensorErrors.test_shape_mismatch()
  local a, b = m23(), mo.zeros(3, 2)
  -- elementwise ops broadcast (tests/lua/test_elementwise.lua); these shapes cannot
  fails("add: shapes {2, 3} and {3, 2} cannot broadcast", function() return a:add(b) end)
  fails("add_: shapes {2, 3} and {3, 2} cannot broadcast", function() return a:add_(b) end)
  fails("sub: shapes {2, 3} and {3, 2} cannot broadcast", function() return a:sub(b) end)
  fails("mul_: shapes", function() return a:mul_(b) end)
  fails("div: shapes", function() return a:div(b) end)
  fails("__add: shapes {2, 3} and {3, 2} cannot broadcast", function() return a + b end)
  fails("__sub: shapes", function() return a - b end)
  fails("__mul: shapes", function() return a * b end)
  fails("__div: shapes", function() return a / b end)
  fails("bad argument #2 to '__add' (moonopt.Tensor or number expected, got string)",
    function() return a + "x" end)
  fails("bad argument #1 to '__mul' (moonopt.Tensor or number expected, got table)",
    function() return {} * a end)
  fails("bad argument #2 to '__pow' (moonopt.Tensor or number expected, got string)",
    function() return a ^ "x" end)
  fails("copy: shape mismatch: {2, 3} vs {3, 2}", function() return a:copy(b) end)
  fails("dot: shape mismatch: {2, 3} vs {3, 2}", function() return a:dot(b) end)
  fails("addcmul_: shapes {2, 3}, {2, 3} and {3, 2} cannot broadcast", function() return a:addcmul_(1, a, b) end)
  fails("addcdiv: shapes {2, 3}, {3, 2} and {2, 3} cannot broadcast", function() return a:addcdiv(1, b, a) end)
  fails("bad argument #3 to 'addcmul_' (moonopt.Tensor expected, got no value)",
        function() return a:addcmul_(1, a) end)
  fails("add_row_bias_: shapes {2, 3} and {2} do not agree (want {r, c} and {c})",
        function() return a:add_row_bias_(mo.zeros(2)) end)
  fails("add_row_bias: shapes {3} and {3} do not agree", function() return mo.zeros(3):add_row_bias(mo.zeros(3)) end)
  -- nothing changed by any of the failed calls
  lu.assertEquals(a:totable(), {{1, 2, 3}, {4, 5, 6}})
  lu.assertEquals(b:sum():item(), 0)
end

function TestTensorErrors.test_math_arguments()
  local a = m23()
  fails("clamp: at least one of lo and hi must be given", function() return a:clamp() end)
  fails("bad argument #2 to 'clamp' (hi 1 is less than lo 3)", function() return a:clamp(3, 1) end)
  fails("bad argument #1 to 'clamp_' (lo is NaN)", function() return a:clamp_(0 / 0, 1) end)
  fails("bad argument #2 to 'clamp_' (hi is NaN)", function() return a:clamp_(0, 0 / 0) end)
  fails("bad argument #1 to 'clamp' (number expected, got string)", function() return a:clamp("0") end)
  fails("bad argument #1 to 'sum' (dimension 3 out of range for a 2-d tensor of shape {2, 3}",
        function() return a:sum(3) end)
  fails("bad argument #1 to 'argmax' (dimension 0 out of range for a 2-d tensor of shape {2, 3}",
        function() return a:argmax(0) end)
  local m0 = mo.zeros(0):mean():item(); lu.assertTrue(m0 ~= m0)   -- as PyTorch: the mean of nothing is NaN
  fails("max: the tensor of shape {2, 0} is empty", function() return mo.zeros(2, 0):max():item() end)
  fails("min: the tensor of shape {0} is empty", function() return mo.zeros(0):min():item() end)
  fails("argmax: the tensor of shape {0} is empty", function() return mo.zeros(0):argmax():item() end)
  fails("max: dimension 2 of shape {2, 0} has size 0", function() return mo.zeros(2, 0):max(2) end)
  fails("argmax: dimension 1 of shape {0, 2} has size 0", function() return mo.zeros(0, 2):argmax(1) end)
  fails("bad argument #1 to 'norm_many' (table expected, got nil)", core.norm_many, nil)
  fails("bad argument #1 to 'norm_many' (element 2 is not a moonopt.Tensor (got number))",
        core.norm_many, {a, 1})
  lu.assertEquals(a:totable(), {{1, 2, 3}, {4, 5, 6}})
end

function TestTensorErrors.test_matmul()
  local a, b = mo.zeros(2, 3), mo.zeros(4, 5)
  fails("matmul: shapes {2, 3} and {4, 5} do not agree", mo.matmul, a, b)
  fails("matmul: shapes {2, 3} and {3, 2} do not agree (trans_b)", mo.matmul, a, mo.zeros(3, 2),
        {trans_b = true})
  fails("matmul: shapes {2, 3} and {2, 3} do not agree (trans_a, trans_b)", mo.matmul, a, a,
        {trans_a = true, trans_b = true})
  fails("bad argument #1 to 'matmul' (1-d, 2-d or 3-d tensor expected, got 0-d)", mo.matmul, mo.tensor(3), a)
  fails("bad argument #2 to 'matmul' (1-d, 2-d or 3-d tensor expected, got 4-d)", mo.matmul, a,
        mo.zeros(3, 1, 1, 1))
  fails("bad argument #3 to 'matmul' (table expected, got number)", mo.matmul, a, a:t(), 1)
  fails("bad argument #3 to 'matmul' (unknown option 'tranA')", mo.matmul, a, a:t(), {tranA = true})
  fails("bad argument #3 to 'matmul' (option trans_a must be a boolean, got number)", mo.matmul, a, a,
        {trans_a = 1})
  fails("bad argument #3 to 'matmul' (option alpha must be a number, got string)", mo.matmul, a, a:t(),
        {alpha = "2"})
  fails("bad argument #3 to 'matmul' (option out must be a moonopt.Tensor, got table)", mo.matmul, a, a:t(),
        {out = {}})
  fails("bad argument #3 to 'matmul' (option keys must be strings, got number)", mo.matmul, a, a:t(), {true})
  fails("bad argument #3 to 'matmul' (beta needs an out tensor to add to)", mo.matmul, a, a:t(), {beta = 1})
  local out = mo.full({2, 5}, 7)
  fails("matmul: out has shape {2, 5}, expected {2, 2}", mo.matmul, a, a:t(), {out = out})
  lu.assertEquals(out:sum():item(), 70)
end

function TestTensorErrors.test_grad_and_fields()
  local p = m23()
  local g = mo.ones(2, 3)
  p.grad = g
  fails("grad: shape mismatch: tensor {2, 3} vs grad {3}", function() p.grad = mo.zeros(3) end)
  fails("grad: must be nil or a moonopt.Tensor, got number", function() p.grad = 5 end)
  fails("grad: must be nil or a moonopt.Tensor, got table", function() p.grad = {} end)
  lu.assertIs(p.grad, g)                                   -- unchanged by the failures
  fails("moonopt.Tensor: cannot set field 'foo' (only .grad is assignable)", function() p.foo = 1 end)
  fails("moonopt.Tensor: cannot set a field with a boolean key", function() p[true] = 2 end)
  -- user text is never a format string
  fails("cannot set field '%s%n%d'", function() p["%s%n%d"] = 1 end)
  lu.assertNil(p.foo)
  lu.assertNil(p[true])
  local freed = mo.zeros(2, 3)
  freed:__gc()
  fails("grad: tensor has been freed", function() p.grad = freed end)
  lu.assertIs(p.grad, g)
end

function TestTensorErrors.test_failed_in_place_calls_change_nothing()
  local a = m23()
  local before = a:totable()
  pcall(function() return a:add_(mo.zeros(3)) end)
  pcall(function() return a:clamp_(5, 1) end)
  pcall(function() return a:fill_("x") end)
  pcall(function() return a:copy_(mo.zeros(6)) end)
  pcall(function() return a:addcdiv_(1, a, mo.zeros(2)) end)
  pcall(function() return a:set(3, 1, 0) end)
  pcall(function() return a:pow_("2") end)
  pcall(function() return a:uniform_(3, 2) end)
  pcall(function() return a:add_row_bias_(mo.zeros(2)) end)
  lu.assertEquals(a:totable(), before)
end

-- An argument past what a function takes is an error, not ignored (lua/binding/arity.c):
-- torch7's t:add(2, u) means t + 2 * u and used to return t + 2.
function TestTensorErrors.test_extra_arguments()
  local a, u = m23(), mo.ones(2, 3)
  local before = a:totable()
  fails("bad argument #2 to 'add' (unexpected argument (moonopt.Tensor); torch7's t:add(v, u) "
        .. "is t:add(u * v) here)", function() return a:add(2, u) end)
  fails("bad argument #2 to 'add_' (unexpected argument (moonopt.Tensor); torch7's t:add_(v, u) "
        .. "is t:add_(u * v) here)", function() return a:add_(2, u) end)
  fails("bad argument #2 to 'sub' (unexpected argument (moonopt.Tensor); torch7's t:sub(v, u) "
        .. "is t:sub(u * v) here)", function() return a:sub(2, u) end)
  -- the first extra argument is named, past any nils
  fails("bad argument #3 to 'sum' (unexpected argument (number 7))",
        function() return a:sum(1, true, 7, 8) end)
  fails("bad argument #4 to 'sum' (unexpected argument (number 8))",
        function() return a:sum(1, true, nil, 8) end)
  lu.assertEquals(a:totable(), before)                               -- nothing changed
  fails("bad argument #2 to 'mul' (unexpected argument (moonopt.Tensor))",
        function() return a:mul(2, u) end)
  fails("bad argument #1 to 'sin' (unexpected argument (number 1))", function() return a:sin(1) end)
  fails("bad argument #3 to 'sum' (unexpected argument (number 5))",
        function() return a:sum(1, true, 5) end)
  fails("bad argument #2 to 'softmax' (unexpected argument (number 3))",
        function() return a:softmax(2, 3) end)
  fails("bad argument #3 to 'transpose' (unexpected argument (number 3))",
        function() return a:transpose(1, 2, 3) end)
  fails("bad argument #3 to 'any' (unexpected argument (string))",
        function() return a:any(1, false, "x") end)                     -- a plain function
  fails("bad argument #4 to 'where' (unexpected argument (number 1))", mo.where, a:gt(2), a, u, 1)
  fails("bad argument #4 to 'matmul' (unexpected argument (number 1))", mo.matmul, a, a:t(), {}, 1)
  fails("bad argument #5 to 'arange' (unexpected argument (number 3))", mo.arange, 1, 5, 1, {}, 3)
  fails("bad argument #3 to 'cat' (unexpected argument (number 2))", mo.cat, {a, a}, 1, 2)
  -- trailing nils are no arguments; functions of any number of sizes or dims are open
  lu.assertEquals(a:sum(2, nil, nil):shape(), {2})
  lu.assertEquals(a:add(u, nil):totable(), {{2, 3, 4}, {5, 6, 7}})
  lu.assertEquals(a:permute(2, 1):shape(), {3, 2})
  lu.assertEquals(mo.zeros(1, 2, 3, 4):shape(), {1, 2, 3, 4})
end

return {TestTensorErrors = TestTensorErrors}
