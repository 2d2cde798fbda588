--- moonopt.nn.functional (mo.nn.functional, `local F = mo.nn.functional`): the nn layers
-- and losses as functions of tensors, recorded on the autograd tape.
--
--   F.linear(x, w [, b])   F.relu(x)   F.gelu(x [, {approximate = "none"}])   F.sigmoid(x)
--   F.tanh(x)   F.softmax(x [, dim = -1])   F.log_softmax(x [, dim = -1])
--   F.dropout(x [, p = 0.5 [, training = true]])   (or {p =, training =})
--   F.layer_norm(x, normalized_shape [, weight [, bias [, eps = 1e-5]]])
--   F.cross_entropy(logits, target [, {reduction = "mean", label_smoothing = 0, weight,
--                   ignore_index}])
--   F.nll_loss(log_probs, target [, {reduction, weight, ignore_index}])   F.mse_loss(x, t [, {reduction}])
--   F.l1_loss(x, t [, {reduction}])   F.smooth_l1_loss(x, t [, {reduction, beta = 1}])
--   F.binary_cross_entropy_with_logits(x, t [, {reduction}])
--   F.conv2d(x, w [, b [, {stride, padding, dilation, groups}]])
--   F.max_pool2d(x, kernel_size [, {stride = kernel_size, padding = 0}])
--   F.avg_pool2d(x, kernel_size [, {stride, padding, count_include_pad = true}])
--   F.batch_norm(x, running_mean, running_var [, {weight, bias, training = false,
--                momentum = 0.1, eps = 1e-5}])
--
-- reduction is "mean" (default), "sum" or "none"; targets of cross_entropy and nll_loss
-- are 1-based class indices (a Lua table or a tensor of B values). Sizes, strides and
-- paddings are a number or a {h, w} pair.
--
-- How each is computed (docs/autograd.md "nn and autograd"):
--   * sigmoid, tanh, softmax, log_softmax, nll_loss, l1_loss, smooth_l1_loss are tensor
--     ops: differentiable twice, both dtypes.
--   * linear, relu, gelu, dropout, layer_norm and the fused losses run the nn kernels
--     (lua/binding/nn.c) forward and record ONE node; their backward calls the kernels'
--     backward (linear's and dropout's are tensor ops, and relu's and the losses' switch to
--     tensor ops under create_graph, so those differentiate twice). gelu runs its kernel
--     in both dtypes and also switches to tensor ops under create_graph. float64 inputs of
--     the others, and reduction = "none", go through the same formulas written with tensor
--     ops.
--   * conv2d, max_pool2d, avg_pool2d, batch_norm run the conv kernels (both dtypes) and
--     record one node whose backward calls their backward kernels.
-- A backward that calls a C kernel is not differentiable again: under create_graph it
-- raises, naming the function, rather than return a gradient without its graph.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local E = require "moonopt.autograd.engine"

local api, fail, show = apierror.api, apierror.fail, apierror.show
local is_tensor, grad_mode = core.is_tensor, E.grad_mode
local needs_grad, record, save, wants = E.needs_grad, E.record, E.save, E.wants
local saved, saved1 = E.saved, E.saved1
local grad_sink = E.grad_sink

local linear_forward, linear_backward = core.nn_linear_forward, core.nn_linear_backward
local act_forward, act_backward = core.nn_act_forward, core.nn_act_backward
local ln_forward, ln_backward = core.nn_layernorm_forward, core.nn_layernorm_backward
local dropout_forward = core.nn_dropout_forward
local nn_mse, nn_bce, nn_ce = core.nn_mse, core.nn_bce_logits, core.nn_cross_entropy

local F = {}

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

local function check_tensor(fname, what, v)
  if not is_tensor(v) then
    fail("%s: %s must be a moonopt.Tensor, got %s", fname, what, show(v))
  end
  return v
end

local function opt_tensor(fname, what, v)
  if v ~= nil then check_tensor(fname, what, v) end
  return v
end

local function is_f32(...)
  for k = 1, select("#", ...) do
    local t = select(k, ...)
    if t ~= nil and t.dtype ~= "float32" then return false end
  end
  return true
end

local function same_dtype(fname, x, what, t)
  if t ~= nil and t.dtype ~= x.dtype then
    fail("%s: %s is %s but the input is %s (one dtype per call)", fname, what, t.dtype, x.dtype)
  end
