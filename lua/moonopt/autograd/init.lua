--- moonopt.autograd: gradients of Lua expressions of tensor ops (docs/autograd.md).
--
--   t:backward([grad_out [, {retain_graph, create_graph}]])   (installed on every tensor)
--   mo.no_grad(fn, ...)   mo.grad(f [, argnums])   mo.value_and_grad(f [, argnums])
--   mo.autograd.grad(outputs, inputs [, opts])   mo.autograd.hvp(f, inputs, v)
--   mo.autograd.gradcheck(f, inputs [, opts])   mo.autograd.Function{forward, backward}
--   mo.autograd.set_grad_enabled(flag)   mo.autograd.is_grad_enabled()
--
-- Loading this module installs the recorder into the C dispatcher of this lua_State;
-- `require "moonopt"` does it. With `require "moonopt.core"` alone nothing records.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local E = require "moonopt.autograd.engine"
require "moonopt.autograd.ops"

local api, fail, show = apierror.api, apierror.fail, apierror.show
local is_tensor, grad_mode = core.is_tensor, core._autograd.grad_mode
local pack, unpack = table.pack, table.unpack

local M = {}

core._autograd.install(E.recorder) -- the C side records generic ops itself (engine's FAST)

-- ---------------------------------------------------------------------------------------
-- Grad mode
-- ---------------------------------------------------------------------------------------

local function finish(before, ok, ...)
  grad_mode(before)
  if not ok then error((...), 0) end
  return ...
end

--- Runs fn(...) with recording off and returns its results (grad mode is restored
-- even when fn raises).
function M.no_grad(fn, ...)
  if type(fn) ~= "function" then
    fail("no_grad: bad argument #1 (function expected, got %s)", show(fn))
  end
  return finish(grad_mode(false), pcall(fn, ...))
end

--- Sets grad mode (true: ops record); returns the previous mode.
function M.set_grad_enabled(flag)
  if type(flag) ~= "boolean" then
    fail("set_grad_enabled: bad argument #1 (boolean expected, got %s)", show(flag))
  end
  return grad_mode(flag)
end

--- Whether ops record.
function M.is_grad_enabled()
  return grad_mode()
end

-- ---------------------------------------------------------------------------------------
-- backward and grad
-- ---------------------------------------------------------------------------------------

local OPTS = {retain_graph = true, create_graph = true, grad_outputs = true, allow_unused = true}

local function check_opts(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail("%s: options must be a table, got %s", fname, show(opts)) end
  for k in pairs(opts) do
    if not allowed[k] then
      fail("%s: unknown option %s", fname, show(k))
    end
  end
  return opts
end

local function check_tensor(fname, what, v)
  if not is_tensor(v) then fail("%s: %s must be a tensor, got %s", fname, what, show(v)) end
end

-- The seed gradient of root t: grad_out, or 1 for a one-element t.
local function seed(fname, t, g, k)
  if not t.requires_grad then fail("%s: %s", fname, E.why_no_grad(t)) end
  if g == nil then
    if t:numel() ~= 1 then
      local gf = t.grad_fn
      fail("%s: output%s of shape %s (made by %s) is not a scalar: pass grad_out, a tensor of "
        .. "its shape", fname, k and " #" .. k or "", E.shape_str(t), gf and gf.name or "a leaf")
    end
    return core.ones_like(t)
  end
  check_tensor(fname, "grad_out", g)
  if not apierror.same_shape(g:shape(), t:shape()) then
    fail("%s: grad_out has shape %s, the output %s", fname, E.shape_str(g), E.shape_str(t))
  end
  if g.dtype ~= t.dtype then
    fail("%s: grad_out is %s, the output %s", fname, g.dtype, t.dtype)
  end
  return g
end

--- t:backward([grad_out [, opts]]): accumulates d(t)/d(leaf) into every leaf's .grad.
local function backward(t, grad_out, opts)
  check_tensor("backward", "self", t)
  if opts == nil and type(grad_out) == "table" and not is_tensor(grad_out) then
    grad_out, opts = nil, grad_out
  end
  opts = check_opts("backward", opts, {retain_graph = true, create_graph = true})
  local g = seed("backward", t, grad_out)
  E.backward({t}, {g}, opts)
end
M.backward = api(backward)
core.Tensor.backward = M.backward

local function as_list(fname, what, v)
  if is_tensor(v) then return {v}, true end
  if type(v) ~= "table" then
    fail("%s: %s must be a tensor or a list of tensors, got %s", fname, what, show(v))
  end
  for k, t in ipairs(v) do
    if not is_tensor(t) then fail("%s: %s[%d] is not a tensor (got %s)", fname, what, k, show(t)) end
  end
  return v, false
end

local function grad(outputs, inputs, opts)
  local fname = "grad"
  opts = check_opts(fname, opts, OPTS)
  local outs = as_list(fname, "outputs", outputs)
  local ins, single = as_list(fname, "inputs", inputs)
  local gos = opts.grad_outputs
  if is_tensor(gos) then gos = {gos} end
  local seeds = {}
  for k, o in ipairs(outs) do seeds[k] = seed(fname, o, gos and gos[k], #outs > 1 and k or nil) end
  for k, x in ipairs(ins) do
    if not x.requires_grad then
      fail("%s: inputs[%d] does not require grad", fname, k)
    end
  end
  local gs = E.backward(outs, seeds, opts, ins)
  if not opts.allow_unused then
    for k = 1, #ins do
      if gs[k] == nil then
        fail("%s: inputs[%d] is not reached from the outputs (pass allow_unused = true to get "
          .. "nil for it)", fname, k)
      end
    end
  end
  if single then return gs[1] end
  return gs
end
M.grad = api(grad)

-- ---------------------------------------------------------------------------------------
-- Functional transforms: mo.grad, mo.value_and_grad, hvp
-- ---------------------------------------------------------------------------------------

-- A fresh leaf for argument tensor t: a detached alias needing grad, or (when t itself
-- needs grad, under an outer transform) a recorded alias, so the outer one can go on
-- differentiating through the inner gradient.
local function make_input(t)
  if grad_mode() and t.requires_grad then return t:reshape(t:shape()), true end
  return t:detach():requires_grad_(), false
end

-- Replaces every tensor of the structure v (a tensor or a nested table) by a fresh
-- input; `flat` collects them in order. Returns the new structure.
local function substitute(fname, v, flat, what)
  if is_tensor(v) then
    local x, nested = make_input(v)
    flat[#flat + 1] = x
    if nested then flat.nested = true end
    return x
  end
  if type(v) ~= "table" then
    fail("%s: %s must be a tensor or a table of tensors, got %s", fname, what, show(v))
  end
  local r = {}
  for k, e in pairs(v) do r[k] = substitute(fname, e, flat, what) end
  return r
end

-- The gradients in `gs` (flat, in `flat`'s order) put back into the structure of v.
local function restructure(v, gs, pos)
  if is_tensor(v) then
    pos.k = pos.k + 1
    return gs[pos.k]
  end
  local r = {}
  for k, e in pairs(v) do r[k] = restructure(e, gs, pos) end
  return r
end

local function check_argnums(fname, argnums)
  if argnums == nil then return {1}, true end
  if math.type(argnums) == "integer" and argnums >= 1 then return {argnums}, true end
  if type(argnums) == "table" and #argnums > 0 then
    for k, a in ipairs(argnums) do
      if not (math.type(a) == "integer" and a >= 1) then
        fail("%s: argnums[%d] must be a positive integer, got %s", fname, k, show(a))
      end
    end
    return argnums, false
  end
  fail("%s: argnums must be a positive integer or a list of them, got %s", fname, show(argnums))
end

local function transform(fname, f, argnums, with_value)
  if type(f) ~= "function" then
    fail("%s: bad argument #1 (function expected, got %s)", fname, show(f))
  end
  local nums, single = check_argnums(fname, argnums)
  return api(function(...)
    local args = pack(...)
    local flat, structs = {}, {}
    for k, a in ipairs(nums) do
      if a > args.n then fail("%s: argnums names argument #%d, but only %d were given", fname, a,
        args.n) end
      args[a] = substitute(fname, args[a], flat, "argument #" .. a)
      structs[k] = args[a]
    end
    local before = grad_mode(true)
    local res = pack(pcall(f, unpack(args, 1, args.n)))
    grad_mode(before)
    if not res[1] then error(res[2], 0) end
    local y = res[2]
    if not is_tensor(y) or y:numel() ~= 1 then
      fail("%s: the function must return a one-element tensor, got %s", fname,
        is_tensor(y) and "shape " .. E.shape_str(y) or show(y))
    end
    local gs
    if not y.requires_grad then
      gs = {}
      for k, x in ipairs(flat) do gs[k] = core.zeros_like(x) end
    else
      gs = E.backward({y}, {core.ones_like(y)}, {create_graph = flat.nested, retain_graph =
        flat.nested}, flat)
      for k, x in ipairs(flat) do gs[k] = gs[k] or core.zeros_like(x) end
    end
    local pos, out = {k = 0}, {}
    for k = 1, #nums do out[k] = restructure(structs[k], gs, pos) end
    local g = single and out[1] or out
    if with_value then
      if not flat.nested then y = y:detach() end
      return y, g
    end
    return g
  end)
end

-- Exported by moonopt/init.lua as mo.grad and mo.value_and_grad (private names here:
-- mo.autograd.grad is the (outputs, inputs) form).
--- mo.grad(f [, argnums = 1]) -> a function returning df/d(args[argnums]).
M._grad_transform = api(function(f, argnums) return transform("grad", f, argnums, false) end)
--- mo.value_and_grad(f [, argnums = 1]) -> a function returning f(...), the gradients.
M._value_and_grad = api(function(f, argnums)
  return transform("value_and_grad", f, argnums, true)
end)

local function hvp(f, inputs, v)
  local fname = "hvp"
  if type(f) ~= "function" then fail("%s: bad argument #1 (function expected, got %s)", fname,
    show(f)) end
  local xs, single = as_list(fname, "inputs", inputs)
  local vs = as_list(fname, "v", v)
  if #vs ~= #xs then fail("%s: v has %d tensors, inputs %d", fname, #vs, #xs) end
  local leaves = {}
  for k, x in ipairs(xs) do
    if not apierror.same_shape(x:shape(), vs[k]:shape()) then
      fail("%s: v[%d] has shape %s, inputs[%d] %s", fname, k, E.shape_str(vs[k]), k,
        E.shape_str(x))
    end
    leaves[k] = x:detach():requires_grad_()
  end
  local before = grad_mode(true)
  local ok, y = pcall(f, unpack(leaves))
  if not ok then
    grad_mode(before)
    error(y, 0)
  end
  local ok2, res = pcall(function()
    if not is_tensor(y) or y:numel() ~= 1 then
      error(string.format("%s: the function must return a one-element tensor, got %s", fname,
        is_tensor(y) and "shape " .. E.shape_str(y) or show(y)), 0)
    end
    if not y.requires_grad then
      error(fname .. ": the function's value does not depend on its inputs", 0)
    end
    local gs = E.backward({y}, {core.ones_like(y)}, {create_graph = true}, leaves)
    local dot
    for k, g in ipairs(gs) do
      if g ~= nil then
        local term = (g * vs[k]):sum()
        dot = dot and dot + term or term
      end
    end
    local hv = {}
    if dot ~= nil and dot.requires_grad then
      hv = E.backward({dot}, {core.ones_like(dot)}, {}, leaves)
    end
    for k, x in ipairs(leaves) do hv[k] = hv[k] and hv[k]:detach() or core.zeros_like(x) end
    return hv
  end)
  grad_mode(before)
  if not ok2 then error(res, 0) end
  return y:detach(), single and res[1] or res
end
M.hvp = api(hvp)

-- ---------------------------------------------------------------------------------------
-- gradcheck
-- ---------------------------------------------------------------------------------------

local function index_str(shape, i)
  -- 1-based linear index -> "{i1, i2, ...}"
  local idx, r = {}, i - 1
  for d = #shape, 1, -1 do
    idx[d] = r % shape[d] + 1
    r = r // shape[d]
  end
  return "{" .. table.concat(idx, ", ") .. "}"
end

local function flat_values(t)
  local c = t:detach():contiguous():reshape{-1}
  local v = c:totable()
  if type(v) == "number" then v = {v} end
  return v
end

-- The numerical Jacobian by central differences, compared element by element with the
-- analytical one; returns the first mismatch as a message (nil when all agree).
local function numerical(plain, eval, analytic, ny, eps, atol, rtol)
  for k, x in ipairs(plain) do
    local flat = x:reshape{-1}
    local shape = x:shape()
    for i = 1, x:numel() do
      local v0 = flat:get(i)
      flat:set(i, v0 + eps)
      local yp = eval()
      flat:set(i, v0 - eps)
      local ym = eval()
      flat:set(i, v0)
      for j = 1, ny do
        local num = (yp[j] - ym[j]) / (2 * eps)
        local ana = analytic[k][j][i]
        if not (math.abs(ana - num) <= atol + rtol * math.abs(num)) then -- luacheck: ignore 581 (NaN fails)
          return string.format("inputs[%d] element %s (output element %d): analytical gradient "
            .. "%.10g, numerical %.10g", k, index_str(shape, i), j, ana, num)
        end
      end
    end
  end
end

local function gradcheck(f, inputs, opts)
  local fname = "gradcheck"
  if type(f) ~= "function" then fail("%s: bad argument #1 (function expected, got %s)", fname,
    show(f)) end
  opts = check_opts(fname, opts, {eps = true, atol = true, rtol = true})
  local eps, atol, rtol = opts.eps or 1e-6, opts.atol or 1e-5, opts.rtol or 1e-3
  local xs = as_list(fname, "inputs", inputs)
  for k, x in ipairs(xs) do
    if x.dtype ~= "float64" then
      fail("%s: inputs[%d] is %s; gradcheck needs float64 inputs (convert with :double())",
        fname, k, x.dtype)
    end
  end
  -- analytical: one backward per output element
  local leaves = {}
  for k, x in ipairs(xs) do leaves[k] = x:detach():clone():requires_grad_() end
  local before = grad_mode(true)
  local ok, y = pcall(f, unpack(leaves))
  grad_mode(before)
  if not ok then error(y, 0) end
  if not is_tensor(y) then fail("%s: the function must return a tensor, got %s", fname, show(y)) end
  local ny = y:numel()
  local analytic = {} -- analytic[k][j] = flat values of d y_j / d x_k
  for k = 1, #xs do analytic[k] = {} end
  for j = 1, ny do
    local go = core.zeros_like(y)
    go:reshape{-1}:set(j, 1) -- a view of the contiguous zeros
    local gs = y.requires_grad and E.backward({y}, {go}, {retain_graph = true}, leaves) or {}
    for k, x in ipairs(leaves) do
      analytic[k][j] = gs[k] and flat_values(gs[k]) or flat_values(core.zeros_like(x))
    end
  end
  -- numerical: central differences on plain copies, with recording off throughout
  local plain = {}
  for k, x in ipairs(xs) do plain[k] = x:detach():clone() end
  local function eval()
    return flat_values(f(unpack(plain)))
  end
  local failure = finish(grad_mode(false), pcall(numerical, plain, eval, analytic, ny, eps, atol,
    rtol))
  if failure then fail("%s: %s", fname, failure) end
  return true
end
M.gradcheck = api(gradcheck)



-- ---------------------------------------------------------------------------------------
-- Custom functions
-- ---------------------------------------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx

--- ctx:save_for_backward(...): tensors backward reads from ctx.saved_tensors.
function Ctx:save_for_backward(...)
  self.saved_tensors = pack(...)
end

local function function_backward(node, ...)
  local spec, ctx = node.spec, node.ctx
  local gs = pack(...)
  local nout = #node.outs
  for k = 1, nout do
    if gs[k] == nil then gs[k] = core.zeros_like(node.outs[k]) end
  end
  ctx.saved_tensors = {E.saved(node)}
  local r = pack(spec.backward(ctx, unpack(gs, 1, nout)))
  for k = 1, node.nin do
    local g, shape = r[k], node.in_shapes[k]
    if node[2 * k - 1] and g ~= nil then
      if not is_tensor(g) then
        error(string.format("backward: Function backward returned %s for input #%d, expected a "
          .. "tensor or nil", show(g), k), 0)
      end
      if not apierror.same_shape(g:shape(), shape) then
        error(string.format("backward: Function backward returned a gradient of shape %s for "
          .. "input #%d of shape {%s}", E.shape_str(g), k, table.concat(shape, ", ")), 0)
      end
    end
  end
  return unpack(r, 1, node.nin)
end

local function apply(spec, ...)
  local args = pack(...)
  local ctx = setmetatable({needs_input_grad = {}}, Ctx)
  for k = 1, args.n do ctx.needs_input_grad[k] = is_tensor(args[k]) and args[k].requires_grad end
  local res = finish(grad_mode(false), pcall(function()
    return pack(spec.forward(ctx, unpack(args, 1, args.n)))
  end))
  if not E.needs_grad(unpack(args, 1, args.n)) then return unpack(res, 1, res.n) end
  local outs = {}
  for k = 1, res.n do
    local o = res[k]
    if is_tensor(o) then
      for a = 1, args.n do
        if rawequal(o, args[a]) then o = o:detach() end -- never turn an input into an output
      end
      res[k] = o
      outs[#outs + 1] = o
    end
  end
  local node = E.record(spec.name or "Function", args, outs, function_backward, args.n)
  node.spec, node.ctx, node.nin, node.outs = spec, ctx, args.n, outs
  node.in_shapes = {}
  for k = 1, args.n do node.in_shapes[k] = is_tensor(args[k]) and args[k]:shape() or {} end
  local st = ctx.saved_tensors
  if st then
    E.save(node, unpack(st, 1, st.n))
    ctx.saved_tensors = nil -- the node holds them (and frees them after backward)
  end
  return unpack(res, 1, res.n)
end

--- mo.autograd.Function{forward = function(ctx, ...), backward = function(ctx, grad, ...)
-- [, name = "MyOp"]} -> a callable F: F(...) (or F.apply(...)) runs forward with
-- recording off and records one node whose gradient is backward's.
function M.Function(spec)
  if type(spec) ~= "table" or type(spec.forward) ~= "function"
    or type(spec.backward) ~= "function" then
    fail("Function: expects {forward = function(ctx, ...), backward = function(ctx, grad)}")
  end
  local F = {}
  F.apply = api(function(...) return apply(spec, ...) end)
  return setmetatable(F, {__call = function(_, ...) return F.apply(...) end})
end

M.no_grad = api(M.no_grad)
M.Function = api(M.Function)
M.set_grad_enabled = api(M.set_grad_enabled)

-- The internal API for defining ops is moonopt.autograd.engine (docs/autograd.md
-- "Adding an op with its backward"); the definitions of the binding's ops are in
-- moonopt.autograd.ops.
return M
