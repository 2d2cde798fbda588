--- moonopt.nn.module: the Module base class every layer, container and loss builds on.
--
-- A module is a Lua table whose class provides
--   forward(x) -> output
--   backward(x, grad_output [, need_grad_input]) -> grad_input
-- (backward ACCUMULATES into every parameter's .grad), plus what this file
-- gives every class: parameters(), named_parameters(), flat_parameters(),
-- zero_grad(), train()/evaluate(), num_parameters(), state_dict(),
-- load_state_dict(), __tostring and __call (model(x) is model:forward(x)).
--
-- Flat parameters (torch7's getParameters idea): when a module with
-- parameters is built, flatten_parameters() moves all of its parameters into
-- ONE contiguous buffer and gives each a .grad that is a view into ONE
-- gradient buffer of the same layout. The parameter tensors keep their
-- identity (the C side re-points each tensor at its slice), so a container
-- built later simply re-homes its children's parameters into its own buffers,
-- values preserved. Each submodule whose parameters form one run of the big
-- buffer gets views of that run as its own flat buffers.
--
-- Cost: building and growing containers is O(1) per module, whatever the structure
-- (nesting Sequential used to re-collect and re-flatten every level: cubic). A container
-- does not flatten when it is built or grown; the first call that needs the flat layout
-- (parameters, flat_parameters, zero_grad, on any module of the tree) flattens the top of
-- the tree once, O(its modules + parameters). A module's list of distinct parameters is
-- cached (`_plist`); every module knows the modules holding it (`parents`, weak), so a
-- structural change (add_module, register_parameter) drops exactly the caches above it,
-- and add_module refuses a cycle (a module inside itself, directly or through a chain)
-- by walking the new parent's ancestors, O(them). A submodule's flat views are found when
-- asked for, from each parameter's recorded place in a flat buffer. Names ("3.0.weight")
-- are joined once per parameter when named_parameters() runs.
--
-- Errors go through moonopt.apierror (docs/design.md "Errors"): constructors and the
-- structural methods are wrapped with apierror.api, so a message raised anywhere inside
-- names the class and points at the caller's line. forward/backward are not wrapped (the
-- wrapper's pcall costs about 0.1 us a call, a fifth of a small Linear's forward).
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local E = require "moonopt.autograd.engine"

local fail, api, show = apierror.fail, apierror.api, apierror.show

local M = {}

local Module = {}
Module.__index = Module
Module.__name = "moonopt.nn.Module"
Module._is_module = true
Module._class_name = "Module"

-- Each parameter's home in a flat gradient buffer (weak keys: no leak), used
-- to re-attach a gradient that an optimizer's zero_grad(set_to_none) removed.
local grad_home = setmetatable({}, {__mode = "k"})

-- module -> the set of modules holding it as a child (weak both ways: a container that is
-- no longer used does not stay alive because its children do).
local parents = setmetatable({}, {__mode = "k"})

-- Each parameter's flat buffer record {fp =, fg =, n = elements} and its offset in it,
-- set by flatten_parameters (weak keys). flat_gen counts flattens: a module's cached flat
-- views are checked again after any flatten.
local home_of = setmetatable({}, {__mode = "k"})
local offset_of = setmetatable({}, {__mode = "k"})
local flat_gen = 0
local settle  -- (m) -> flat views after making the layout current; defined below

--- Checks that v is a number in [lo, hi] (not NaN); `what` names it in the message.
-- (Integers and options are checked by apierror.check_int and apierror.check_options.)
function M.check_number(fname, what, v, lo, hi)
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    fail("%s: %s must be a number in [%g, %g], got %s", fname, what, lo, hi, show(v))
  end
  return v
end

--- class(name [, parent]) -> a new class. Calling the class builds an instance
-- and runs its _init(...) method. Metamethods are copied, since Lua does not
-- look them up through __index.
function M.class(name, parent)
  parent = parent or Module
  local cls = {}
  cls.__index = cls
  cls.__name = "moonopt.nn." .. name
  cls._class_name = name
  cls.__tostring = parent.__tostring
  cls.__call = parent.__call
  return setmetatable(cls, {
    __index = parent,
    -- errors of _init (and of anything it calls in the library) at the caller's line
    __call = api(function(c, ...)
      local self = setmetatable({}, c)
      self:_base_init()
      self:_init(...)
      return self
    end),
  })
end

function Module:_base_init()
  self.training = true
  self._params = {}    -- own parameters: list of {name, tensor}
  self._children = {}  -- child modules: list of {name, module}
  self._buffers = {}   -- own buffers (BatchNorm's running statistics): list of {name, tensor}
end

function Module._init() end

function Module:forward()
  error(self._class_name .. ":forward is not implemented", 2)
end

function Module:backward()
  error(self._class_name .. ":backward is not implemented", 2)
end

-- Drops the cached parameter lists (and flat views) of m and of every module above it:
-- O(m's ancestors), each visited once even when the structure is a DAG.
local function invalidate(m)
  local stack, n, done = {m}, 1, {[m] = true}
  while n > 0 do
    local x = stack[n]
    stack[n], n = nil, n - 1
    x._plist, x._flat = nil, nil
    local ps = parents[x]
    if ps then
      for p in pairs(ps) do
        if not done[p] then
          done[p] = true
          n = n + 1
          stack[n] = p
        end
      end
    end
  end
end

--- Registers a parameter tensor under `name` (call flatten_parameters() after the last one).
local function register_parameter(self, name, t)
  if not core.is_tensor(t) then
    fail("%s:register_parameter: parameter %s must be a moonopt.Tensor, got %s", self._class_name,
         apierror.show_key(name), show(t))
  end
  local ps = self._params
  ps[#ps + 1] = {name, t}
  self[name] = t
  -- parameters require grad (as PyTorch's), so model(x) records on the autograd tape
  -- without an opt-in; model:requires_grad_(false) freezes them
  if not t.requires_grad then t:requires_grad_(true) end
  invalidate(self)
  return t
end
Module.register_parameter = api(register_parameter)

-- The name of child `c` in `p` ("0"), for messages.
local function child_name(p, c)
  for _, nc in ipairs(p._children) do
    if rawequal(nc[2], c) then return tostring(nc[1]) end
  end
  return "?"
end

--- cycle_error(parent, m, fname) -> nil, or the message refusing to make m a child of
-- parent because m is parent or already contains it. Walks parent's ancestors (O(them)),
-- not m's subtree, so building a deep tree bottom-up stays linear.
function M.cycle_error(parent, m, fname)
  local what = m._class_name or "module"
  if rawequal(parent, m) then
    return string.format("%s: cannot add a %s to itself (a module cannot contain itself)", fname, what)
  end
  local below = {[parent] = false}   -- ancestor -> the module one step down towards parent
  local queue, head = {parent}, 1
  while queue[head] do
    local x = queue[head]
    head = head + 1
    local ps = parents[x]
    if ps then
      for p in pairs(ps) do
        if below[p] == nil then
          below[p] = x
          if rawequal(p, m) then
            local path, at = {}, m
            while below[at] do
              path[#path + 1] = child_name(at, below[at])
              at = below[at]
            end
            return string.format("%s: the %s to add already contains this %s (as '%s'): adding it would "
                                 .. "make a cycle", fname, what, parent._class_name or "module",
                                 table.concat(path, "."))
          end
          queue[#queue + 1] = p
        end
      end
    end
  end
  return nil
end

--- Registers a buffer: a tensor the module keeps and updates itself (BatchNorm's running
-- statistics). Buffers are in state_dict() and checkpoints, not in parameters(): no
-- gradient, no optimizer. The module must update it in place (its identity is kept).
local function register_buffer(self, name, t)
  if not core.is_tensor(t) then
    fail("%s:register_buffer: buffer %s must be a moonopt.Tensor, got %s", self._class_name,
         apierror.show_key(name), show(t))
  end
  local bs = self._buffers
  bs[#bs + 1] = {name, t}
  self[name] = t
  return t
end
Module.register_buffer = api(register_buffer)

--- Registers a child module under `name` (a string; Sequential uses "0", "1", ...).
local function add_module(self, name, m)
  local fname = self._class_name .. ":add_module"
  if type(m) ~= "table" or not m._is_module then
    fail("%s: child %s must be a module, got %s", fname, apierror.show_key(name), show(m))
  end
  local cycle = M.cycle_error(self, m, fname)
  if cycle then fail("%s", cycle) end
  local cs = self._children
  cs[#cs + 1] = {name, m}
  local ps = parents[m]
  if ps == nil then
    ps = setmetatable({}, {__mode = "k"})
    parents[m] = ps
  end
  ps[self] = true
  invalidate(self)
  return m
end
Module.add_module = api(add_module)

-- Appends the distinct parameters of m's tree to out in depth-first order (own
-- parameters first, then each child's), using a child's cached list when it has one. A
-- module met again adds nothing new (its first visit added its whole tree).
local function gather(m, out, seen, visited)
  visited[m] = true
  local l = m._plist
  if l == nil then
    for _, np in ipairs(m._params) do
      local t = np[2]
      if not seen[t] then
        seen[t] = true
        out[#out + 1] = t
      end
    end
    for _, nc in ipairs(m._children) do
      if not visited[nc[2]] then gather(nc[2], out, seen, visited) end
    end
  else
    for _, t in ipairs(l) do
      if not seen[t] then
        seen[t] = true
        out[#out + 1] = t
      end
    end
  end
end

-- The distinct parameters of m's tree in depth-first order, cached in m._plist (only
-- there: caching every level of a deep tree would copy lists quadratically). Callers
-- must not change the list.
local function param_list(m)
  local l = m._plist
  if l ~= nil then return l end
  local cs = m._children
  if #m._params == 0 and #cs == 1 then
    l = param_list(cs[1][2])      -- a plain wrapper shares its child's list
  else
    l = {}
    gather(m, l, {}, {})
  end
  m._plist = l
  return l
end

-- Depth-first {name, tensor} pairs, in param_list's order. `parts` holds the name parts
-- of the path to m (joined once per parameter); a module met again (shared) adds nothing
-- new, since its first visit emitted its whole tree, so it is not walked again.
local function collect(m, parts, depth, out, seen, visited)
  visited[m] = true
  for _, np in ipairs(m._params) do
    local t = np[2]
    if not seen[t] then
      seen[t] = true
      parts[depth + 1] = np[1]
      out[#out + 1] = {table.concat(parts, ".", 1, depth + 1), t}
    end
  end
  for _, nc in ipairs(m._children) do
    if not visited[nc[2]] then
      parts[depth + 1] = nc[1]
      collect(nc[2], parts, depth + 1, out, seen, visited)
    end
  end
  return out
end

local function named(m)
  return collect(m, {}, 0, {}, {}, {})
end

-- Depth-first {name, tensor} pairs of the buffers of m's tree (each module once).
local function collect_buffers(m, parts, depth, out, visited)
  visited[m] = true
  for _, nb in ipairs(m._buffers or {}) do
    parts[depth + 1] = nb[1]
    out[#out + 1] = {table.concat(parts, ".", 1, depth + 1), nb[2]}
  end
  for _, nc in ipairs(m._children) do
    if not visited[nc[2]] then
      parts[depth + 1] = nc[1]
      collect_buffers(nc[2], parts, depth + 1, out, visited)
    end
  end
  return out
end

--- named_buffers() -> list of {name, tensor} ("1.running_mean", ...), depth-first.
function Module:named_buffers()
  return collect_buffers(self, {}, 0, {}, {})
end

--- named_parameters() -> list of {name, tensor} in a fixed order ("0.weight", "0.bias", ...).
function Module:named_parameters()
  return named(self)
end

--- parameters() -> list of tensors (views into one flat buffer; their .grad too).
-- Every call returns the same tensor objects.
function Module:parameters()
  settle(self)
  local list = param_list(self)
  return table.move(list, 1, #list, 1, {})
end

--- num_parameters() -> the number of scalar parameters.
function Module:num_parameters()
  local n = 0
  for _, t in ipairs(param_list(self)) do n = n + t:numel() end
  return n
end

--- requires_grad_([flag = true]): sets requires_grad on every parameter of the tree
-- (parameters require grad from register_parameter on, as PyTorch's; requires_grad_(false)
-- freezes them: model(x) then records nothing for them). Returns the module.
local function requires_grad_(self, flag)
  if flag ~= nil and type(flag) ~= "boolean" then
    fail("%s:requires_grad_: flag must be a boolean, got %s", self._class_name, show(flag))
  end
  for _, t in ipairs(param_list(self)) do t:requires_grad_(flag ~= false) end
  return self
end
Module.requires_grad_ = api(requires_grad_)

--- children() -> list of the direct child modules.
function Module:children()
  local list = {}
  for i, nc in ipairs(self._children) do list[i] = nc[2] end
  return list
end

--- flatten_parameters([dtype]): moves all parameters of this module tree into one
-- buffer (and their gradients into another) now, preserving values and the
-- tensors' identity: O(the tree's parameters). Layers call it at the end of their
-- _init (so does a custom module); containers leave it to the first call that needs
-- the layout (settle, below). Buffers handed out earlier by flat_parameters() are no
-- longer the parameters' storage afterwards. With a dtype, the parameters and their
-- gradients are converted to it on the way (Module:to).
function Module:flatten_parameters(dtype)
  local list = param_list(self)
  if #list == 0 then return self end
  local fp, fg = core.nn_flatten(list, dtype)
  local home, off = {fp = fp, fg = fg}, 0
  for _, t in ipairs(list) do
    home_of[t], offset_of[t] = home, off
    grad_home[t] = t.grad
    off = off + t:numel()
  end
  home.n = off
  flat_gen = flat_gen + 1
  return self
end

-- m's flat views (nil, nil unless its parameters are one run of one flat buffer, in
-- any order), worked out from the parameters' recorded places: O(m's parameters), then
-- cached until the next flatten anywhere. The same view objects come back while the run
-- has not moved. The cache holds the views and the buffer record weakly, so a module
-- whose parameters were re-homed by a container does not keep the old buffers alive.
local weak_values = {__mode = "v"}
local function flat_views(m)
  local c = m._flat
  -- (the views are held weakly: once collected, they are made again below)
  if c and c.gen == flat_gen and (c.none or (c.fp and c.fg)) then return c.fp, c.fg end
  local list = param_list(m)
  local home = home_of[list[1] or false]
  local first, last, count = math.huge, -1, 0
  for _, t in ipairs(list) do
    if home_of[t] ~= home then
      home = nil
      break
    end
    local o, n = offset_of[t], t:numel()
    if o < first then first = o end
    if o + n > last then last = o + n end
    count = count + n
  end
  if not (home and count > 0 and last - first == count) then
    m._flat = {gen = flat_gen, none = true}
    return nil, nil
  end
  if not (c and c.home == home and c.first == first and c.count == count and c.fp and c.fg) then
    c = setmetatable({home = home, first = first, count = count,
                      fp = home.fp:narrow(1, first + 1, count), fg = home.fg:narrow(1, first + 1, count)},
                     weak_values)
    m._flat = c
  end
  c.gen = flat_gen
  return c.fp, c.fg
end

-- The module at the top of m's tree: up through the modules holding it while each has
-- exactly one holder (a module held by two containers stops the climb: which tree it
-- belongs to is then the caller's choice). O(depth).
local function top_of(m)
  local top = m
  while true do
    local ps, only, n = parents[top], nil, 0
    if ps then
      for p in pairs(ps) do
        only, n = p, n + 1
        if n > 1 then break end
      end
    end
    if n ~= 1 then return top end
    top = only
  end
end

-- m's flat views after making the flat layout current: containers do not flatten when
-- they are built or grown (that made nested construction quadratic); the first call that
-- needs the layout (parameters, flat_parameters, zero_grad) flattens the top of m's tree
-- if its parameters are not one run yet. So every module sees what an eager flatten at
-- construction gave: the whole tree in one buffer, each submodule a run of it.
function settle(m)
  local c = m._flat
  if c and c.gen == flat_gen and (c.none or (c.fp and c.fg)) then return c.fp, c.fg end
  local top = top_of(m)
  if flat_views(top) == nil and #param_list(top) > 0 then Module.flatten_parameters(top) end
  return flat_views(m)
end

--- flat_parameters() -> flat_params, flat_grads: the 1-d buffers holding every
-- parameter and every gradient (for torch7-style functional optimizers).
function Module:flat_parameters()
  local fp, fg = settle(self)
  if fp == nil then
    -- level 2: the caller's line (a direct method, no api wrapper needed)
    if #param_list(self) == 0 then
      error(self._class_name .. ":flat_parameters: the module has no parameters", 2)
    end
    error(self._class_name .. ":flat_parameters: this module's parameters are not one run of "
          .. "a flat buffer (shared parameters?); call it on the top-level model", 2)
  end
  return fp, fg
end

--- to(dtype) / double() / float(): converts every parameter of this module's tree and its
-- gradient to dtype ("float32" or "float64") in place, keeping the tensors' identity (an
-- optimizer built before still holds them; its state must be made again for the new
-- dtype), and re-homes them in flat buffers of that dtype. A class holding other tensors
-- (running statistics) converts them in a method _to_dtype(dtype), called on every module
-- of the tree. Returns the module.
local function to_dtype(self, dtype)
  if dtype ~= "float32" and dtype ~= "float64" then
    fail("%s:to: dtype must be \"float32\" or \"float64\", got %s", self._class_name, show(dtype))
  end
  local stack, seen = {self}, {}
  while #stack > 0 do
    local m = table.remove(stack)
    if not seen[m] then
      seen[m] = true
      if m._to_dtype then m:_to_dtype(dtype) end
      for _, nc in ipairs(m._children) do stack[#stack + 1] = nc[2] end
    end
  end
  Module.flatten_parameters(self, dtype)
  return self
end
Module.to = api(to_dtype)
function Module:double() return Module.to(self, "float64") end
function Module:float() return Module.to(self, "float32") end

--- Gives each own parameter without a .grad its gradient view back, zeroed
-- (after an optimizer's zero_grad(set_to_none)); backward passes call it.
function Module:_reattach_grads()
  for _, np in ipairs(self._params) do
    local t = np[2]
    if t.grad == nil then
      local home = grad_home[t]
      if home == nil then
        home = core.zeros(t:shape(), {dtype = t.dtype})
        grad_home[t] = home
      end
      t.grad = home:zero_()
    end
  end
end

--- zero_grad([set_to_none]): every parameter's gradient to 0 (one fill of the
-- flat gradient buffer), or removed (.grad = nil) when set_to_none.
function Module:zero_grad(set_to_none)
  local list = param_list(self)
  if set_to_none then
    for _, t in ipairs(list) do t.grad = nil end
    return self
  end
  local _, fg = settle(self)
  if fg then fg:zero_() end
  for _, t in ipairs(list) do
    local g = t.grad
    local home = grad_home[t]
    if g == nil then
      if home then
        if not fg then home:zero_() end
        t.grad = home
      end
    elseif not (fg and rawequal(g, home)) then
      g:zero_()
    end
  end
  return self
end

--- train([mode = true]) / evaluate(): set the training flag of the whole tree
-- (Dropout, Dropout2d and BatchNorm look at it). Both return the module.
function Module:train(mode)
  local on = mode ~= false
  self.training = on
  for _, nc in ipairs(self._children) do nc[2]:train(on) end
  return self
end

function Module:evaluate()
  return self:train(false)
end
Module.eval = Module.evaluate

-- The parameters, then the buffers, as {name, tensor} pairs (state_dict's entries).
local function named_state(m)
  local list = named(m)
  for _, nb in ipairs(collect_buffers(m, {}, 0, {}, {})) do list[#list + 1] = nb end
  return list
end

--- state_dict() -> {name = tensor} (the live parameter and buffer tensors, not copies).
function Module:state_dict()
  local sd = {}
  for _, np in ipairs(named_state(self)) do sd[np[1]] = np[2] end
  return sd
end

--- load_state_dict(sd [, strict = true]): copies values into the parameters and buffers.
-- Everything is checked first (missing and, when strict, unexpected names;
-- shapes), so an error changes nothing.
local function load_state_dict(self, sd, strict)
  local fname = self._class_name .. ":load_state_dict"
  if type(sd) ~= "table" then fail("%s: expected a table, got %s", fname, show(sd)) end
  local list = named_state(self)
  local known = {}
  for _, np in ipairs(list) do
    local name, t = np[1], np[2]
    known[name] = true
    local v = sd[name]
    if v == nil then fail("%s: missing parameter '%s'", fname, name) end
    if not core.is_tensor(v) then
      fail("%s: '%s' must be a moonopt.Tensor, got %s", fname, name, show(v))
    end
    if not apierror.same_shape(t, v) then
      fail("%s: shape mismatch for '%s': parameter %s vs state %s", fname, name,
           apierror.shape_str(t), apierror.shape_str(v))
    end
  end
  if strict ~= false then
    for k in pairs(sd) do
      if not known[k] then fail("%s: unexpected key %s", fname, apierror.show_key(k)) end
    end
  end
  -- with grad mode off: the source may be another model's parameters, which require grad
  local before = E.grad_mode(false)
  local ok, err = pcall(function()
    for _, np in ipairs(list) do np[2]:copy_(sd[np[1]]) end
  end)
  E.grad_mode(before)
  if not ok then error(err, 0) end
  return self
end
Module.load_state_dict = api(load_state_dict)

--- One line describing the module itself; classes override it.
function Module.extra_repr()
  return ""
end

local function count_str(n)
  local s = tostring(n)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end
M.count_str = count_str

local function repr(m, indent)
  local head = m._class_name .. "(" .. m:extra_repr()
  if #m._children == 0 then
    local n = #m._params > 0 and m:num_parameters() or 0
    return head .. ")" .. (n > 0 and ("  -- " .. count_str(n) .. " params") or "")
  end
  local lines = {head}
  local pad = indent .. "  "
  for _, nc in ipairs(m._children) do
    lines[#lines + 1] = pad .. "(" .. nc[1] .. "): " .. repr(nc[2], pad)
  end
  lines[#lines + 1] = indent .. ")  -- " .. count_str(m:num_parameters()) .. " parameters"
  return table.concat(lines, "\n")
end

function Module:__tostring()
  return repr(self, "")
end

-- ---------------------------------------------------------------------------------------
-- model(x): the autograd path (docs/autograd.md "nn and autograd")
-- ---------------------------------------------------------------------------------------

-- The output and scratch buffers a forward writes into and reuses across calls. A module
-- class with buffers of other names lists them in `_scratch` (a list of field names).
local SCRATCH = {"output", "grad_input", "_buf", "_mean", "_rstd", "_mask"}

local function clear_scratch(mods)
  for _, m in ipairs(mods) do
    for _, k in ipairs(SCRATCH) do m[k] = nil end
    local extra = m._scratch
    if extra then
      for _, k in ipairs(extra) do m[k] = nil end
    end
  end
end

-- The modules of m's tree, each once (m first).
local function tree(m, out, seen)
  out, seen = out or {}, seen or {}
  if seen[m] then return out end
  seen[m] = true
  out[#out + 1] = m
  for _, nc in ipairs(m._children) do tree(nc[2], out, seen) end
  return out
end

-- A shallow copy of every module's fields (what its backward reads from its forward).
local function snapshot(mods)
  local s = {}
  for i, m in ipairs(mods) do
    local c = {}
    for k, v in pairs(m) do c[k] = v end
    s[i] = c
  end
  return s
end

-- Replaces each module's fields by those of snapshot s.
local function put(mods, s)
  for i, m in ipairs(mods) do
    for k in pairs(m) do m[k] = nil end
    for k, v in pairs(s[i]) do m[k] = v end
  end
end

local function finish_call(before, ok, ...)
  E.grad_mode(before)
  if not ok then error((...), 0) end
  return ...
end

-- The node's backward: the module's own backward, run with the module tree's fields as
-- its forward left them and with fresh zero .grad tensors on the parameters (the kernels
-- accumulate there), which are returned as the parameters' gradients, so the engine
-- accumulates them into the real .grad (or returns them, for mo.autograd.grad).
local function call_backward(node, g)
  local self, mods, params = node.module, node.mods, node.params
  if E.grad_mode() then
    error(self._class_name .. ": double backward (create_graph) through a module call is "
      .. "not supported (its backward is the module's C kernels); write the model with "
      .. "mo.nn.functional and tensor ops for that", 0)
  end
  local x, target = E.saved1(node), node.target
  local now = snapshot(mods)
  put(mods, node.state)
  -- every parameter a leaf whose .grad the module's kernels can add into (E.grad_sink):
  -- run backward on the real .grad, no fresh zero tensors, nothing for the engine to add
  local direct = true
  for i = 1, #params do
    if not E.grad_sink(node, i + 1) then
      direct = false
      break
    end
  end
  if direct then
    local ok, gi = pcall(function()
      if node.loss then return self:backward(x, target) * g end
      return self:backward(x, g, E.wants(node, 1))
    end)
    put(mods, now)
    if not ok then error(gi, 0) end
    return gi
  end
  local old = {}
  for i, p in ipairs(params) do
    old[i] = p.grad
    p.grad = core.zeros_like(p)
  end
  local ok, gi = pcall(function()
    if node.loss then return self:backward(x, target) * g end
    return self:backward(x, g, E.wants(node, 1))
  end)
  local grads = {}
  for i, p in ipairs(params) do
    grads[i] = E.wants(node, i + 1) and p.grad or nil
    p.grad = old[i]
  end
  put(mods, now)
  if not ok then error(gi, 0) end
  return gi, table.unpack(grads, 1, #params)
end

-- Records model(x, ...) as one node (x and the parameters its inputs).
local function record_call(self, x, ...)
  local mods = tree(self)
  clear_scratch(mods)  -- the forward writes into fresh buffers: the recorded output is its own
  local target = ...
  local y = finish_call(E.grad_mode(false), pcall(self.forward, self, x, ...))
  local loss = type(y) == "number"
  if loss then
    if core.is_tensor(target) and target.requires_grad then
      -- the node's inputs are the output and the parameters: the target's gradient would be lost
      E.fail("%s: a module call does not differentiate the target, which requires grad; use "
        .. "mo.nn.functional's loss for that", self._class_name)
    end
    y = core.tensor(y, {dtype = x.dtype})
  end
  if not core.is_tensor(y) or rawequal(y, x) then return y end  -- identity: nothing to record
  local params = param_list(self)
  local inputs = {x}
  for i, p in ipairs(params) do inputs[i + 1] = p end
  local node = E.record(self._class_name, inputs, {y}, call_backward, #params + 1)
  node.module, node.mods, node.params, node.loss, node.target = self, mods, params, loss, target
  node.state = snapshot(mods)
  E.save(node, x)
  clear_scratch(mods)  -- a later call (recorded or not) must not write into this call's buffers
  return y
end

-- Whether grad mode is on and x or a parameter of m's tree requires grad.
local function call_needs_grad(m, x)
  if not E.grad_mode() then return false end
  if x.requires_grad then return true end
  for _, p in ipairs(param_list(m)) do
    if p.requires_grad then return true end
  end
  return false
end

--- model(x, ...): model:forward(x, ...), recorded on the autograd tape as ONE node when
-- grad mode is on and x or a parameter requires grad; the node's backward is the module's
-- own backward. A class without its own backward (a module written with mo.nn.functional)
-- just runs its forward, whose ops record. A loss module returns a 0-d tensor then (its
-- forward's number otherwise).
function Module:__call(x, ...)
  if self.backward == Module.backward or not core.is_tensor(x) or not call_needs_grad(self, x) then
    return self:forward(x, ...)
  end
  return record_call(self, x, ...)
end

M.Module = Module
return M