end

-- Runs the (dispatched) C function f with grad mode off: it records nothing and marks
-- nothing; its error, positionless, passes on.
local raw = E.no_grad

-- Raised by a backward made of C kernel calls when create_graph asks for its graph.
local function no_double(name)
  if grad_mode() then
    error(name .. ": double backward (create_graph) through its C kernel is not supported;"
      .. " use float64 inputs (computed with differentiable tensor ops) where the function"
      .. " has that path", 0)
  end
end

local REDUCTIONS = {mean = core.NN_MEAN, sum = core.NN_SUM, none = false}

local function reduction(fname, r)
  if r == nil then return "mean" end
  if REDUCTIONS[r] == nil then
    fail("%s: reduction must be 'mean', 'sum' or 'none', got %s", fname, show(r))
  end
  return r
end

local function reduce(l, r)
  if r == "mean" then return l:mean() end
  if r == "sum" then return l:sum() end
  return l
end

-- A positive (or, with lo = 0, non-negative) integer or {h, w} pair -> h, w.
local function pair(fname, what, v, lo)
  if type(v) == "table" then
    if #v ~= 2 then fail("%s: %s must be a number or a {h, w} pair, got %s", fname, what, show(v)) end
    return apierror.check_int(fname, what, v[1], lo), apierror.check_int(fname, what, v[2], lo)
  end
  local i = apierror.check_int(fname, what, v, lo)
  return i, i
end

local function loss_opts(fname, opts, extra)
  local known = {reduction = true}
  for k in pairs(extra or {}) do known[k] = true end
  opts = apierror.check_options(fname, opts, known)
  return opts, reduction(fname, opts.reduction)
end

local function check_pair_shapes(fname, x, t)
  if not apierror.same_shape(x, t) then
    fail("%s: input %s and target %s have different shapes", fname, apierror.shape_str(x),
         apierror.shape_str(t))
  end
  same_dtype(fname, x, "target", t)
end

-- ---------------------------------------------------------------------------------------
-- Layers
-- ---------------------------------------------------------------------------------------

--- linear(x, w [, b]) = x w^T + b: x {*, in}, w {out, in}, b {out}.
function F.linear(x, w, b)
  local fname = "F.linear"
  check_tensor(fname, "input", x)
  check_tensor(fname, "weight", w)
  opt_tensor(fname, "bias", b)
  local xs, ws = x:shape(), w:shape()
  if #ws ~= 2 or #xs < 1 or xs[#xs] ~= ws[2] then
    fail("%s: input %s does not match weight %s (in_features)", fname, apierror.shape_str(x),
         apierror.shape_str(w))
  end
  if b and (b:dim() ~= 1 or b:shape()[1] ~= ws[1]) then
    fail("%s: bias %s does not match weight %s (out_features)", fname, apierror.shape_str(b),
         apierror.shape_str(w))
  end
  same_dtype(fname, x, "weight", w)
  same_dtype(fname, x, "bias", b)
  if #xs ~= 2 or not is_f32(x) then
    local y = x:matmul(w:t())
    if b then y = y + b end
    return y
  end
  -- the fused kernel: one gemm, then the bias in the same pass over y
  local y = linear_forward(x, w, b, core.NN_ACT_NONE, 0, nil)
  if needs_grad(x, w, b) then
    -- backward: when the weight and the bias are parameters whose .grad the kernel can
    -- add into (E.grad_sink: no create_graph, not mo.autograd.grad), the fused kernel
    -- accumulates dw += g^T x, db += colsum g in place (no fresh gradient tensors per
    -- step); otherwise tensor ops (the same gemms), which record under create_graph:
    -- linear differentiates twice
    local node = record("linear", {x, w, b}, {y}, function(node, g)
      local sx, sw = saved(node)
      if grad_sink(node, 2) and (b == nil or grad_sink(node, 3)) then
        local gi = linear_backward(sx:contiguous(), g:contiguous(), sw, b, nil, wants(node, 1))
        return gi or nil, nil, nil
      end
      return wants(node, 1) and g:matmul(sw) or nil, wants(node, 2) and g:t():matmul(sx) or nil,
             wants(node, 3) and g:sum(1) or nil
    end, 3)
    save(node, x, w)
  end
  return y
end

