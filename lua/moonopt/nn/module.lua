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
local core = require "moonopt.core"

local M = {}

local Module = {}
Module.__index = Module
Module.__name = "moonopt.nn.Module"
Module._is_module = true
Module._class_name = "Module"

-- Each parameter's home in a flat gradient buffer (weak keys: no leak), used
-- to re-attach a gradient that an optimizer's zero_grad(set_to_none) removed.
local grad_home = setmetatable({}, {__mode = "k"})

--- Raises a formatted error without a position: constructors (whose errors
-- the class's __call re-raises at the user's line) and helpers use it.
function M.fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

--- Raises a formatted error at the caller of the method that calls it.
local function fail(fmt, ...)
  error(string.format(fmt, ...), 3)
end

local function describe(v)
  if v ~= v then return "nan" end
  if type(v) == "number" or type(v) == "string" or type(v) == "boolean" then return tostring(v) end
  return type(v)
end
M.describe = describe

--- Checks that v is an integer >= lo; `what` names it in the message.
function M.check_int(fname, what, v, lo)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v) and v == v
                                        and v > -2^53 and v < 2^53) then
    error(string.format("%s: %s must be an integer, got %s", fname, what, describe(v)), 0)
  end
  v = math.tointeger(v)
  if v < lo then
    error(string.format("%s: %s must be %s, got %d", fname, what,
                        lo == 1 and "a positive integer" or ("at least " .. lo), v), 0)
  end
  return v
end

--- Checks that v is a finite number in [lo, hi].
function M.check_number(fname, what, v, lo, hi)
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    error(string.format("%s: %s must be a number in [%g, %g], got %s", fname, what, lo, hi,
                        describe(v)), 0)
  end
  return v
end

--- Validates an options table: every key must be one of `allowed` (a set).
function M.check_options(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(string.format("%s: options must be a table, got %s", fname, type(opts)), 0)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      error(string.format("%s: unknown option '%s'", fname, tostring(k)), 0)
    end
  end
  return opts
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
    __call = function(c, ...)
      local self = setmetatable({}, c)
      self:_base_init()
      -- argument errors are raised without a position; re-raise them at the caller's line
      local ok, err = pcall(self._init, self, ...)
      if not ok then error(err, 2) end
      return self
    end,
  })
end

function Module:_base_init()
  self.training = true
  self._params = {}    -- own parameters: list of {name, tensor}
  self._children = {}  -- child modules: list of {name, module}
end

function Module._init() end

function Module:forward()
  error(self._class_name .. ":forward is not implemented", 2)
end

function Module:backward()
  error(self._class_name .. ":backward is not implemented", 2)
end

