--- moonopt.optim.optimizer: the base class every optimizer shares.
--
-- A concrete optimizer is made with Optimizer.class(spec):
--   spec.name        "AdamW" (error messages start with it)
--   spec.defaults    option name -> default value (every option the class knows)
--   spec.presets     optional: flavor name -> option values (Adam/AdamW); defaults < preset
--                    < the user's options < a group's own keys
--   spec.check(o, err) validates one group's options; `err(fmt, ...)` raises "<name>: ..."
--   spec.prepare(group, cfg) -> cfg: what one group's update needs this step (cfg.args,
--                    the hyperparameters in the group kernel's order; reuses the old cfg)
--   spec.update(self, group, cfg) runs the kernel over the group's params (with a grad),
--                    usually Optimizer.run_group(core.optim_<alg>_group, ..., complete)
--   spec.state_tensors state keys that must hold tensors (checked by load_state_dict)
--   spec.check_state(st) optional: a message when a loaded state table is incomplete
--   spec.state_shape(self, p) optional: the shape of the state's tensors (default: p's)
--   spec.effective_wd(self, group, j) optional: the weight decay describe() shows
--   spec.setup(self) optional: runs after construction and after load_state_dict
-- moonopt.optim.kernel (kernel.lua) builds prepare and update for a class whose group kernel
-- takes the group's options as they are.
--
-- Instances: opt.param_groups (a list of groups: {params = {...}, names = {...} or nil,
-- every option filled in}), opt.state (param tensor -> state table), opt.skip_nonfinite,
-- opt.skipped_steps. Methods: step(closure), zero_grad(set_to_none), state_dict(),
-- load_state_dict(sd), add_param_group(group), describe([file]).
local core = require "moonopt.core"

local is_tensor = core.is_tensor
local optim_check = core.optim_check

local Optimizer = {}
Optimizer.__index = Optimizer

local function copy(v)
  if type(v) ~= "table" or is_tensor(v) then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end
Optimizer.copy = copy

-- tostring as PyTorch prints numbers in its messages ("-1", "1.5", "nan")
local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" and v ~= v then return "nan" end
  return tostring(v)
end
Optimizer.show = show

-- Option and layout errors carry no "file:line:" prefix: they name the class and the option.
local function errorf(fmt, ...)
  error(string.format(fmt, ...), 0)
end