--- relu(x): float32 through the nn kernels (one pass each way; the tensor op's backward,
-- g * (y > 0), makes two), recorded as one node; under create_graph its backward is that
-- tensor expression, so relu differentiates twice. float64: the tensor op.
function F.relu(x)
  check_tensor("F.relu", "input", x)
  if not is_f32(x) then return x:relu() end
  local y = act_forward(x:contiguous(), core.NN_ACT_RELU, 0, nil)
  if needs_grad(x) then
    local node = record("relu", {x}, {y}, function(node, g)
      local sy = saved1(node)
      if grad_mode() then return g * sy:gt(0) end
      return act_backward(sy, g:contiguous(), core.NN_ACT_RELU, 0, nil)
    end)
    save(node, y)
  end
  return y
end

function F.sigmoid(x)
  return check_tensor("F.sigmoid", "input", x):sigmoid()
end

function F.tanh(x)
  return check_tensor("F.tanh", "input", x):tanh()
end

local function dim_arg(fname, dim)
  if type(dim) == "table" then dim = apierror.check_options(fname, dim, {dim = true}).dim end
  if dim == nil then return -1 end
  local d = apierror.to_int(dim)
  if d == nil or d == 0 then
    fail("%s: dim must be a non-zero integer (1-based, negative from the end), got %s", fname,
         show(dim))
  end
  return d
end

--- softmax(x [, dim = -1]) along dim (1-based; or {dim = d}).
function F.softmax(x, dim)
  check_tensor("F.softmax", "input", x)
  return x:softmax(dim_arg("F.softmax", dim))
end

function F.log_softmax(x, dim)
  check_tensor("F.log_softmax", "input", x)
  return x:log_softmax(dim_arg("F.log_softmax", dim))
end

local SQRT_2_OVER_PI = math.sqrt(2 / math.pi)

-- gelu'(x) in tensor ops (so that it differentiates again): Phi(x) + x phi(x) for the exact
-- gelu; for the tanh form with u = c (x + 0.044715 x^3), c = sqrt(2/pi):
-- 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) c (1 + 3 * 0.044715 x^2).
local INV_SQRT_2, INV_SQRT_2PI = 1 / math.sqrt(2), 1 / math.sqrt(2 * math.pi)
local function gelu_grad(x, approximate)
  if approximate == "none" then
    return ((x * INV_SQRT_2):erf() + 1) * 0.5 + x * (x * x * -0.5):exp() * INV_SQRT_2PI
  end
  local t = ((x + x ^ 3 * 0.044715) * SQRT_2_OVER_PI):tanh()
  return (t + 1) * 0.5 + x * (1 - t * t) * (x * x * (3 * 0.044715) + 1) * (0.5 * SQRT_2_OVER_PI)
end

--- gelu(x [, {approximate = "none" | "tanh"}]) (or the string itself): the nn kernel (both
-- dtypes); its backward is the kernel's, or gelu_grad's tensor ops under create_graph.
function F.gelu(x, approximate)
  local fname = "F.gelu"
  check_tensor(fname, "input", x)
  if type(approximate) == "table" then
    approximate = apierror.check_options(fname, approximate, {approximate = true}).approximate
  end
  approximate = approximate or "none"
  local code
  if approximate == "none" then
    code = core.NN_ACT_GELU
  elseif approximate == "tanh" then
    code = core.NN_ACT_GELU_TANH
  else
    fail("%s: approximate must be 'none' or 'tanh', got %s", fname, show(approximate))
  end
  local y = act_forward(x:contiguous(), code, 0, nil)
  if needs_grad(x) then
    local node = record("gelu", {x}, {y}, function(node, g)
      local sx = saved1(node)
      if grad_mode() then return g * gelu_grad(sx, approximate) end -- create_graph: tensor ops
      return act_backward(sx:contiguous(), g:contiguous(), code, 0, nil)
    end)
    save(node, x)
  end
  return y
end