--- Registers a parameter tensor under `name` (call flatten_parameters() after the last one).
function Module:register_parameter(name, t)
  if not core.is_tensor(t) then
    fail("%s: parameter '%s' must be a moonopt.Tensor, got %s", self._class_name, tostring(name),
         type(t))
  end
  local ps = self._params
  ps[#ps + 1] = {name, t}
  self[name] = t
  return t
end

--- Registers a child module under `name` (a string; Sequential uses "0", "1", ...).
function Module:add_module(name, m)
  if type(m) ~= "table" or not m._is_module then
    fail("%s: child '%s' must be a module, got %s", self._class_name, tostring(name), describe(m))
  end
  local cs = self._children
  cs[#cs + 1] = {name, m}
  return m
end

-- Depth-first: own parameters first, then each child's; `seen` drops repeats.
local function collect(m, prefix, out, seen)
  for _, np in ipairs(m._params) do
    local t = np[2]
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = {prefix .. np[1], t}
    end
  end
  for _, nc in ipairs(m._children) do
    collect(nc[2], prefix .. nc[1] .. ".", out, seen)
  end
  return out
end

--- named_parameters() -> list of {name, tensor} in a fixed order ("0.weight", "0.bias", ...).
function Module:named_parameters()
  return collect(self, "", {}, {})
end

--- parameters() -> list of tensors (views into one flat buffer; their .grad too).
-- Every call returns the same tensor objects.
function Module:parameters()
  local list = {}
  for i, np in ipairs(collect(self, "", {}, {})) do list[i] = np[2] end
  return list
end

--- num_parameters() -> the number of scalar parameters.
function Module:num_parameters()
  local n = 0
  for _, np in ipairs(collect(self, "", {}, {})) do n = n + np[2]:numel() end
  return n
end

--- children() -> list of the direct child modules.
function Module:children()
  local list = {}
  for i, nc in ipairs(self._children) do list[i] = nc[2] end
  return list
end

-- Gives every module of the tree its own flat views when its parameters form
-- one run of the flat buffers (they do unless parameters are shared).
local function assign_flat(m, fp, fg, offsets)
  local first, last
  local count = 0
  for _, np in ipairs(collect(m, "", {}, {})) do
    local o = offsets[np[2]]
    local n = np[2]:numel()
    if first == nil or o < first then first = o end
    if last == nil or o + n > last then last = o + n end
    count = count + n
  end
  if first ~= nil and last - first == count and count > 0 then
    m._flat_params = fp:narrow(1, first + 1, count)
    m._flat_grads = fg:narrow(1, first + 1, count)
  else
    m._flat_params, m._flat_grads = nil, nil
  end
  m._param_list = nil
  for _, nc in ipairs(m._children) do assign_flat(nc[2], fp, fg, offsets) end
end

--- flatten_parameters(): moves all parameters of this module tree into one
-- buffer (and their gradients into another), preserving values and the
-- tensors' identity. Constructors call it; a custom module calls it at the end
-- of its _init. Buffers handed out earlier by flat_parameters() are no longer
-- the parameters' storage afterwards.
function Module:flatten_parameters()
  local named = collect(self, "", {}, {})
  local list = {}
  for i, np in ipairs(named) do list[i] = np[2] end
  if #list == 0 then
    self._flat_params, self._flat_grads = nil, nil
    return self
  end
  local fp, fg = core.nn_flatten(list)
  local offsets, off = {}, 0
  for _, t in ipairs(list) do
    offsets[t] = off
    grad_home[t] = t.grad
    off = off + t:numel()
  end
  assign_flat(self, fp, fg, offsets)
  return self
end

--- flat_parameters() -> flat_params, flat_grads: the 1-d buffers holding every
-- parameter and every gradient (for torch7-style functional optimizers).
function Module:flat_parameters()
  if self._flat_params == nil then
    if #collect(self, "", {}, {}) == 0 then
      error(self._class_name .. ":flat_parameters: the module has no parameters", 2)
    end
    error(self._class_name .. ":flat_parameters: this module's parameters are not one run of "
          .. "a flat buffer (shared parameters?); call it on the top-level model", 2)
  end
  return self._flat_params, self._flat_grads
end

-- The cached list of this tree's parameters (rebuilt after a flatten).
local function param_list(m)
  local l = m._param_list
  if l == nil then
    l = {}
    for i, np in ipairs(collect(m, "", {}, {})) do l[i] = np[2] end
    m._param_list = l
  end
  return l
end

--- Gives each own parameter without a .grad its gradient view back, zeroed
-- (after an optimizer's zero_grad(set_to_none)); backward passes call it.
function Module:_reattach_grads()
  for _, np in ipairs(self._params) do
    local t = np[2]
    if t.grad == nil then
      local home = grad_home[t]
      if home == nil then
        home = core.zeros(t:shape())
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
  local fg = self._flat_grads
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
-- (Dropout is active only in training mode). Both return the module.
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

--- state_dict() -> {name = tensor} (the live parameter tensors, not copies).
function Module:state_dict()
  local sd = {}
  for _, np in ipairs(collect(self, "", {}, {})) do sd[np[1]] = np[2] end
  return sd
end

--- load_state_dict(sd [, strict = true]): copies values into the parameters.
-- Everything is checked first (missing and, when strict, unexpected names;
-- shapes), so an error changes nothing.
function Module:load_state_dict(sd, strict)
  local fname = self._class_name .. ":load_state_dict"
  if type(sd) ~= "table" then fail("%s: expected a table, got %s", fname, type(sd)) end
  local named = collect(self, "", {}, {})
  local known = {}
  for _, np in ipairs(named) do
    local name, t = np[1], np[2]
    known[name] = true
    local v = sd[name]
    if v == nil then fail("%s: missing parameter '%s'", fname, name) end
    if not core.is_tensor(v) then
      fail("%s: '%s' must be a moonopt.Tensor, got %s", fname, name, type(v))
    end
    local a, b = t:shape(), v:shape()
    local same = #a == #b
    for i = 1, #a do same = same and a[i] == b[i] end
    if not same then
      fail("%s: shape mismatch for '%s': parameter {%s} vs state {%s}", fname, name,
           table.concat(a, ", "), table.concat(b, ", "))
    end
  end
  if strict ~= false then
    for k in pairs(sd) do
      if not known[k] then fail("%s: unexpected key '%s'", fname, tostring(k)) end
    end
  end
  for _, np in ipairs(named) do np[2]:copy_(sd[np[1]]) end
  return self
end

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

function Module:__call(...)
  return self:forward(...)
end

M.Module = Module
return M