-- Keys of a group table that are not options.
local NOT_OPTIONS = {params = true, names = true}
-- Options of the optimizer itself (not per group).
local OWN_OPTIONS = {skip_nonfinite = true}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Turns one group's `params` value into parallel lists of tensors and names (names may be nil).
-- Accepted: a list of tensors; a list of {name, tensor} pairs; a map name -> tensor.
local function read_params(cls, value, where)
  if is_tensor(value) then
    errorf("%s: params%s must be a list of tensors, not a single tensor (wrap it: {t})",
           cls.name, where)
  end
  if type(value) ~= "table" then
    errorf("%s: params%s must be a list of tensors, got %s", cls.name, where, type(value))
  end
  local tensors, names, any_name = {}, {}, false
  if #value == 0 and next(value) ~= nil then
    -- a map name -> tensor, in name order so the layout is reproducible
    for _, name in ipairs(sorted_keys(value)) do
      local t = value[name]
      if type(name) ~= "string" or not is_tensor(t) then
        errorf("%s: params%s: entry %s is not a tensor", cls.name, where, show(name))
      end
      tensors[#tensors + 1], names[#names + 1], any_name = t, name, true
    end
  else
    for i, v in ipairs(value) do
      if is_tensor(v) then
        tensors[i] = v
      elseif type(v) == "table" and type(v[1]) == "string" and is_tensor(v[2]) then
        tensors[i], names[i], any_name = v[2], v[1], true
      else
        errorf("%s: params%s: entry %d is not a tensor (got %s)", cls.name, where, i,
               type(v) == "table" and "table" or type(v))
      end
    end
  end
  return tensors, any_name and names or nil
end

-- Options of one group: defaults < flavor preset < user options < group keys (copied).
local function resolve(cls, opts, group)
  local spec = cls.spec
  local r = {}
  for k, v in pairs(spec.defaults) do r[k] = copy(v) end
  if spec.presets then
    local flavor = group.flavor
    if flavor == nil then flavor = opts.flavor end
    if flavor == nil then flavor = spec.defaults.flavor end
    local preset = spec.presets[flavor]
    if preset == nil then
      local known = sorted_keys(spec.presets)
      errorf("%s: unknown flavor %s (known: %s)", cls.name, show(flavor), table.concat(known, ", "))
    end
    for k, v in pairs(preset) do r[k] = copy(v) end
  end
  for k, v in pairs(opts) do
    if not OWN_OPTIONS[k] then r[k] = copy(v) end
  end
  for k, v in pairs(group) do
    if not NOT_OPTIONS[k] then r[k] = copy(v) end
  end
  return r
end

local function check_known(cls, t, where)
  for k in pairs(t) do
    if cls.spec.defaults[k] == nil and not NOT_OPTIONS[k] and not OWN_OPTIONS[k] then
      errorf("%s: unknown option '%s'%s", cls.name, tostring(k), where)
    end
  end
end

-- Validates a group's options; raises "<name>: <message>".
function Optimizer:_check_group(group)
  local err = self._err
  if err == nil then
    local name = self.name
    err = function(fmt, ...) error(name .. ": " .. string.format(fmt, ...), 0) end
    self._err = err
  end
  self.spec.check(group, err)
end

local function new_group(self, g, opts, where)
  local cls = self
  local tensors, names
  if g.params == nil then
    errorf("%s: param group%s has no 'params'", cls.name, where)
  end
  tensors, names = read_params(cls, g.params, where)
  check_known(cls, g, " in param group" .. where)
  local group = resolve(cls, opts, g)
  group.params = tensors
  group.names = names or (g.names and copy(g.names)) or nil
  return group
end

--- Constructs an optimizer of class `cls`.
local function construct(cls, params, opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    errorf("%s: options must be a table, got %s", cls.name, type(opts))
  end
  check_known(cls, opts, "")
  if params == nil or type(params) ~= "table" or is_tensor(params) then
    errorf("%s: params must be a list of tensors or of param groups, got %s", cls.name,
           is_tensor(params) and "a single tensor (wrap it: {t})" or type(params))
  end
  local self = setmetatable({}, cls)
  self.param_groups = {}
  self.state = {}
  self.skipped_steps = 0
  self.skip_nonfinite = opts.skip_nonfinite and true or false
  if opts.skip_nonfinite ~= nil and type(opts.skip_nonfinite) ~= "boolean" then
    errorf("%s: option 'skip_nonfinite' must be a boolean, got %s", cls.name, type(opts.skip_nonfinite))
  end
  self._opts = copy(opts)
  local first = params[1]
  local is_groups = type(first) == "table" and not is_tensor(first) and first.params ~= nil
  if next(params) == nil then
    errorf("%s: optimizer got an empty parameter list", cls.name)
  end
  if is_groups then
    for i, g in ipairs(params) do
      if type(g) ~= "table" or is_tensor(g) then
        errorf("%s: param group %d must be a table with 'params'", cls.name, i)
      end
      self.param_groups[i] = new_group(self, g, opts, " " .. i)
    end
  else
    self.param_groups[1] = new_group(self, {params = params}, opts, "")
  end
  local seen = {}
  for gi, group in ipairs(self.param_groups) do
    self:_check_group(group)
    for j, p in ipairs(group.params) do
      if seen[p] then
        errorf("%s: some parameters appear in more than one parameter group (group %d, param %d)",
               cls.name, gi, j)
      end
      seen[p] = true
    end
  end
  if cls.spec.setup then cls.spec.setup(self) end
  return self
end

--- Makes a class from a spec (see the top of this file).
function Optimizer.class(spec)
  local cls = setmetatable({}, {
    __index = Optimizer,
    __call = function(c, params, opts)
      local o = construct(c, params, opts)
      return o
    end,
    __tostring = function() return "moonopt.optim." .. spec.name end,
  })
  cls.__index = cls
  cls.__tostring = Optimizer.__tostring
  cls.name = spec.name
  cls.spec = spec
  cls.defaults = spec.defaults
  return cls
end

--- Adds a param group (options not given take the optimizer's options).
function Optimizer:add_param_group(g)
  if type(g) ~= "table" or is_tensor(g) then
    errorf("%s: add_param_group: expected a table with 'params'", self.name)
  end
  local group = new_group(getmetatable(self), g, self._opts, " " .. (#self.param_groups + 1))
  self:_check_group(group)
  local seen = {}
  for _, og in ipairs(self.param_groups) do
    for _, p in ipairs(og.params) do seen[p] = true end
  end
  for _, p in ipairs(group.params) do
    if seen[p] then
      errorf("%s: some parameters appear in more than one parameter group", self.name)
    end
  end
  self.param_groups[#self.param_groups + 1] = group
  if self.spec.setup then self.spec.setup(self) end
end

--- One optimization step over every param with a .grad. `closure` (optional) is called
-- first, as PyTorch does, and its result returned. Nothing changes when anything is
-- wrong: options and gradients are checked for every group before any update.
function Optimizer:step(closure)
  local loss
  if closure ~= nil then
    if type(closure) ~= "function" then
      errorf("%s: step: closure must be a function, got %s", self.name, type(closure))
    end
    loss = closure()
  end
  local groups, spec = self.param_groups, self.spec
  local cfgs = self._cfgs
  if not cfgs then cfgs = {}; self._cfgs = cfgs end
  local finite = true
  local want_finite = self.skip_nonfinite
  for gi = 1, #groups do
    local group = groups[gi]
    self:_check_group(group)
    if not optim_check(group.params, self.name, want_finite) then finite = false end
    cfgs[gi] = spec.prepare(group, cfgs[gi])
  end
  if not finite then
    self.skipped_steps = self.skipped_steps + 1
    return loss
  end
  local update = spec.update
  for gi = 1, #groups do
    update(self, groups[gi], cfgs[gi])
  end
  return loss
end

--- Fills every gradient with 0; with set_to_none (true or {set_to_none = true}) removes them.
function Optimizer:zero_grad(set_to_none)
  if type(set_to_none) == "table" then set_to_none = set_to_none.set_to_none end
  for _, group in ipairs(self.param_groups) do
    for _, p in ipairs(group.params) do
      local g = p.grad
      if g ~= nil then
        if set_to_none then p.grad = nil else g:fill(0) end
      end
    end
  end
end

-- ---- state_dict -------------------------------------------------------------------------

-- A copy of plain data where every tensor, at any depth, is cloned.
local function deep_clone(v)
  if is_tensor(v) then return v:clone() end
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_clone(x) end
  return c
end

local function group_options(group)
  local o = {}
  for k, v in pairs(group) do
    if not NOT_OPTIONS[k] then o[k] = copy(v) end
  end
  return o
end

--- A snapshot: plain Lua data plus tensors (copies), laid out as PyTorch's:
--   {state = {[param index] = {step = n, exp_avg = tensor, ...}},
--    param_groups = {{lr = ..., ..., params = {1, 2, ...}}, ...},
--    skipped_steps = n}
-- Param indices count 1, 2, ... over the groups in order.
function Optimizer:state_dict()
  local sd = {state = {}, param_groups = {}, skipped_steps = self.skipped_steps}
  local index = 0
  for gi, group in ipairs(self.param_groups) do
    local g = group_options(group)
    g.params = {}
    for j, p in ipairs(group.params) do
      index = index + 1
      g.params[j] = index
      local st = self.state[p]
      if st ~= nil then sd.state[index] = deep_clone(st) end
    end
    sd.param_groups[gi] = g
  end
  return sd
end

--- Restores a state_dict. Everything is checked before anything changes: the group count,
-- each group's param count, every state entry's index, keys and tensor shapes, and the
-- hyperparameters. The state tensors are copied, so the dict stays independent.
function Optimizer:load_state_dict(sd)
  local name = self.name
  local function fail(fmt, ...)
    error(name .. ": load_state_dict: " .. string.format(fmt, ...), 0)
  end
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    fail("expected a table with 'state' and 'param_groups'")
  end
  if #sd.param_groups ~= #self.param_groups then
    fail("the state dict has %d param groups, the optimizer has %d", #sd.param_groups,
         #self.param_groups)
  end
  local params = {}
  local new_groups = {}
  for gi, group in ipairs(self.param_groups) do
    local sg = sd.param_groups[gi]
    if type(sg) ~= "table" or type(sg.params) ~= "table" then
      fail("param group %d is not a table with 'params'", gi)
    end
    if #sg.params ~= #group.params then
      fail("param group %d has %d params in the state dict, %d in the optimizer", gi, #sg.params,
           #group.params)
    end
    local ng = {}
    for k, v in pairs(group) do ng[k] = v end
    for k, v in pairs(sg) do
      if not NOT_OPTIONS[k] then
        -- initial_lr is what a schedule records in each group (as PyTorch's do)
        if self.spec.defaults[k] == nil and k ~= "initial_lr" then
          fail("param group %d: unknown option '%s'", gi, tostring(k))
        end
        ng[k] = copy(v)
      end
    end
    local ok, msg = pcall(self._check_group, self, ng)
    if not ok then fail("param group %d: %s", gi, msg) end
    for j, idx in ipairs(sg.params) do
      if math.type(idx) ~= "integer" then
        fail("param group %d: params[%d] must be an integer index, got %s", gi, j, show(idx))
      end
      if params[idx] ~= nil then fail("param index %d appears twice", idx) end
      params[idx] = group.params[j]
    end
    new_groups[gi] = ng
  end
  local new_state = {}
  local tensor_keys = self.spec.state_tensors or {}
  for idx, s in pairs(sd.state) do
    local p = params[idx]
    if p == nil then fail("state for param #%s, which no param group lists", show(idx)) end
    if type(s) ~= "table" then fail("state of param #%d must be a table", idx) end
    -- every tensor, nested ones included, must have the shape the class expects
    local want = self.spec.state_shape and self.spec.state_shape(self, p) or p:shape()
    local function check_tensors(v, path)
      if is_tensor(v) then
        local got = v:shape()
        local ok = #got == #want
        for i = 1, #want do ok = ok and got[i] == want[i] end
        if not ok then
          fail("state of param #%d: %s has shape {%s}, the param has shape {%s}", idx, path,
               table.concat(got, ", "), table.concat(want, ", "))
        end
      elseif type(v) == "table" then
        for k, x in pairs(v) do check_tensors(x, path .. "." .. tostring(k)) end
      end
    end
    for k, v in pairs(s) do check_tensors(v, tostring(k)) end
    local fresh = deep_clone(s)
    if self.spec.check_state then
      local msg = self.spec.check_state(fresh, new_groups, p)
      if msg then fail("state of param #%d: %s", idx, msg) end
    else
      if type(fresh.step) ~= "number" then fail("state of param #%d has no numeric 'step'", idx) end
      for _, k in ipairs(tensor_keys) do
        if fresh[k] == nil then fail("state of param #%d has no '%s'", idx, k) end
      end
    end
    new_state[p] = fresh
  end
  if sd.skipped_steps ~= nil and math.type(sd.skipped_steps) ~= "integer" then
    fail("skipped_steps must be an integer")
  end
  -- commit: nothing above changed the optimizer
  for gi, ng in ipairs(new_groups) do
    local group = self.param_groups[gi]
    for k in pairs(group) do
      if not NOT_OPTIONS[k] then group[k] = nil end
    end
    for k, v in pairs(ng) do group[k] = v end
  end
  self.state = new_state
  self.skipped_steps = sd.skipped_steps or 0
  self._cfgs = nil
  if self.spec.setup then self.spec.setup(self) end
end

-- ---- describe ---------------------------------------------------------------------------

local function fmt_num(v)
  if v == nil then return "-" end
  if type(v) ~= "number" then return tostring(v) end
  return string.format("%.4g", v)
end

--- A table of every parameter: group, name (when known), shape, lr and weight decay (the
-- effective one: 0 for params a flavor or exclude_from_weight_decay exempts). Returned as a
-- string; also written to `file` when given (e.g. io.stdout).
function Optimizer:describe(file)
  local lines = {}
  local flavor = self.param_groups[1] and self.param_groups[1].flavor
  lines[1] = string.format("%s%s: %d param groups, skip_nonfinite=%s", self.name,
                           flavor and (" (flavor " .. flavor .. ")") or "", #self.param_groups,
                           tostring(self.skip_nonfinite))
  local index = 0
  for gi, group in ipairs(self.param_groups) do
    for j, p in ipairs(group.params) do
      index = index + 1
      local pname = group.names and group.names[j] or ("#" .. index)
      local wd = group.weight_decay
      if self.spec.effective_wd then wd = self.spec.effective_wd(self, group, j) end
      lines[#lines + 1] = string.format("  group %d  %-24s {%s}  lr=%s  weight_decay=%s", gi,
                                        pname, table.concat(p:shape(), ", "), fmt_num(group.lr),
                                        fmt_num(wd))
    end
  end
  local text = table.concat(lines, "\n") .. "\n"
  if file ~= nil then file:write(text) end
  return text
end

function Optimizer:__tostring()
  local n = #self.param_groups
  return string.format("moonopt.optim.%s (%d param group%s)", self.name, n, n == 1 and "" or "s")
end

-- ---- the update of one group ------------------------------------------------------------

local unpack = table.unpack

--- Runs a group kernel of the binding (core.optim_<alg>_group) over a group: one C call
-- does every param with a .grad; when a param's state is missing or lacks a tensor the
-- options need, the kernel stops there, complete(p, state_or_nil, cfg) makes it whole, and
-- the kernel goes on from that param. cfg.args holds the hyperparameters in the kernel's
-- order, cfg.mask (or false) the params exempt from weight decay.
function Optimizer.run_group(kernel, self, group, cfg, complete)
  local state, ps, args, n = self.state, group.params, cfg.args, #cfg.args
  local mask = cfg.mask or nil
  local j = kernel(ps, state, 1, mask, unpack(args, 1, n))
  local last
  while j do
    if j == last then
      error(self.name .. ": internal error: the state of param #" .. j .. " is incomplete", 0)
    end
    last = j
    local p = ps[j]
    state[p] = complete(p, state[p], cfg)
    j = kernel(ps, state, j, mask, unpack(args, 1, n))
  end
end

-- ---- shared option checks (PyTorch's messages) --------------------------------------------

local C = {}
Optimizer.checks = C

function C.number(o, err, key)
  local v = o[key]
  if type(v) ~= "number" then err("option '%s' must be a number, got %s", key, type(v)) end
  if v ~= v then err("option '%s' must not be NaN", key) end
  return v
end

function C.boolean(o, err, key)
  local v = o[key]
  if type(v) ~= "boolean" then err("option '%s' must be a boolean, got %s", key, type(v)) end
  return v
end

function C.lr(o, err)
  local v = C.number(o, err, "lr")
  if v < 0 or v == math.huge then err("Invalid learning rate: %s", show(v)) end
end

function C.eps(o, err, key)
  key = key or "eps"
  local v = C.number(o, err, key)
  if v <= 0 or v == math.huge then err("Invalid epsilon value: %s", show(v)) end
end

function C.weight_decay(o, err)
  local v = C.number(o, err, "weight_decay")
  if v < 0 or v == math.huge then err("Invalid weight_decay value: %s", show(v)) end
end

function C.betas(o, err)
  local b = o.betas
  if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" then
    err("option 'betas' must be a table of two numbers, got %s", type(b))
  end
  for i = 1, 2 do
    if not (b[i] >= 0 and b[i] < 1) then
      err("Invalid beta parameter at index %d: %s (betas[%d] must be in [0, 1))", i, show(b[i]), i)
    end
  end
end

-- lr, betas, eps and weight_decay, in this order: what every Adam-style optimizer checks.
function C.adam_family(o, err)
  C.lr(o, err)
  C.betas(o, err)
  C.eps(o, err)
  C.weight_decay(o, err)
end

function C.nonneg(o, err, key, what)
  local v = C.number(o, err, key)
  if v < 0 or v == math.huge then err("Invalid %s value: %s", what or key, show(v)) end
end

return Optimizer