--- dropout(x [, p = 0.5 [, training = true]]) (or {p =, training =}): inverted dropout
-- with the lua_State's generator (the same draws as nn.Dropout for float32).
function F.dropout(x, p, training)
  local fname = "F.dropout"
  check_tensor(fname, "input", x)
  if type(p) == "table" then
    local o = apierror.check_options(fname, p, {p = true, training = true})
    p, training = o.p, o.training
  end
  if p == nil then p = 0.5 end
  if type(p) ~= "number" or not (p >= 0 and p <= 1) then
    fail("%s: p must be a number in [0, 1], got %s", fname, show(p))
  end
  if training ~= nil and type(training) ~= "boolean" then
    fail("%s: training must be a boolean, got %s", fname, show(training))
  end
  if training == false or p == 0 then return x end
  local y, mask
  if is_f32(x) then
    y, mask = dropout_forward(x:contiguous(), p, nil, nil)
  else
    -- the same rule as the kernel: keep where u >= p, scaled by 1 / (1 - p)
    mask = p == 1 and core.zeros_like(x) or core.rand_like(x):ge(p) * (1 / (1 - p))
    y = x:detach() * mask
  end
  if needs_grad(x) then
    local node = record("dropout", {x}, {y}, function(node, g)
      return g * saved1(node)
    end)
    save(node, mask)
  end
  return y
end

