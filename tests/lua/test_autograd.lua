-- tests/lua/test_autograd.lua - autograd (docs/autograd.md): every differentiable op of the
-- registry gradchecked in float64 (the test walks moonopt.autograd.engine's DEFS and fails
-- for a definition without a case), the tape's bookkeeping (leaves, in-place accumulation,
-- freeing, no_grad, detach) and the errors.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
local E = require "moonopt.autograd.engine"

local D = {dtype = "float64"}
local gradcheck = mo.autograd.gradcheck

-- fixed float64 inputs (no ties, no zeros, away from kinks)
local function T(data, shape)
  local t = mo.tensor(data, D)
  if shape then t = t:reshape(shape) end
  return t
end
local function A23() return T({0.3, -1.2, 0.7, 1.9, -0.4, 1.1}, {2, 3}) end
local function B23() return T({1.3, 0.6, -0.8, 0.9, 1.7, -1.4}, {2, 3}) end
local function P23() return T({0.3, 1.2, 0.7, 1.9, 0.4, 1.1}, {2, 3}) end -- positive
local function V3() return T({0.5, -1.5, 2.0}) end
local function IDX(data) return mo.tensor(data, D) end

-- name -> {f, inputs} of the gc cases, for the double-backward checks below
local SECOND = {}
local gc_of = {}

local function gc(f, ...)
  local inputs = {...}
  local case = function() lu.assertTrue(gradcheck(f, inputs)) end
  gc_of[case] = {f = f, inputs = inputs}
  return case
end

-- name (as in E.DEFS) -> a test function; every differentiable op must appear here.
local CASES = {
  add = gc(function(a, b) return a + b end, A23(), T({1, 2, 3})),
  __add = gc(function(a) return 2 + a + 3 end, A23()),
  sub = gc(function(a, b) return a:sub(b) end, A23(), T({1, 2}, {2, 1})),
  __sub = gc(function(a, b) return 1 - a - b end, A23(), B23()),
  mul = gc(function(a, b) return a:mul(b) end, A23(), T({1.5, -2, 3})),
  __mul = gc(function(a, b) return 2 * a * b * 3 end, A23(), T({0.5, 2}, {2, 1})),
  div = gc(function(a, b) return a:div(b) end, A23(), T({1.5, -2, 3})),
  __div = gc(function(a, b) return 2 / a / b end, P23(), T({0.5, 2}, {2, 1})),
  pow = gc(function(a, b) return a:pow(b) end, P23(), T({1.5, -2, 3})),
  __pow = gc(function(a, b) return a ^ 3 + 2 ^ b + a ^ 0.5 end, P23(), A23()),
  maximum = gc(function(a, b) return a:maximum(b) + mo.maximum(0.5, a) end, A23(), B23()),
  minimum = gc(function(a, b) return a:minimum(b) + mo.minimum(a, 0.5) end, A23(), B23()),
  where = gc(function(a, b) return mo.where(a:gt(0), a, b) + mo.where(b:gt(0), 2, b) end,
    A23(), B23()),
  masked_fill = gc(function(a) return a:masked_fill(T({1, 0, 1}), 5) end, A23()),
  dot = gc(function(a, b) return a:dot(b) + a:reshape(6):dot(b:reshape(6)) * 2 end, A23(), B23()),
  addcmul = gc(function(a, b, c) return a:addcmul(b, c, 0.5) + a:addcmul(2, b, c) end,
    A23(), B23(), P23()),
  addcdiv = gc(function(a, b, c) return a:addcdiv(b, c, 0.5) end, A23(), B23(), P23()),
  add_row_bias = gc(function(a, b) return a:add_row_bias(b) end, A23(), V3()),
  neg = gc(function(a) return a:neg() end, A23()),
  __unm = gc(function(a) return -a end, A23()),
  exp = gc(function(a) return a:exp() end, A23()),
  log = gc(function(a) return a:log() end, P23()),
  sqrt = gc(function(a) return a:sqrt() end, P23()),
  rsqrt = gc(function(a) return a:rsqrt() end, P23()),
  abs = gc(function(a) return a:abs() end, A23()),
  sin = gc(function(a) return a:sin() end, A23()),
  cos = gc(function(a) return a:cos() end, A23()),
  tan = gc(function(a) return a:tan() end, T({0.3, -1.2, 0.7})),
  tanh = gc(function(a) return a:tanh() end, A23()),
  sigmoid = gc(function(a) return a:sigmoid() end, A23()),
  relu = gc(function(a) return a:relu() end, A23()),
  log1p = gc(function(a) return a:log1p() end, P23()),
  expm1 = gc(function(a) return a:expm1() end, A23()),
  erf = gc(function(a) return a:erf() end, A23()),
  sign = gc(function(a) return a:sign() + a end, A23()),
  floor = gc(function(a) return a:floor() + a end, A23()),
  ceil = gc(function(a) return a:ceil() + a end, A23()),
  round = gc(function(a) return a:round() + a end, A23()),
  clamp = gc(function(a) return a:clamp(-0.5, 1.0) + a:clamp(nil, 0) end, A23()),
  sum = gc(function(a) return a:sum() + a:sum(2):sum() + a:sum(-2, true):sum() end, A23()),
  mean = gc(function(a) return a:mean(1) * 2 + a:mean() end, A23()),
  prod = gc(function(a) return a:prod(2, true) + a:prod() end, A23()),
  var = gc(function(a) return a:var(2) + a:var(1, false, true):sum() + a:var() end, A23()),
  std = gc(function(a) return a:std(2) + a:std(false) end, A23()),
  max = gc(function(a) return a:max(2) + a:max() + a:max(1, true):sum() end, A23()),
  min = gc(function(a) return a:min(1) * 2 + a:min() end, A23()),
  norm = gc(function(a) return a:norm() + a:norm(1) + a:norm(3, 2):sum() + a:norm(math.huge) end,
    A23()),
  logsumexp = gc(function(a) return a:logsumexp(2) + a:logsumexp(1, true):sum() end, A23()),
  softmax = gc(function(a) return a:softmax(2) * B23() end, A23()),
  log_softmax = gc(function(a) return a:log_softmax(1) * B23() end, A23()),
  cumsum = gc(function(a) return a:cumsum(2) * B23() end, A23()),
  sort = gc(function(a) return (a:sort(2)) * B23() + (a:sort(1, true)) end, A23()),
  topk = gc(function(a) return (a:topk(2, 2)) * T({1, 2}) end, A23()),
  reshape = gc(function(a) return a:reshape{3, 2} * T({1, 2}) end, A23()),
  view = gc(function(a) return a:view(6) end, A23()),
  squeeze = gc(function(a) return a:reshape{1, 6}:squeeze() end, A23()),
  unsqueeze = gc(function(a) return a:unsqueeze(2) * T({1, 2}) end, V3()),
  flatten = gc(function(a) return a:t():flatten() end, A23()),
  expand = gc(function(a) return a:expand(2, 3) * A23() end, V3()),
  contiguous = gc(function(a) return a:t():contiguous() end, A23()),
  clone = gc(function(a) return a:clone() end, A23()),
  to = function()
    local x = T({1, 2}):requires_grad_()
    local y = x:to("float32")
    lu.assertEquals(y.grad_fn.name, "to")
    y:sum():backward()
    lu.assertEquals(x.grad.dtype, "float64")
    lu.assertEquals(x.grad:totable(), {1, 1})
    lu.assertIs(x:to("float64"), x) -- the same tensor: nothing recorded
    lu.assertTrue(x.is_leaf)
  end,
  float = function()
    local x = T({1, 2}):requires_grad_()
    ;(x:float() * mo.tensor{3, 4}):sum():backward()
    lu.assertEquals(x.grad:totable(), {3, 4})
    lu.assertEquals(x.grad.dtype, "float64")
  end,
  double = function()
    local x = mo.tensor({1, 2}, {requires_grad = true})
    ;(x:double() * T({3, 4})):sum():backward()
    lu.assertEquals(x.grad:totable(), {3, 4})
    lu.assertEquals(x.grad.dtype, "float32")
  end,
  t = gc(function(a) return a:t() * T({1, 2}) end, A23()),
  transpose = gc(function(a) return a:transpose(1, 2) * T({1, 2}) end, A23()),
  permute = gc(function(a) return a:reshape{1, 2, 3}:permute(3, 1, 2) * T({1, 2}) end, A23()),
  select = gc(function(a) return a:select(2, 3) * 2 + a:select(1, 1):sum() end, A23()),
  narrow = gc(function(a) return a:narrow(2, 2, 2) end, A23()),
  __index = gc(function(a) return a[2] + a[1][2] end, A23()),
  __index_t = gc(function(a) return a[{{1, 2}, 3}]:sum() + a[{2, {2, 3}}]:sum() end, A23()),
  chunk = gc(function(a)
    local c = a:chunk(2, 2)
    return c[1]:sum() + c[2] * 3
  end, A23()),
  split = gc(function(a)
    local s = a:split({1, 2}, 2)
    return s[2] * s[2]
  end, A23()),
  cat = gc(function(a, b) return mo.cat({a, b, a}, 2) end, A23(), B23()),
  stack = gc(function(a, b) return mo.stack({a, b}, 2) * 2 end, A23(), B23()),
  index_select = gc(function(a) return a:index_select(2, IDX{3, 1, 3}) end, A23()),
  gather = gc(function(a) return a:gather(2, IDX{{1, 1}, {3, 2}}) end, A23()),
  scatter_add = gc(function(a, b) return a:scatter_add(2, IDX{{1, 1, 3}, {3, 2, 3}}, b) end,
    A23(), B23()),
  matmul = function()
    local M23, M34 = A23(), T({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {3, 4}) / 7
    local B = T({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {2, 2, 3}) / 9
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b) end, {M23, M34}))
    lu.assertTrue(gradcheck(function(a, b) return a:matmul(b) end, {V3(), M34}))
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b) end, {M23, V3()}))
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b) end, {V3(), T({1, 2, 3})}))
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b) end, {B, M34}))
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b:transpose(2, 3)) end, {B, B}))
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b, {trans_b = true, alpha = 2}) end,
      {M23, B23()}))
    lu.assertTrue(gradcheck(function(a, b) return mo.matmul(a, b, {trans_a = true}) end,
      {M23, B23()}))
  end,
}