-- layer_norm's arguments: (x, shape, weight, bias, eps) or (x, shape, {weight, bias, eps}).
local function ln_args(fname, x, shape, w, b, eps)
  check_tensor(fname, "input", x)
  if type(w) == "table" and not is_tensor(w) then
    local o = apierror.check_options(fname, w, {weight = true, bias = true, eps = true})
    w, b, eps = o.weight, o.bias, o.eps
  end
  if type(shape) == "table" then
    if #shape ~= 1 then
      fail("%s: normalized_shape must be one size (the last dimension), got %d sizes", fname, #shape)
    end
    shape = shape[1]
  end
  local d = apierror.check_int(fname, "normalized_shape", shape, 1)
  local xs = x:shape()
  if xs[#xs] ~= d then
    fail("%s: input %s does not end in the normalized size %d", fname, apierror.shape_str(x), d)
  end
  opt_tensor(fname, "weight", w)
  opt_tensor(fname, "bias", b)
  for _, wb in ipairs{{"weight", w}, {"bias", b}} do
    local t = wb[2]
    if t and (t:dim() ~= 1 or t:shape()[1] ~= d) then
      fail("%s: %s %s does not match the normalized size %d", fname, wb[1], apierror.shape_str(t), d)
    end
    same_dtype(fname, x, wb[1], t)
  end
  if eps == nil then eps = 1e-5 end
  if type(eps) ~= "number" or not (eps > 0 and eps < math.huge) then
    fail("%s: eps must be a positive number, got %s", fname, show(eps))
  end
  return d, w, b, eps
end

-- An alias of parameter p (same storage) whose .grad is a fresh zero tensor: the nn
-- kernels accumulate a parameter's gradient into its .grad, and a node returns gradients.
local function grad_alias(p)
  if p == nil then return nil end
  local a = p:detach()
  a.grad = core.zeros_like(p)
  return a
end

--- layer_norm(x, normalized_shape [, weight [, bias [, eps = 1e-5]]]) over the last
-- dimension (biased variance, as PyTorch).
function F.layer_norm(x, shape, w, b, eps)
  local fname = "F.layer_norm"
  local d
  d, w, b, eps = ln_args(fname, x, shape, w, b, eps)
  if not is_f32(x) then
    local xc = x - x:mean(-1, true)
    local y = xc * ((xc * xc):mean(-1, true) + eps):rsqrt()
    if w then y = y * w end
    if b then y = y + b end
    return y
  end
  x = x:contiguous()
  local y, mean, rstd = ln_forward(x, d, w, b, eps, nil, nil, nil)
  if needs_grad(x, w, b) then
    local node = record("layer_norm", {x, w, b}, {y}, function(node, g)
      no_double("layer_norm")
      local sx, sw, sb, smean, srstd = saved(node)
      local wa, ba = grad_alias(sw), grad_alias(sb)
      local gi = ln_backward(sx, g:contiguous(), d, wa, ba, smean, srstd, nil)
      return gi, wa and wa.grad, ba and ba.grad
    end, 3)
    save(node, x, w, b, mean, rstd)
  end
  return y
end

-- ---------------------------------------------------------------------------------------
-- Losses
-- ---------------------------------------------------------------------------------------

-- The 0-d result of a fused loss kernel that also gave dLoss/dinput (`gin`), recorded
-- with one node; `grads(x, t, g)` is the same gradient as tensor ops, used when the
-- target needs a gradient too or under create_graph (so the loss differentiates twice).
local function fused_loss(name, x, t, value, gin, grads)
  local y = core.tensor(value)
  if gin then
    local node = record(name, {x, t}, {y}, function(node, g)
      local sx, st = saved(node)
      if grad_mode() or wants(node, 2) then return grads(sx, st, g) end
      return gin * g, nil
    end, 2)
    save(node, x, t)
  end
  return y
end

local function numel_of(red, x)
  return red == "mean" and x:numel() or 1
end

--- mse_loss(x, t [, {reduction}]) = reduce((x - t)^2).
function F.mse_loss(x, t, opts)
  local fname = "F.mse_loss"
  check_tensor(fname, "input", x)
  check_tensor(fname, "target", t)
  local _, red = loss_opts(fname, opts)
  check_pair_shapes(fname, x, t)
  if red == "none" or not is_f32(x) then return reduce((x - t) ^ 2, red) end
  local want = needs_grad(x, t)
  local value, gin = nn_mse(x:contiguous(), t:contiguous(), REDUCTIONS[red], want, nil)
  return fused_loss("mse_loss", x, t, value, gin, function(a, b, g)
    local d = (a - b) * (g * (2 / numel_of(red, a)))
    return d, -d
  end)
end

--- l1_loss(x, t [, {reduction}]) = reduce(|x - t|).
function F.l1_loss(x, t, opts)
  local fname = "F.l1_loss"
  check_tensor(fname, "input", x)
  check_tensor(fname, "target", t)
  local _, red = loss_opts(fname, opts)
  check_pair_shapes(fname, x, t)
  return reduce((x - t):abs(), red)
end

--- smooth_l1_loss(x, t [, {reduction, beta = 1}]): 0.5 d^2 / beta where |d| < beta,
-- else |d| - 0.5 beta (d = x - t; beta = 0 is l1_loss).
function F.smooth_l1_loss(x, t, opts)
  local fname = "F.smooth_l1_loss"
  check_tensor(fname, "input", x)
  check_tensor(fname, "target", t)
  local o, red = loss_opts(fname, opts, {beta = true})
  local beta = o.beta == nil and 1 or o.beta
  if type(beta) ~= "number" or not (beta >= 0 and beta < math.huge) then
    fail("%s: beta must be a non-negative number, got %s", fname, show(beta))
  end
  check_pair_shapes(fname, x, t)
  local d = (x - t):abs()
  if beta == 0 then return reduce(d, red) end
  return reduce(core.where(d:lt(beta), d * d * (0.5 / beta), d - 0.5 * beta), red)
end

--- binary_cross_entropy_with_logits(x, t [, {reduction}]): the stable
-- max(x, 0) - x t + log(1 + exp(-|x|)).
function F.binary_cross_entropy_with_logits(x, t, opts)
  local fname = "F.binary_cross_entropy_with_logits"
  check_tensor(fname, "input", x)
  check_tensor(fname, "target", t)
  local _, red = loss_opts(fname, opts)
  check_pair_shapes(fname, x, t)
  if red == "none" or not is_f32(x) then
    return reduce(x:relu() - x * t + (-x:abs()):exp():log1p(), red)
  end
  local want = needs_grad(x, t)
  local value, gin = nn_bce(x:contiguous(), t:contiguous(), REDUCTIONS[red], want, nil)
  return fused_loss("binary_cross_entropy_with_logits", x, t, value, gin, function(a, b, g)
    local s = g * (1 / numel_of(red, a))
    return (a:sigmoid() - b) * s, -a * s
  end)
end

-- Class indices 1..C (a Lua table or a tensor of B values) -> a {B, 1} index tensor; the
-- entries equal to `ignore` (an integer or nil) are allowed and become class 1 (their rows are
-- masked out by the caller). Also returns the {B} mask (1: counted, 0: ignored; of dtype
-- `dtype`) when `ignore` is given.
local function class_index(fname, target, B, C, ignore, dtype)
  local idx
  if is_tensor(target) then
    if target:numel() ~= B then
      fail("%s: target %s does not match a batch of %d (one class index per row)", fname,
           apierror.shape_str(target), B)
    end
    idx = target:detach():reshape(B, 1)
  elseif type(target) == "table" then
    if #target ~= B then
      fail("%s: target has %d class indices for a batch of %d", fname, #target, B)
    end
    idx = core.tensor(target):reshape(B, 1)
  else
    fail("%s: target must be a table or a moonopt.Tensor of class indices, got %s", fname,
         show(target))
  end
  local mask
  if ignore ~= nil then
    local ignored = idx:eq(ignore)
    mask = (1 - ignored):reshape(B):to(dtype)
    idx = core.where(ignored, 1, idx)
  end
  if B > 0 then
    local lo, hi = idx:min():item(), idx:max():item()
    if not (lo >= 1 and hi <= C) then
      local bad = (lo >= 1) and hi or lo
      fail("%s: target holds %s, not a class index in 1..%d", fname, show(bad), C)
    end
  end
  return idx, mask
end

-- The options weight (a {C} tensor of per-class weights, x's dtype) and ignore_index (a
-- target value whose rows count for nothing) of nll_loss and cross_entropy.
local function class_opts(fname, o, x, C)
  local w = o.weight
  if w ~= nil then
    check_tensor(fname, "weight", w)
    if w:dim() ~= 1 or w:numel() ~= C then
      fail("%s: weight must be a 1-d tensor of %d class weights, got %s", fname, C,
           apierror.shape_str(w))
    end
    same_dtype(fname, x, "weight", w)
    w = w:detach() -- a constant, as in PyTorch
  end
  local ignore = o.ignore_index
  if ignore ~= nil then ignore = apierror.check_int(fname, "ignore_index", ignore) end
  return w, ignore
end

-- The weight of each row's class {B} (0 on ignored rows): PyTorch's weighted mean divides by
-- its sum, so that the mean is over the rows that count, each counted by its class's weight.
local function row_weights(w, idx, mask, B)
  local wy = w and w:index_select(1, idx:reshape(B)) or nil
  if wy and mask then return wy * mask end
  return wy or mask
end

-- -log p of each row's class {B}, weighted by wy (nil: 1) and reduced; the mean divides by
-- the sum of wy.
local function class_nll(logp, idx, wy, B, red)
  local l = -logp:gather(2, idx):reshape(B)
  if wy == nil then return l, reduce(l, red) end
  l = l * wy
  if red == "mean" then return l, l:sum() / wy:sum() end
  return l, reduce(l, red)
end

local function check_2d(fname, what, x)
  if x:dim() ~= 2 then
    fail("%s: %s must be 2-d {batch, classes}, got %s", fname, what, apierror.shape_str(x))
  end
  return x:shape()[1], x:shape()[2]
end

-- cross_entropy with per-class weights w ({C} or nil) and/or a mask of the rows that count
-- ({B} or nil), in tensor ops (differentiable twice, both dtypes).
local function weighted_cross_entropy(x, idx, w, mask, ls, red)
  local B, C = x:shape()[1], x:shape()[2]
  local logp = x:log_softmax(2)
  local wy = row_weights(w, idx, mask, B)
  local rows, l = class_nll(logp, idx, wy, B, red)
  if ls == 0 then return l end
  local smooth = -(w and (logp * w) or logp):sum(2)
  if mask then smooth = smooth * mask end
  if red == "none" then return rows * (1 - ls) + smooth * (ls / C) end
  local s = smooth:sum()
  if red == "mean" then s = s / wy:sum() end
  return l * (1 - ls) + s * (ls / C)
end

--- nll_loss(log_probs, target [, {reduction, weight, ignore_index}]): -log_probs[i, target_i]
-- (times weight[target_i]), reduced; rows whose target is ignore_index count for nothing, and
-- the mean divides by the summed weights of the rows that count (PyTorch's definition).
function F.nll_loss(x, target, opts)
  local fname = "F.nll_loss"
  check_tensor(fname, "input", x)
  local o, red = loss_opts(fname, opts, {weight = true, ignore_index = true})
  local B, C = check_2d(fname, "input", x)
  local w, ignore = class_opts(fname, o, x, C)
  local idx, mask = class_index(fname, target, B, C, ignore, x.dtype)
  local _, l = class_nll(x, idx, row_weights(w, idx, mask, B), B, red)
  return l
end

--- cross_entropy(logits, target [, {reduction = "mean", label_smoothing = 0, weight,
-- ignore_index}]): log_softmax and nll_loss in one kernel (float32, mean or sum, no weight or
-- ignore_index); with label smoothing ls the loss of row i is
-- (1 - ls) * nll_i + ls / C * sum_c w_c * (-log p_ic); the mean divides by the summed weights
-- of the rows that count (PyTorch 2's definition).
function F.cross_entropy(x, target, opts)
  local fname = "F.cross_entropy"
  check_tensor(fname, "input", x)
  local o, red = loss_opts(fname, opts, {label_smoothing = true, weight = true,
                                         ignore_index = true})
  local ls = o.label_smoothing or 0
  if type(ls) ~= "number" or not (ls >= 0 and ls <= 1) then
    fail("%s: label_smoothing must be a number in [0, 1], got %s", fname, show(ls))
  end
  local B, C = check_2d(fname, "input", x)
  local w, ignore = class_opts(fname, o, x, C)
  local idx, mask = class_index(fname, target, B, C, ignore, x.dtype)
  if w or mask then return weighted_cross_entropy(x, idx, w, mask, ls, red) end
  if red == "none" or not is_f32(x) then
    local logp = x:log_softmax(2)
    local l = -logp:gather(2, idx):reshape(B)
    if ls > 0 then l = l * (1 - ls) - logp:mean(2) * ls end
    return reduce(l, red)
  end
  local want = needs_grad(x)
  local value, gin = nn_ce(x:contiguous(), idx, ls, REDUCTIONS[red], want, nil)
  return fused_loss("cross_entropy", x, nil, value, gin, function(a, _, g)
    -- d/dx = softmax(x) - (1 - ls) onehot - ls / C, per row, / B for the mean
    local oh = core.zeros_like(a):scatter_add(2, idx, core.ones(B, 1, {dtype = a.dtype}))
    local gx = a:softmax(2) - oh * (1 - ls) - ls / C
    return gx * (g * (1 / (red == "mean" and B or 1))), nil
  end)
end

-- ---------------------------------------------------------------------------------------
-- Convolutional layers (the conv kernels: both dtypes)
-- ---------------------------------------------------------------------------------------

local function check_4d(fname, x)
  if x:dim() ~= 4 then
    fail("%s: input must be 4-d {N, C, H, W}, got %s", fname, apierror.shape_str(x))
  end
end

-- Where the conv kernels (which add into their gradient buffers) put input k's gradient:
-- the parameter's own .grad when the engine allows it (E.grad_sink; the node then returns
-- nil for it), else a fresh zero buffer that the node returns; nil when k needs none.
-- Returns the buffer and whether the node returns it.
local function grad_buf(node, k, p)
  if p == nil or not wants(node, k) then return nil, false end
  local sink = grad_sink(node, k)
  if sink then return sink, false end
  return core.zeros_like(p), true
end

--- conv2d(x, w [, b [, {stride = 1, padding = 0, dilation = 1, groups = 1}]]): x {N, C, H, W},
-- w {O, C / groups, kH, kW}, b {O}.
function F.conv2d(x, w, b, opts)
  local fname = "F.conv2d"
  check_tensor(fname, "input", x)
  check_tensor(fname, "weight", w)
  if type(b) == "table" and not is_tensor(b) and opts == nil then b, opts = nil, b end
  opt_tensor(fname, "bias", b)
  opts = apierror.check_options(fname, opts, {stride = true, padding = true, dilation = true,
                                              groups = true})
  check_4d(fname, x)
  local sh, sw = pair(fname, "stride", opts.stride or 1, 1)
  local ph, pw = pair(fname, "padding", opts.padding or 0, 0)
  local dh, dw = pair(fname, "dilation", opts.dilation or 1, 1)
  local groups = apierror.check_int(fname, "groups", opts.groups or 1, 1)
  local y = raw(core.conv2d_forward, x, w, b, sh, sw, ph, pw, dh, dw, groups)
  if needs_grad(x, w, b) then
    local node = record("conv2d", {x, w, b}, {y}, function(node, g)
      no_double("conv2d")
      local sx, sweight, sbias = saved(node)
      local gw, rw = grad_buf(node, 2, sweight)
      local gb, rb = grad_buf(node, 3, sbias)
      local gx = raw(core.conv2d_backward, sx, sweight, g:contiguous(), sh, sw, ph, pw, dh, dw,
                     groups, gw, gb, wants(node, 1) and true or false)
      return gx, rw and gw or nil, rb and gb or nil
    end, 3)
    save(node, x, w, b)
  end
  return y
end

local function pool_args(fname, x, k, opts, extra)
  check_tensor(fname, "input", x)
  local known = {stride = true, padding = true}
  for n in pairs(extra) do known[n] = true end
  opts = apierror.check_options(fname, opts, known)
  local kh, kw = pair(fname, "kernel_size", k, 1)
  local sh, sw = kh, kw
  if opts.stride ~= nil then sh, sw = pair(fname, "stride", opts.stride, 1) end
  local ph, pw = pair(fname, "padding", opts.padding or 0, 0)
  return opts, kh, kw, sh, sw, ph, pw
end

--- max_pool2d(x, kernel_size [, {stride = kernel_size, padding = 0}]).
function F.max_pool2d(x, k, opts)
  local fname = "F.max_pool2d"
  local _, kh, kw, sh, sw, ph, pw = pool_args(fname, x, k, opts, {})
  local y, idx = raw(core.max_pool2d_forward, x, kh, kw, sh, sw, ph, pw)
  if needs_grad(x) then
    local node = record("max_pool2d", {x}, {y}, function(node, g)
      no_double("max_pool2d")
      local si, sx = saved(node)
      return raw(core.max_pool2d_backward, g:contiguous(), si, sx)
    end)
    save(node, idx, x)
  end
  return y
end

--- avg_pool2d(x, kernel_size [, {stride = kernel_size, padding = 0, count_include_pad = true}]).
function F.avg_pool2d(x, k, opts)
  local fname = "F.avg_pool2d"
  local o, kh, kw, sh, sw, ph, pw = pool_args(fname, x, k, opts, {count_include_pad = true})
  local cip = o.count_include_pad
  if cip == nil then cip = true end
  if type(cip) ~= "boolean" then
    fail("%s: count_include_pad must be a boolean, got %s", fname, show(cip))
  end
  local y = raw(core.avg_pool2d_forward, x, kh, kw, sh, sw, ph, pw, cip)
  if needs_grad(x) then
    local node = record("avg_pool2d", {x}, {y}, function(node, g)
      no_double("avg_pool2d")
      return raw(core.avg_pool2d_backward, g:contiguous(), saved1(node), kh, kw, sh, sw, ph, pw, cip)
    end)
    save(node, x)
  end
  return y
end

--- batch_norm(x, running_mean, running_var [, {weight, bias, training = false,
-- momentum = 0.1, eps = 1e-5}]) (or PyTorch's positional weight, bias, training,
-- momentum, eps). Training updates the running tensors in place (when given).
function F.batch_norm(x, rm, rv, w, b, training, momentum, eps)
  local fname = "F.batch_norm"
  check_tensor(fname, "input", x)
  opt_tensor(fname, "running_mean", rm)
  opt_tensor(fname, "running_var", rv)
  if type(w) == "table" and not is_tensor(w) then
    local o = apierror.check_options(fname, w, {weight = true, bias = true, training = true,
                                                momentum = true, eps = true})
    w, b, training, momentum, eps = o.weight, o.bias, o.training, o.momentum, o.eps
  end
  opt_tensor(fname, "weight", w)
  opt_tensor(fname, "bias", b)
  if training == nil then training = false end
  if type(training) ~= "boolean" then
    fail("%s: training must be a boolean, got %s", fname, show(training))
  end
  momentum = momentum == nil and 0.1 or momentum
  eps = eps == nil and 1e-5 or eps
  if type(eps) ~= "number" or not (eps > 0 and eps < math.huge) then
    fail("%s: eps must be a positive number, got %s", fname, show(eps))
  end
  local y, smean, sinv = raw(core.batch_norm_forward, x, w, b, rm, rv, training, momentum, eps)
  if needs_grad(x, w, b) then
    local node = record("batch_norm", {x, w, b}, {y}, function(node, g)
      no_double("batch_norm")
      local sx, sw, sb, sm, si = saved(node)
      local gw, rw = grad_buf(node, 2, sw)
      local gb, rb = grad_buf(node, 3, sb)
      local gx = raw(core.batch_norm_backward, sx, g:contiguous(), sw, sm, si, training,
                     gw, gb, wants(node, 1) and true or false)
      return gx, rw and gw or nil, rb and gb or nil
    end, 3)
    save(node, x, w, b, smean, sinv)
  end
  return y
end

-- Every function is a public entry point: errors point at the caller's line.
for name, f in pairs(F) do F[name] = api(f) end

return F