local TestAutogradOps = {}

function TestAutogradOps.test_every_registered_op_has_a_gradcheck_case()
  local missing = {}
  for name in pairs(E.DEFS) do
    if CASES[name] == nil then missing[#missing + 1] = name end
  end
  table.sort(missing)
  lu.assertEquals(missing, {}, "differentiable ops without a gradcheck case in CASES")
end

-- Every function of the binding that the registry test below does not find in E.DEFS or
-- E.NONDIFF, with the reason it needs neither. A new function must be defined, declared
-- non-differentiable, or added here with its reason: it can never silently be neither.
local NOT_AN_OP = {
  -- kernels whose gradient is a fused node of moonopt.nn.functional (F.conv2d,
  -- F.max_pool2d, F.avg_pool2d, F.batch_norm call them with grad mode off and record their
  -- own node) or of a module call (nn.Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
  -- BatchNorm1d/2d: model(x) records one node whose backward is the module's). Dispatched
  -- (their results are marked when called directly on tensors needing grad).
  conv2d_forward = "fused", conv2d_backward = "fused", max_pool2d_forward = "fused",
  max_pool2d_backward = "fused", avg_pool2d_forward = "fused", avg_pool2d_backward = "fused",
  batch_norm_forward = "fused", batch_norm_backward = "fused",
  adaptive_avg_pool2d_forward = "fused", adaptive_avg_pool2d_backward = "fused",
  -- the nn kernels of the torch7 path (lua/binding/nn.c, registered without the
  -- dispatcher): F.linear, F.relu, F.gelu, F.dropout, F.layer_norm and the fused losses
  -- record a node around them; module calls record one around the module's backward
  nn_linear_forward = "fused", nn_linear_backward = "fused", nn_act_forward = "fused",
  nn_act_backward = "fused", nn_dropout_forward = "fused", nn_dropout_backward = "fused",
  nn_layernorm_forward = "fused", nn_layernorm_backward = "fused", nn_softmax_forward = "fused",
  nn_softmax_backward = "fused", nn_mse = "fused", nn_bce_logits = "fused",
  nn_cross_entropy = "fused", nn_flatten = "fused",
  -- return no tensor made from their arguments (numbers, booleans, strings, tables of
  -- sizes, or nothing): registered without the dispatcher ("plain") or with nothing to record
  shape = "plain", size = "plain", stride = "plain", numel = "plain", dim = "plain",
  is_contiguous = "plain", same_storage = "plain", get = "plain", item = "plain",
  totable = "plain", any = "plain", all = "plain", norm_many = "plain", __gc = "plain",
  __close = "plain", all_finite = "none", crc32 = "none", file_kind = "none", is_lean = "none",
  optim_check = "none", optim_info = "none", write_file = "none", ckpt_write = "none",
  ckpt_encode = "none", rng_get_state = "none", rng_set_state = "none",
  -- make tensors from no tensor argument (a file, a count)
  ckpt_read = "none", randperm = "none",
  -- write .grad in place (gradient utilities run between backward and step)
  clip_grad_norm = "none", clip_grad_value = "none",
  -- not dispatched, no tensor math: data helpers and the process
  augment_crop_flip = "none", augment_seed = "none", blas_get_threads = "none",
  blas_set_threads = "none", clock = "none", column_mean_std = "none", count_correct = "none",
  decode_idx = "none", gather_rows = "none", get_num_threads = "none", is_tensor = "none",
  isatty = "none", manual_seed = "none", mean_std = "none", normalize_ = "none",
  normalize_columns_ = "none", read_idx = "none", set_num_threads = "none", write_idx = "none",
}

-- Every function the dispatcher wraps (core._autograd.registered(): tensor methods,
-- metamethods, module functions) and every other function of moonopt.core is defined,
-- non-differentiable, in-place / a factory / the optimizer step (kinds the dispatcher
-- itself handles: never recorded), or in NOT_AN_OP; and NOT_AN_OP lists nothing stale.
function TestAutogradOps.test_every_binding_function_is_classified()
  local core = require "moonopt.core"
  local reg = core._autograd.registered()
  local names = {}
  for name, kind in pairs(reg) do names[name] = kind end
  for name, v in pairs(core) do
    if type(v) == "function" and names[name] == nil then names[name] = "undispatched" end
  end
  local handled = {inplace = true, factory = true, step = true}
  local missing, stale, wrong = {}, {}, {}
  for name, kind in pairs(names) do
    if not (E.DEFS[name] or E.NONDIFF[name] or handled[kind] or NOT_AN_OP[name]) then
      missing[#missing + 1] = name
    end
    -- a "plain" entry must really be registered without the dispatcher (t:dot was once
    -- plain while returning a tensor), and a plain function is never defined
    if (NOT_AN_OP[name] == "plain") ~= (kind == "plain") then wrong[#wrong + 1] = name end
    if kind == "plain" and E.DEFS[name] then wrong[#wrong + 1] = name end
  end
  for name in pairs(NOT_AN_OP) do
    if names[name] == nil then stale[#stale + 1] = name end
  end
  table.sort(missing)
  table.sort(stale)
  table.sort(wrong)
  lu.assertEquals(missing, {}, "binding functions neither defined, non-differentiable nor listed")
  lu.assertEquals(stale, {}, "NOT_AN_OP names no binding function")
  lu.assertEquals(wrong, {}, "plain (undispatched) functions and NOT_AN_OP disagree")
  -- the known kinds, spot-checked
  lu.assertEquals(reg.add_, "inplace")
  lu.assertEquals(reg.zeros, "factory")
  lu.assertEquals(reg.optim_step, "step")
  lu.assertEquals(reg.dot, "op")
  lu.assertEquals(reg.item, "plain")
end

function TestAutogradOps.test_every_registered_op_is_listed_in_autograd_md()
  local f = assert(io.open("docs/autograd.md", "r"))
  local doc = f:read("a")
  f:close()
  local section = doc:match("## What is differentiable(.-)\n## ")
  local missing = {}
  for name in pairs(E.DEFS) do
    local word = ({__add = "+", __sub = "-", __mul = "*", __div = "/", __pow = "^",
      __unm = "unary `-`", __index = "t[i]", __index_t = "t[{"})[name] or name
    if not section:find(word, 1, true) then missing[#missing + 1] = name end
  end
  table.sort(missing)
  lu.assertEquals(missing, {}, "ops missing from docs/autograd.md 'What is differentiable'")
end

for name, case in pairs(CASES) do
  TestAutogradOps["test_" .. name] = function()
    lu.assertNotNil(E.DEFS[name], name .. " is not in the registry")
    case()
  end
  if gc_of[case] then SECOND[name] = gc_of[case] end
end

-- Double backward: the gradient of <grad f(x), c> (a Hessian-vector product) checked by
-- central differences, for every op with a plain gc case: backward formulas record.
local TestDoubleBackward = {}
for name, spec in pairs(SECOND) do
  TestDoubleBackward["test_" .. name] = function()
    local function first(...)
      -- gradcheck's numerical pass runs this under no_grad: the inner gradient needs a graph
      local before = mo.autograd.set_grad_enabled(true)
      local xs = {}
      for k, x in ipairs{...} do xs[k] = x:requires_grad_() end
      local y = spec.f(table.unpack(xs))
      local w = mo.arange(y:numel(), D):reshape(y:shape()) * 0.3 + 0.2
      local gs = mo.autograd.grad((y * w):sum(), xs, {create_graph = true, allow_unused = true})
      local s = mo.zeros({}, D)
      for k, g in pairs(gs) do s = s + (g * (mo.arange(g:numel(), D):reshape(g:shape()) - k)):sum() end
      mo.autograd.set_grad_enabled(before)
      return s
    end
    local inputs = {}
    for k, x in ipairs(spec.inputs) do inputs[k] = x:detach() end
    lu.assertTrue(gradcheck(first, inputs))
  end
end

-- ---------------------------------------------------------------------------------------

local TestTape = {}

function TestTape.test_rosenbrock_gradient()
  local x = mo.tensor({-1.5, 2.0}, {dtype = "float64", requires_grad = true})
  local f = (1 - x[1]) ^ 2 + 100 * (x[2] - x[1] ^ 2) ^ 2
  lu.assertEquals(f:item(), 12.5)
  f:backward()
  lu.assertEquals(x.grad:totable(), {-155, -50})
end

function TestTape.test_flags()
  local x = mo.zeros({2}, {requires_grad = true})
  lu.assertTrue(x.requires_grad)
  lu.assertTrue(x.is_leaf)
  lu.assertNil(x.grad_fn)
  local y = x * 2
  lu.assertTrue(y.requires_grad)
  lu.assertFalse(y.is_leaf)
  lu.assertEquals(y.grad_fn.name, "mul")
  local z = mo.zeros(2) * 2
  lu.assertFalse(z.requires_grad)
  lu.assertNil(z.grad_fn)
  lu.assertIs(x:requires_grad_(false), x)
  lu.assertFalse(x.requires_grad)
  lu.assertFalse((x * 2).requires_grad)
  for _, f in ipairs{"ones", "randn", "rand", "empty"} do
    lu.assertTrue(mo[f]({2}, {requires_grad = true}).requires_grad, f)
  end
  lu.assertTrue(mo.tensor({1, 2}, {requires_grad = true}).requires_grad)
  lu.assertTrue(mo.full({2}, 1, {requires_grad = true}).requires_grad)
  lu.assertFalse(mo.ones({2}, {requires_grad = false}).requires_grad)
  fails("requires_grad must be a boolean", mo.ones, {2}, {requires_grad = 1})
  fails("flag must be a boolean", function() x:requires_grad_(1) end)
  fails("only a leaf's flag can change", function() y:requires_grad_(false) end)
end

function TestTape.test_detach_shares_memory_and_has_no_history()
  local x = mo.ones({3}, {requires_grad = true})
  local y = x * 2
  local d = y:detach()
  lu.assertFalse(d.requires_grad)
  lu.assertTrue(d.is_leaf)
  lu.assertTrue(d:same_storage(y))
  lu.assertFalse((d * 3).requires_grad)
end

function TestTape.test_accumulates_in_place_into_an_existing_grad()
  local x = mo.ones({3}, {requires_grad = true})
  local buf = mo.zeros(6)
  local g = buf:narrow(1, 4, 3) -- a view into a flat buffer, as nn modules' .grad
  x.grad = g
  ;(x * mo.tensor{1, 2, 3}):sum():backward()
  lu.assertIs(x.grad, g)
  lu.assertEquals(buf:totable(), {0, 0, 0, 1, 2, 3})
  ;(x * 2):sum():backward()
  lu.assertIs(x.grad, g)
  lu.assertEquals(buf:totable(), {0, 0, 0, 3, 4, 5})
end

function TestTape.test_new_grad_is_not_shared()
  local a = mo.ones({2}, {requires_grad = true})
  local b = mo.ones({2}, {requires_grad = true})
  ;(a + b):sum():backward()
  lu.assertFalse(a.grad:same_storage(b.grad))
  a.grad:add_(1)
  lu.assertEquals(b.grad:totable(), {1, 1})
end

function TestTape.test_broadcast_gradients_reduce_to_the_input_shape()
  local a = mo.ones({2, 3}, {requires_grad = true})
  local b = mo.ones({3}, {requires_grad = true})
  local c = mo.ones({2, 1}, {requires_grad = true})
  ;(a * b + c):sum():backward()
  lu.assertEquals(b.grad:totable(), {2, 2, 2})
  lu.assertEquals(c.grad:totable(), {{3}, {3}})
end

function TestTape.test_grad_through_shared_subexpression()
  local x = mo.tensor({2}, {dtype = "float64", requires_grad = true})
  local y = x * x
  local z = y * y + y -- x^4 + x^2
  z:sum():backward()
  lu.assertEquals(x.grad:totable(), {4 * 8 + 2 * 2})
end

function TestTape.test_no_grad()
  local x = mo.ones({2}, {requires_grad = true})
  local y, extra = mo.no_grad(function(a) return a * 2, 7 end, x)
  lu.assertFalse(y.requires_grad)
  lu.assertEquals(extra, 7)
  lu.assertTrue(mo.autograd.is_grad_enabled())
  fails("boom", mo.no_grad, function() error("boom") end)
  lu.assertTrue(mo.autograd.is_grad_enabled(), "mode restored after an error")
  lu.assertTrue(mo.autograd.set_grad_enabled(false))
  lu.assertFalse((x * 2).requires_grad)
  lu.assertFalse(mo.autograd.set_grad_enabled(true))
  lu.assertTrue((x * 2).requires_grad)
end

function TestTape.test_graph_is_freed_after_backward()
  local x = mo.ones({2}, {requires_grad = true})
  local y = x:exp()
  local node = y.grad_fn
  lu.assertTrue(rawequal(E.saved(node), y)) -- exp saves its result
  y:sum():backward()
  lu.assertNil(E.saved(node))
  lu.assertNil(node[2 * node.nin + 2]) -- nor its version
  lu.assertTrue(node.freed)
  -- (a node of the C fast path is marked by its metatable, not by a field of its own,
  -- and keeps its name for the error of a second backward)
  lu.assertNil(rawget(node, "freed"))
  lu.assertEquals(node.name, "exp")
  local y2 = x:exp()
  y2:sum():backward{retain_graph = true}
  lu.assertTrue(rawequal(E.saved(y2.grad_fn), y2))
  y2:sum():backward()
  lu.assertAlmostEquals(x.grad:totable()[1], 3 * math.exp(1), 1e-5)
end

function TestTape.test_graph_is_collectable()
  -- a result saved by its own node (exp saves its output): a cycle through the userdata's
  -- user value that Lua's collector frees
  local x = mo.ones({2}, {requires_grad = true})
  collectgarbage()
  collectgarbage()
  local live0 = require("moonopt.core")._autograd.live()
  local weak = setmetatable({}, {__mode = "v"})
  do
    local y = x:exp():exp()
    weak[1], weak[2] = y, y.grad_fn
  end
  collectgarbage()
  collectgarbage()
  lu.assertNil(weak[1])
  lu.assertNil(weak[2])
  lu.assertEquals(require("moonopt.core")._autograd.live(), live0)
end

-- Each recorded call's arguments wait in a frame while its C function runs
-- (lua/binding/autograd.c, push_frame / pop_frame); core._autograd.frames() counts them.
local AG = require("moonopt.core")._autograd

function TestTape.test_a_failed_call_leaves_no_frame_pinning_its_arguments()
  local x = mo.tensor({0.5, -1, 2}, D):requires_grad_()
  local weak = setmetatable({}, {__mode = "v"})
  for _ = 1, 300 do -- more failures than the frames could hold if they piled up
    local arg = mo.randn({16}, {requires_grad = true})
    weak[1] = arg
    local ok, err = pcall(function() return arg:view{5} end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "view")
  end
  lu.assertEquals(AG.frames(), 1) -- the last failed call's, until the next recorded call
  local y = (x:exp() * x):sum()
  lu.assertEquals(AG.frames(), 0)
  collectgarbage()
  collectgarbage()
  lu.assertNil(weak[1]) -- its frame no longer holds the argument
  y:backward()
  for i, v in ipairs({0.5, -1, 2}) do
    lu.assertAlmostEquals(x.grad:get(i), (1 + v) * math.exp(v), 1e-12)
  end
end

function TestTape.test_failures_at_growing_depths_are_dropped_by_a_shallower_call()
  local x = mo.tensor({0.5, -1, 2}, D):requires_grad_()
  -- each failure is one protected call deeper than the one before: a later call cannot
  -- tell those frames from callers still running, so they stay until a shallower call
  local function dive(d)
    pcall(function() return x:view{5} end)
    if d > 0 then pcall(dive, d - 1) end
  end
  dive(30)
  lu.assertTrue(AG.frames() > 1)
  local y = (x * 2):sum()
  lu.assertEquals(AG.frames(), 0)
  y:backward()
  lu.assertEquals(x.grad:totable(), {2, 2, 2})
end

function TestTape.test_recorded_calls_nest_in_finalizers()
  -- a finalizer that records (and fails to record) ops runs at nearly every allocation,
  -- so inside recorded calls too: every node must still be right
  local x = mo.tensor({0.5, -1, 2}, D):requires_grad_()
  local inner, deepest, failed, chain = {}, 0, 0, true
  local mt = {}
  mt.__gc = function()
    if chain then setmetatable({}, mt) end
    deepest = math.max(deepest, AG.frames())
    inner[#inner + 1] = (x * 3):sum()
    if not pcall(function() return x:view{5} end) then failed = failed + 1 end
  end
  local saved_mode = collectgarbage("incremental", 10, 400, 63) -- a cycle per allocation
  collectgarbage()
  setmetatable({}, mt)
  local outs = {}
  for k = 1, 3 do outs[k] = (x:exp() * x):sum() end
  chain = false
  collectgarbage("incremental", 200, 100, 13)
  if saved_mode == "generational" then collectgarbage("generational") end
  collectgarbage()
  collectgarbage()
  local _ = x * 1 -- drops a frame a failure in a finalizer run outside any call left
  lu.assertEquals(AG.frames(), 0)
  lu.assertTrue(deepest >= 1, "no finalizer ran inside a recorded call")
  lu.assertTrue(#inner > 0)
  lu.assertEquals(failed, #inner)
  for _, o in ipairs(outs) do o:backward() end
  for _, v in ipairs(inner) do v:backward() end
  for i, v in ipairs({0.5, -1, 2}) do
    local want = 3 * (1 + v) * math.exp(v) + 3 * #inner
    lu.assertAlmostEquals(x.grad:get(i), want, 1e-12 * math.abs(want))
  end
end

function TestTape.test_declared_saves_are_the_same_from_c_and_from_lua()
  -- a definition's declared saves run in C (the dispatcher's fast path) and, on the
  -- recorder's Lua path, as engine.lua's make_save: both must give a node the same fields
  local x = mo.tensor({0.5, -1, 2, 1.5, 0.25, -2}, D):reshape{2, 3}:requires_grad_()
  local w = mo.tensor({1, 2, 3}, D)
  local cases = {
    {"sum", {x}}, {"sum", {x, 2}}, {"sum", {x, -1, true}}, {"sum", {x, -2, false}},
    {"mean", {x, 1, true}}, {"mean", {x}}, {"view", {x, 3, 2}}, {"__index", {x, 2}},
    {"mul", {x, w}}, {"add", {w, x}}, {"div", {x, 2}},
  }
  local fields = {"dim", "keepdim", "shape", "sa", "sb", "arg2", "nsaved"}
  for _, c in ipairs(cases) do
    local name, args = c[1], c[2]
    local fn = name == "__index" and function(t, k) return t[k] end or x[name]
    local viac = fn(table.unpack(args)) -- recorded by the C dispatcher
    local out = mo.no_grad(function() return fn(table.unpack(args)) end)
    local req = 0
    for k, v in ipairs(args) do
      if mo.is_tensor(v) and v.requires_grad then req = req | (1 << (k - 1)) end
    end
    E.recorder(name, args, #args, req, 0, out) -- the Lua path, on an unrecorded result
    local a, b = viac.grad_fn, out.grad_fn
    for _, f in ipairs(fields) do
      lu.assertEquals(b[f], a[f], name .. " " .. f)
    end
    local sa, sb = {E.saved(a)}, {E.saved(b)}
    for k = 1, a.nsaved or 0 do
      local va, vb = sa[k], sb[k]
      if va == viac then va, vb = "result", vb == out and "result" or vb end
      lu.assertTrue(rawequal(va, vb), name .. " saved " .. k)
    end
  end
end

-- Runs f with the definition of the binding function `name` replaced by `spec` (through
-- engine.defop), then puts the original back.
local function with_def(name, spec, f)
  local old, fast = E.DEFS[name], require("moonopt.core")._autograd.fast()
  local old_fast = fast[name]
  E.defop(spec)
  local ok, err = pcall(f)
  E.DEFS[name], fast[name] = old, old_fast
  if not ok then error(err, 0) end
end

function TestTape.test_definitions_beyond_the_packed_form_take_the_lua_path()
  -- the C fast path reads a definition's positions packed into one integer (at most 11, each
  -- 0 to 31); one that does not fit records through the Lua save or the Lua recorder, with
  -- the same node
  local back = E.DEFS.exp.backward
  local saves = {}
  for k = 1, 12 do saves[k] = 0 end
  local x = mo.tensor({0.5, -1, 2}, D):requires_grad_()
  with_def("exp", {name = "exp", inputs = {1}, saves = saves, backward = back}, function()
    lu.assertFalse(E.DEFS.exp.fast[3], "12 saves are not packed")
    local y = x:exp()
    lu.assertEquals(y.grad_fn.nsaved, 12)
    for _, v in ipairs({E.saved(y.grad_fn)}) do lu.assertTrue(rawequal(v, y)) end
    y:sum():backward()
  end)
  lu.assertAlmostEquals(x.grad:get(3), math.exp(2), 1e-12)
  lu.assertNil(E.defop{name = "no_such_binding", inputs = {1, 32}, backward = back}.fast)
  lu.assertNil(E.defop{name = "no_such_binding", inputs = {1.5}, backward = back}.fast)
  E.DEFS.no_such_binding = nil
  require("moonopt.core")._autograd.fast().no_such_binding = nil
  -- a damaged entry of the C side's table is not read past its bounds: the Lua path records
  x.grad = nil
  with_def("exp", {name = "exp", inputs = {1}, saves = {0}, backward = back}, function()
    local fast = require("moonopt.core")._autograd.fast()
    fast.exp = {fast.exp[1], -1, -1, false} -- every count field 15
    local y = x:exp()
    lu.assertTrue(rawequal(E.saved1(y.grad_fn), y))
    y:sum():backward()
  end)
  lu.assertAlmostEquals(x.grad:get(1), math.exp(0.5), 1e-12)
end

function TestTape.test_shape_keys()
  -- declared saves keep shapes as keys (interned strings, no table per recorded op)
  local x = mo.zeros({2, 3, 4}, D)
  local k = AG.shape_key(x)
  lu.assertEquals(type(k), "string")
  lu.assertTrue(rawequal(k, AG.shape_key(mo.ones({2, 3, 4}, D))), "equal shapes, one key")
  lu.assertEquals(AG.sizes(k), {2, 3, 4})
  lu.assertEquals(AG.sizes(AG.shape_key(mo.tensor(1.5, D))), {})
  lu.assertEquals(AG.sizes(AG.shape_key(x:view(24):view(1, 2, 1, 3, 4))), {1, 2, 1, 3, 4})
  lu.assertEquals(AG.bshape(mo.ones({3}, D), x), AG.shape_key(mo.ones({3}, D)))
  lu.assertFalse(AG.bshape(x, x))
  lu.assertNil(AG.bshape(2, x))
  local r = x:requires_grad_():sum(2)
  lu.assertEquals(AG.sizes(r.grad_fn.shape), {2, 3, 4})
  fails("bad argument #1 to 'sizes' (a shape key expected, got another string)", AG.sizes, "abc")
  fails("bad argument #1 to 'sizes' (a shape key expected, got table)", AG.sizes, {2, 3})
  fails("bad argument #1 to 'shape_key' (moonopt.Tensor expected, got table)", AG.shape_key, {})
end

local TestFunctional = {}

function TestFunctional.test_grad_and_value_and_grad_with_structures()
  local f = function(x, p) return (x * x * p.a):sum() + p.b[1]:sum() * 3 end
  local x = mo.tensor({1, 2, 3}, D)
  local p = {a = mo.tensor({2, 2, 2}, D), b = {mo.ones({2}, D)}}
  lu.assertEquals(mo.grad(f)(x, p):totable(), {4, 8, 12})
  local v, gs = mo.value_and_grad(f, {1, 2})(x, p)
  lu.assertEquals(v:item(), 2 + 8 + 18 + 6)
  lu.assertFalse(v.requires_grad)
  lu.assertEquals(gs[1]:totable(), {4, 8, 12})
  lu.assertEquals(gs[2].a:totable(), {1, 4, 9})
  lu.assertEquals(gs[2].b[1]:totable(), {3, 3})
  local g2 = mo.grad(f, 2)(x, p)
  lu.assertEquals(g2.a:totable(), {1, 4, 9})
  -- the arguments are left alone
  lu.assertNil(x.grad)
  lu.assertFalse(x.requires_grad)
  lu.assertNil(p.a.grad)
  -- an input the value does not depend on gets zeros
  lu.assertEquals(mo.grad(function(_, b) return b:sum() end)(x, x):totable(), {0, 0, 0})
end

function TestFunctional.test_grad_composes_with_itself()
  local x = mo.tensor({1, 2, 3}, D)
  local d1 = mo.grad(function(y) return (y ^ 3):sum() end)
  local d2 = mo.grad(function(y) return d1(y):sum() end)
  lu.assertEquals(d2(x):totable(), {6, 12, 18})
end

function TestFunctional.test_transform_errors()
  fails("grad: bad argument #1 (function expected, got 3)", mo.grad, 3)
  fails("grad: argnums must be a positive integer or a list of them, got 0", mo.grad, print, 0)
  local g = mo.grad(function(x) return x * 2 end)
  fails("grad: the function must return a one-element tensor, got shape {3}", g, mo.ones(3, D))
  fails("value_and_grad: argument #1 must be a tensor or a table of tensors, got 3",
    mo.value_and_grad(print), 3)
  fails("grad: argnums names argument #2, but only 1 were given", mo.grad(print, 2), mo.ones(1))
end

function TestFunctional.test_autograd_grad()
  local x = mo.tensor({1.5}, {dtype = "float64", requires_grad = true})
  local y = mo.tensor({2}, {dtype = "float64", requires_grad = true})
  local z = (x ^ 4 * y):sum()
  local g1 = mo.autograd.grad(z, x, {create_graph = true})
  lu.assertEquals(g1:totable(), {4 * 1.5 ^ 3 * 2})
  lu.assertNil(x.grad) -- grad never touches .grad
  local gs = mo.autograd.grad(g1:sum(), {x, y})
  lu.assertEquals(gs[1]:totable(), {12 * 1.5 ^ 2 * 2})
  lu.assertEquals(gs[2]:totable(), {4 * 1.5 ^ 3})
  -- an intermediate result as input, grad_outputs
  local a = mo.tensor({1, 2}, {dtype = "float64", requires_grad = true})
  local b = a * 3
  local c = b * b
  lu.assertEquals(mo.autograd.grad(c, b, {grad_outputs = mo.tensor({1, 10}, D)}):totable(),
    {6, 120})
  local u = mo.ones({2}, {requires_grad = true})
  fails("grad: inputs[2] is not reached from the outputs (pass allow_unused = true",
    mo.autograd.grad, (a * 2):sum(), {a, u})
  local r = mo.autograd.grad((a * 2):sum(), {a, u}, {allow_unused = true})
  lu.assertEquals(r[1]:totable(), {2, 2})
  lu.assertNil(r[2])
  fails("grad: inputs[1] does not require grad", mo.autograd.grad, (a * 2):sum(), mo.ones(2))
  fails("grad: unknown option string \"retain\"", mo.autograd.grad, (a * 2):sum(), a,
    {retain = true})
end

function TestFunctional.test_backward_with_create_graph()
  local x = mo.tensor({2}, {dtype = "float64", requires_grad = true})
  local y = (x ^ 3):sum()
  y:backward(nil, {create_graph = true})
  lu.assertEquals(x.grad:totable(), {12})
  lu.assertTrue(x.grad.requires_grad)
  local g = x.grad
  x.grad = nil
  g:sum():backward()
  lu.assertEquals(x.grad:totable(), {12}) -- d(3x^2)/dx = 6x
end

function TestFunctional.test_hvp()
  local x = mo.tensor({1, 2, 3}, D)
  local fx, hv = mo.autograd.hvp(function(t) return (t ^ 3):sum() end, x, mo.tensor({1, 0, 2}, D))
  lu.assertEquals(fx:item(), 36)
  lu.assertEquals(hv:totable(), {6, 0, 36})
  local _, hvs = mo.autograd.hvp(function(a, b) return (a * b):sum() end,
    {mo.ones(2, D), mo.ones(2, D)}, {mo.tensor({1, 2}, D), mo.tensor({3, 4}, D)})
  lu.assertEquals(hvs[1]:totable(), {3, 4})
  lu.assertEquals(hvs[2]:totable(), {1, 2})
  -- linear in x: H = 0
  local _, h0 = mo.autograd.hvp(function(t) return (t * 2):sum() end, x, x)
  lu.assertEquals(h0:totable(), {0, 0, 0})
  fails("hvp: v[1] has shape {2}, inputs[1] {3}", mo.autograd.hvp, print, x, mo.ones(2, D))
end

function TestFunctional.test_fused_op_with_E_record()
  -- the pattern docs/autograd.md gives for a fused kernel (mo.nn.functional builds on it):
  -- the forward runs unrecorded, one node carries a hand-written backward
  local function linear(x, w, b)
    local y = mo.no_grad(function() return mo.matmul(x, w, {trans_b = true}) + b end)
    if E.needs_grad(x, w, b) then
      local node = E.record("linear", {x, w, b}, {y}, function(node, gy)
        local xs, ws = E.saved(node)
        return mo.matmul(gy, ws), mo.matmul(gy, xs, {trans_a = true}), gy:sum(1)
      end)
      E.save(node, x, w)
    end
    return y
  end
  local x = T({1, 2, 3, 4, 5, 6}, {2, 3})
  local w, b = B23():t():contiguous():t(), V3():narrow(1, 1, 2)
  lu.assertTrue(gradcheck(function(xx, ww, bb) return linear(xx, ww, bb):tanh() end, {x, w, b}))
  local wr = w:clone():requires_grad_()
  local y = linear(x, wr, b)
  lu.assertEquals(y.grad_fn.name, "linear")
  lu.assertNil(linear(x, w, b).grad_fn)
  wr:mul_(2)
  fails("backward: a tensor that linear saved for backward", function() y:sum():backward() end)
end

function TestFunctional.test_newton_example_beats_lbfgs()
  -- examples/newton.lua, small: Newton-CG on autograd's Hessian-vector products takes
  -- fewer iterations than L-BFGS on the 20-d Rosenbrock function
  local newton, lbfgs = assert(loadfile("examples/newton.lua"))(20, "quiet")
  lu.assertTrue(newton > 0 and newton < lbfgs, string.format("Newton-CG %d, L-BFGS %d", newton,
    lbfgs))
end

function TestFunctional.test_gradcheck_reports_the_element()
  local Bad = mo.autograd.Function{
    forward = function(_, a) return a * 2 end,
    backward = function(_, g) return g * 3 end,
  }
  local msg = fails("gradcheck: inputs[1] element {1, 1} (output element 1): analytical gradient 3,"
    .. " numerical 2", function()
      local ok = gradcheck(function(a) return Bad(a) end, {mo.ones({2, 2}, D)})
      return ok
    end)
  lu.assertStrContains(msg, "test_autograd.lua:")
  fails("gradcheck: inputs[1] is float32; gradcheck needs float64 inputs", gradcheck,
    function(a) return a end, {mo.ones(2)})
  fails("gradcheck: unknown option string \"tol\"", gradcheck, function(a) return a end,
    {mo.ones(2, D)}, {tol = 1})
  lu.assertTrue(gradcheck(function(a) return a * 2 end, mo.ones(3, D), {eps = 1e-5, atol = 1e-6}))
end

function TestFunctional.test_custom_function()
  local Cube = mo.autograd.Function{
    name = "Cube",
    forward = function(ctx, a, k)
      ctx:save_for_backward(a)
      ctx.k = k
      return a * a * a * k
    end,
    backward = function(ctx, g)
      local a = ctx.saved_tensors[1]
      return g * a * a * 3 * ctx.k, nil
    end,
  }
  local w = mo.tensor({3}, {dtype = "float64", requires_grad = true})
  local y = Cube(w, 2)
  lu.assertEquals(y.grad_fn.name, "Cube")
  y:sum():backward()
  lu.assertEquals(w.grad:totable(), {54})
  lu.assertTrue(gradcheck(function(a) return Cube.apply(a, 0.5) * a end, {mo.tensor({1, 2}, D)}))
  -- without an input needing grad nothing is recorded
  lu.assertNil(Cube(mo.ones(1), 1).grad_fn)
  -- two outputs; a missing gradient comes in as zeros
  local Split = mo.autograd.Function{
    forward = function(_, a) return a * 2, a * 3 end,
    backward = function(_, g1, g2) return g1 * 2 + g2 * 3 end,
  }
  local x = mo.ones({2}, {requires_grad = true})
  local _, q = Split(x)
  q:sum():backward()
  lu.assertEquals(x.grad:totable(), {3, 3})
  -- a wrong shape and an in-place change of a saved tensor are caught
  local Wrong = mo.autograd.Function{
    forward = function(_, a) return a:sum() end,
    backward = function(_, g) return g end,
  }
  fails("backward: Function backward returned a gradient of shape {} for input #1 of shape {2}",
    function() Wrong(x):backward() end)
  local s = mo.ones({2}, {requires_grad = true})
  local c = Cube(s, 1)
  s:mul_(2)
  fails("backward: a tensor that Cube saved for backward", function() c:sum():backward() end)
  fails("Function: expects {forward = function(ctx, ...), backward = function(ctx, grad)}",
    mo.autograd.Function, {forward = print})
end

local TestErrors = {}

function TestErrors.test_backward_twice()
  local x = mo.ones({2}, {requires_grad = true})
  local y = (x * 3):sum()
  y:backward()
  fails("backward: the graph through sum was already freed by an earlier backward; pass "
    .. "{retain_graph = true}", function() y:backward() end)
end

function TestErrors.test_non_scalar()
  local x = mo.ones({2}, {requires_grad = true})
  local msg = fails("backward: output of shape {2} (made by mul) is not a scalar: pass grad_out",
    function() (x * 3):backward() end)
  lu.assertStrContains(msg, "test_autograd.lua:") -- the caller's line
  local y = x * 3
  y:backward(mo.tensor{1, 2})
  lu.assertEquals(x.grad:totable(), {3, 6})
  fails("backward: grad_out has shape {3}, the output {2}", function() y:backward(mo.ones(3)) end)
end

function TestErrors.test_not_requiring_grad()
  fails("backward: the tensor does not require grad", function() mo.ones(1):backward() end)
end

function TestErrors.test_in_place_change_of_a_saved_tensor()
  local x = mo.ones({3}, {requires_grad = true})
  local y = x:exp()
  local z = (y * y):sum() -- mul saved y
  mo.no_grad(function() y:add_(1) end)
  fails("backward: a tensor that mul saved for backward (saved value #1, of shape {3}) was "
    .. "changed in place afterwards (version 1, expected 0)", function() z:backward() end)
  -- a leaf changed in place after it was saved (as an optimizer step would)
  local w = mo.ones({3}, {requires_grad = true})
  local l = (w * w):sum()
  w:mul_(2)
  fails("saved for backward", function() l:backward() end)
  -- through a view: the counter is the storage's
  local v = mo.ones({4}, {requires_grad = true})
  local l2 = (v * v):sum()
  mo.no_grad(function() v:narrow(1, 1, 2):fill_(3) end) -- a view of a leaf is recorded
  fails("saved for backward", function() l2:backward() end)
end

function TestErrors.test_versions_bump_for_every_in_place_write()
  local t = mo.zeros(4)
  local v0 = t._version
  t:add_(1); t:mul_(2); t:fill_(1); t:zero_(); t:copy_(mo.ones(4)); t[1] = 3; t[{{1, 2}}] = 1
  t:uniform_(); t:normal_(); t:set(2, 1); t:clamp_(0, 1)
  t:scatter_add_(1, mo.tensor{1}, mo.tensor{1})
  lu.assertEquals(t._version - v0, 12)
  lu.assertEquals(t:narrow(1, 1, 2)._version, t._version) -- shared by views
  local s = t + 1
  lu.assertEquals(s._version, 0)
end

function TestErrors.test_optimizer_step_bumps_versions()
  local w = mo.ones({3}, {requires_grad = true})
  local l = (w * w):sum()
  l:backward{retain_graph = true}
  local opt = mo.optim.SGD({w}, {lr = 0.1})
  opt:step()
  fails("saved for backward", function() l:backward() end)
end

function TestErrors.test_non_differentiable_ops()
  local x = mo.tensor({1, 3, 2}, {requires_grad = true})
  fails("backward: argmax is not differentiable", function() x:argmax():backward() end)
  fails("backward: gt is not differentiable", function() (x:gt(1) * 2):sum():backward() end)
  local _, idx = x:sort()
  fails("backward: sort is not differentiable", function() idx:sum():backward() end)
  -- a mask is a constant next to a differentiable path
  ;(x * x:gt(1)):sum():backward()
  lu.assertEquals(x.grad:totable(), {0, 1, 1})
end

function TestErrors.test_in_place_on_a_recorded_result()
  local x = mo.ones({2}, {requires_grad = true})
  local y = x * 2
  fails("add_: in-place operations are not recorded by autograd, and self was made by a "
    .. "recorded op (it has a grad_fn); use the out-of-place form add", function() y:add_(1) end)
  fails("__newindex: in-place operations are not recorded", function() y[1] = 5 end)
  local t = mo.zeros(2)
  fails("copy_: argument #1 was made by a recorded op (it has a grad_fn), but in-place operations "
    .. "are not recorded by autograd; use the out-of-place form copy", function() t:copy_(y) end)
  fails("__newindex: argument #2 was made by a recorded op", function() t[1] = x[1] end)
  x:copy_(y * 0 + 1) -- into a leaf: a parameter update (optimizers restore backups so)
  t:copy_(x) -- a leaf's values are read as a constant (optimizers back parameters up so)
  lu.assertEquals(t:totable(), {1, 1})
  lu.assertFalse(t.requires_grad)
  -- allowed: on leaves, and anything under no_grad
  x:add_(1)
  lu.assertEquals(x:totable(), {2, 2})
  mo.no_grad(function() y:add_(1) end)
  lu.assertEquals(y:totable(), {3, 3})
end

function TestErrors.test_argument_errors_keep_their_numbers()
  -- the dispatcher calls the C function itself: messages are the unwrapped ones
  local x = mo.ones({2}, {requires_grad = true})
  fails("bad argument #1 to 'sum' (dimension 3 out of range", function() return x:sum(3) end)
  fails("bad argument #1 to 'add' (moonopt.Tensor or number expected, got table)",
    function() return x:add({}) end)
end

return {TestAutogradOps = TestAutogradOps, TestDoubleBackward = TestDoubleBackward,
  TestTape = TestTape, TestFunctional = TestFunctional, TestErrors = TestErrors}
