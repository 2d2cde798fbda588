--- moonopt.optim.optimizer: the base class every optimizer shares.
--
-- A concrete optimizer is made with Optimizer.class(spec):
--   spec.name        "AdamW" (error messages start with it)
--   spec.kernel      the core's descriptor name ("adam"): the C kernel that steps it. The
--                    descriptor (core/optim_<alg>.c) names the options the kernel reads and
--                    the state it keeps; step() hands it the groups and state in one call
--                    (core.optim_step), which reads options by name and creates state.
--   spec.defaults    option name -> default value (every option the class knows)
--   spec.presets     optional: flavor name -> option values (Adam/AdamW); defaults < preset
--                    < the user's options < a group's own keys
--   spec.check(o, err) validates one group's options; `err(fmt, ...)` raises "<name>: ..."
--   spec.before_step(self, err) optional: refuses a step (ScheduleFreeAdamW in eval mode)
--   spec.masks(self) optional: {[gi] = {[j] = true}}: params that step with weight decay 0
--   spec.state_shape(self, p) optional: the shape of the state's tensors (default: p's)
--   spec.check_state(st) optional: a message when a loaded state is wrong (classes
--                    without a kernel; the others are checked from the descriptor)
--   spec.effective_wd(self, group, j) optional: the weight decay describe() shows
--   spec.setup(self) optional: runs after construction and after load_state_dict
-- See docs/design.md "Adding an optimizer".
--
-- Instances: opt.param_groups (a list of groups: {params = {...}, names = {...} or nil,
-- every option filled in}), opt.state (param tensor -> state table), opt.skip_nonfinite,
-- opt.skipped_steps. Methods: step(closure), zero_grad(set_to_none), state_dict(),
-- load_state_dict(sd), add_param_group(group), describe([file]).
-- Errors name the class and point at the caller's line (moonopt.apierror).
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"

local is_tensor = core.is_tensor
local is_lean = core.is_lean
local optim_step = core.optim_step
local fail, api, show, show_key = apierror.fail, apierror.api, apierror.show, apierror.show_key

local Optimizer = {}
Optimizer.__index = Optimizer

local function copy(v)
  if type(v) ~= "table" or is_tensor(v) then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = copy(x) end
  return c
end
Optimizer.copy = copy

-- Optimizer.show is apierror.show, the one quoter of the library's messages (-1, 1.5, nan,
-- string "x", a table), exported for optimizer classes (docs/api.md). Option and layout errors name the class and the
-- option; they are raised with apierror.fail and the public methods (construction, step,
-- add_param_group, load_state_dict) re-raise them at the caller's line (apierror.api).
Optimizer.show = show

-- The message of a caught error (a tagged apierror or a plain string).
local function message(e)
  if type(e) == "table" and e.msg then return e.msg end
  return tostring(e)
end

-- Keys of a group table that are not options.
local NOT_OPTIONS = {params = true, names = true}
Optimizer.NOT_OPTIONS = NOT_OPTIONS
-- Options of the optimizer itself (not per group).
local OWN_OPTIONS = {skip_nonfinite = true, shard_state = true}

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
    fail("%s: params%s must be a list of tensors, not a single tensor (wrap it: {t})",
           cls.name, where)
  end
  if type(value) ~= "table" then
    fail("%s: params%s must be a list of tensors, got %s", cls.name, where, show(value))
  end
  local tensors, names, any_name = {}, {}, false
  if #value == 0 and next(value) ~= nil then
    -- a map name -> tensor, in name order so the layout is reproducible
    for _, name in ipairs(sorted_keys(value)) do
      local t = value[name]
      if type(name) ~= "string" or not is_tensor(t) then
        fail("%s: params%s: entry %s is not a tensor", cls.name, where, show(name))
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
        fail("%s: params%s: entry %d is not a tensor (got %s)", cls.name, where, i, show(v))
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
      fail("%s: unknown flavor %s (known: %s)", cls.name, show(flavor), table.concat(known, ", "))
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

-- The options of lean state (docs/optimizers.md "Lean optimizer state"); the classes that
-- keep it list them in their defaults.
local LEAN_OPTIONS = {state_dtype = true, state_rounding = true}

local function check_known(cls, t, where)
  for k in pairs(t) do
    if cls.spec.defaults[k] == nil and not NOT_OPTIONS[k] and not OWN_OPTIONS[k] then
      if LEAN_OPTIONS[k] then
        fail("%s: %s = %s is not supported: lean state is kept by Adam, AdamW, Lion and SGD "
             .. "(with momentum)%s", cls.name, k, show(t[k]), where)
      end
      fail("%s: unknown option %s%s", cls.name, show_key(k), where)
    end
  end
end

-- Validates a group's options; raises "<name>: <message>". Keys that are no option of the
-- class (a typo set on opt.param_groups[i]) are refused too.
local function check_group(self, group, gi)
  local err = self._err
  if err == nil then
    local name = self.name
    err = function(fmt, ...) fail("%s: %s", name, string.format(fmt, ...)) end
    self._err = err
  end
  local defaults = self.spec.defaults
  for k in pairs(group) do
    if defaults[k] == nil and not NOT_OPTIONS[k] and k ~= "initial_lr" then
      err("unknown option %s in param group %d (a key set on opt.param_groups[%d]?)",
          show_key(k), gi or 0, gi or 0)
    end
  end
  self.spec.check(group, err)
end
Optimizer._check_group = api(check_group)

local function new_group(self, g, opts, where)
  local cls = self
  local tensors, names
  if g.params == nil then
    fail("%s: param group%s has no 'params'", cls.name, where)
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
    fail("%s: options must be a table, got %s", cls.name, show(opts))
  end
  check_known(cls, opts, "")
  if params == nil or type(params) ~= "table" or is_tensor(params) then
    fail("%s: params must be a list of tensors or of param groups, got %s", cls.name,
           is_tensor(params) and "a single tensor (wrap it: {t})" or show(params))
  end
  if type(params.parameters) == "function" then
    fail("%s: params must be a list of tensors or of param groups, got a module "
           .. "(pass model:parameters() or model:named_parameters())", cls.name)
  end
  local self = setmetatable({}, cls)
  self.param_groups = {}
  self.state = {}
  self.skipped_steps = 0
  self.skip_nonfinite = opts.skip_nonfinite and true or false
  if opts.skip_nonfinite ~= nil and type(opts.skip_nonfinite) ~= "boolean" then
    fail("%s: option 'skip_nonfinite' must be a boolean, got %s", cls.name, show(opts.skip_nonfinite))
  end
  self._opts = copy(opts)
  local first = params[1]
  local is_groups = type(first) == "table" and not is_tensor(first) and first.params ~= nil
  if next(params) == nil then
    fail("%s: optimizer got an empty parameter list", cls.name)
  end
  if is_groups then
    for i, g in ipairs(params) do
      if type(g) ~= "table" or is_tensor(g) then
        fail("%s: param group %d must be a table with 'params'", cls.name, i)
      end
      self.param_groups[i] = new_group(self, g, opts, " " .. i)
    end
  else
    self.param_groups[1] = new_group(self, {params = params}, opts, "")
  end
  local seen = {}
  for gi, group in ipairs(self.param_groups) do
    check_group(self, group, gi)
    for j, p in ipairs(group.params) do
      if seen[p] then
        fail("%s: some parameters appear in more than one parameter group (group %d, param %d)",
               cls.name, gi, j)
      end
      seen[p] = true
    end
  end
  if cls.spec.setup then cls.spec.setup(self) end
  -- ZeRO-1 across MPI ranks (moonopt.dist.zero; docs/distributed.md "ZeRO-1")
  if opts.shard_state ~= nil and type(opts.shard_state) ~= "boolean" then
    fail("%s: option 'shard_state' must be a boolean, got %s", cls.name, show(opts.shard_state))
  end
  if opts.shard_state then require("moonopt.dist.zero").attach(self) end
  return self
end

--- Makes a class from a spec (see the top of this file).
function Optimizer.class(spec)
  local cls = setmetatable({}, {
    __index = Optimizer,
    __call = api(function(c, params, opts)
      local o = construct(c, params, opts)
      return o
    end),
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
local function add_param_group(self, g)
  if type(g) ~= "table" or is_tensor(g) then
    fail("%s: add_param_group: expected a table with 'params'", self.name)
  end
  local group = new_group(getmetatable(self), g, self._opts, " " .. (#self.param_groups + 1))
  check_group(self, group, #self.param_groups + 1)
  local seen = {}
  for _, og in ipairs(self.param_groups) do
    for _, p in ipairs(og.params) do seen[p] = true end
  end
  for _, p in ipairs(group.params) do
    if seen[p] then
      fail("%s: some parameters appear in more than one parameter group", self.name)
    end
  end
  self.param_groups[#self.param_groups + 1] = group
  if self.spec.setup then self.spec.setup(self) end
end

Optimizer.add_param_group = api(add_param_group)

--- One optimization step over every param with a .grad. `closure` (optional) is called
-- first, as PyTorch does, and its result returned. Nothing changes when anything is
-- wrong: the options of every group, then (in the one C call) every gradient and every
-- state tensor and number of every param, are checked before the first write.
local function step(self, closure)
  local loss
  if closure ~= nil then
    if type(closure) ~= "function" then
      fail("%s: step: closure must be a function, got %s", self.name, show(closure))
    end
    loss = closure()
  end
  local groups, spec = self.param_groups, self.spec
  for gi = 1, #groups do
    check_group(self, groups[gi], gi)
    if self._zero and (groups[gi].state_dtype or "float32") ~= "float32" then
      fail("%s: step: shard_state keeps float32 state only (param group %d has state_dtype %s)",
           self.name, gi, show(groups[gi].state_dtype))
    end
  end
  if spec.before_step then spec.before_step(self, self._err) end
  local masks = spec.masks and spec.masks(self) or nil
  local ok, stepped
  if self._zero then
    ok, stepped = true, require("moonopt.dist.zero").step(self, masks)
  else
    ok, stepped = pcall(optim_step, spec.kernel, self.name, groups, self.state, self.skip_nonfinite, masks)
  end
  if not ok then fail("%s", message(stepped)) end
  if not stepped then self.skipped_steps = self.skipped_steps + 1 end
  return loss
end
Optimizer.step = api(step)

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

-- A copy of plain data where every tensor and lean state object, at any depth, is cloned.
local function deep_clone(v)
  if is_tensor(v) or is_lean(v) then return v:clone() end
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
-- With shard_state (ZeRO-1) the whole state is gathered first: a collective, every rank
-- calls it, and every rank gets the unsharded state dict (loadable at any world size).
function Optimizer:state_dict()
  local state = self.state
  if self._zero then state = require("moonopt.dist.zero").full_state(self) end
  local sd = {state = {}, param_groups = {}, skipped_steps = self.skipped_steps}
  local index = 0
  for gi, group in ipairs(self.param_groups) do
    local g = group_options(group)
    g.params = {}
    for j, p in ipairs(group.params) do
      index = index + 1
      g.params[j] = index
      local st = state[p]
      if st ~= nil then sd.state[index] = deep_clone(st) end
    end
    sd.param_groups[gi] = g
  end
  return sd
end

local MAX_STEP = 2 ^ 53

-- A step count as a state may hold it: an integer in [0, 2^53] (as an integer), else nil.
local function step_value(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v > MAX_STEP or v ~= math.floor(v) then
    return nil
  end
  return math.tointeger(v)
end
Optimizer._step_value = step_value

-- What the kernel's descriptor says a state holds (cached per class).
local function kernel_info(self)
  local spec = self.spec
  if spec.kernel == nil then return nil end
  local info = spec._info
  if info == nil then
    info = core.optim_info(spec.kernel)
    spec._info = info
  end
  return info
end

-- Checks one loaded state table against the descriptor; returns a message or nil. Integral
-- float step counts become integers.
local function check_kernel_state(info, st)
  if info.counts_steps then
    local s = step_value(st.step)
    if s == nil then
      return string.format("'step' must be an integer in [0, 2^53], got %s", show(st.step))
    end
    st.step = s
  end
  for _, b in ipairs(info.buffers) do
    local v = st[b.name]
    if v == nil and b.when == nil then return "no '" .. b.name .. "'" end
    if v ~= nil and not is_tensor(v) and not (b.lean and is_lean(v)) then
      return string.format("'%s' must be a tensor, got %s", b.name, show(v))
    end
  end
  for _, sc in ipairs(info.scalars) do
    local v = st[sc.name]
    if v == nil and sc.input then return "no '" .. sc.name .. "'" end
    if v ~= nil and (type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge) then
      return string.format("'%s' must be a finite number, got %s", sc.name, show(v))
    end
  end
  return nil
end

-- The option groups of a state dict, checked against the optimizer's groups; returns the new
-- groups and the map param index -> param.
local function load_groups(self, sd, lfail)
  local params, new_groups, group_of = {}, {}, {}
  for gi, group in ipairs(self.param_groups) do
    local sg = sd.param_groups[gi]
    if type(sg) ~= "table" or type(sg.params) ~= "table" then
      lfail("param group %d is not a table with 'params'", gi)
    end
    if #sg.params ~= #group.params then
      lfail("param group %d has %d params in the state dict, %d in the optimizer", gi, #sg.params,
            #group.params)
    end
    local ng = {}
    for k, v in pairs(group) do ng[k] = v end
    for k, v in pairs(sg) do
      if not NOT_OPTIONS[k] then
        -- initial_lr is what a schedule records in each group (as PyTorch's do)
        if self.spec.defaults[k] == nil and k ~= "initial_lr" then
          lfail("param group %d: unknown option %s", gi, show_key(k))
        end
        ng[k] = copy(v)
      end
    end
    local ok, msg = pcall(check_group, self, ng, gi)
    if not ok then lfail("param group %d: %s", gi, message(msg)) end
    for j, idx in ipairs(sg.params) do
      if math.type(idx) ~= "integer" then
        lfail("param group %d: params[%d] must be an integer index, got %s", gi, j, show(idx))
      end
      if params[idx] ~= nil then lfail("param index %d appears twice", idx) end
      params[idx], group_of[idx] = group.params[j], gi
    end
    new_groups[gi] = ng
  end
  return new_groups, params, group_of
end

-- Brings each buffer of a loaded state to its group's state_dtype (float32 tensors, or lean
-- state objects): a float32 state dict loads into an optimizer with lean state and back.
-- bfloat16 -> bfloat16 and int8 -> int8 keep the codes as they are (an exact resume).
-- Returns a message or nil.
local function convert_state(info, st, group)
  local want = group.state_dtype or "float32"
  for _, b in ipairs(info.buffers) do
    local v = st[b.name]
    if v ~= nil and b.lean then
      local have = is_lean(v) and v:dtype() or "float32"
      if have ~= want then
        local x = is_lean(v) and v:float() or v
        if want == "float32" then
          st[b.name] = x
        elseif x.dtype ~= "float32" then
          return string.format("'%s' is %s: state_dtype %s needs float32 params", b.name, x.dtype,
                               show(want))
        else
          st[b.name] = core.lean_encode(x, want, b.lean)
        end
      end
    end
  end
  return nil
end

-- Every tensor in a state, nested ones included, must have the shape the class expects and
-- the param's dtype (the kernels step a param, its grad and its state in one dtype).
local function check_state_shapes(s, want, dtype, idx, lfail)
  local function walk(v, path)
    if is_lean(v) then
      if not apierror.same_shape(v, want) then
        lfail("state of param #%d: %s has shape %s, the param has shape %s", idx, path,
              apierror.shape_str(v), apierror.shape_str(want))
      end
      if dtype ~= "float32" then
        lfail("state of param #%d: %s is %s state, the param is %s (lean state needs float32 "
              .. "params)", idx, path, v:dtype(), dtype)
      end
    elseif is_tensor(v) then
      if not apierror.same_shape(v, want) then
        lfail("state of param #%d: %s has shape %s, the param has shape %s", idx, path,
              apierror.shape_str(v), apierror.shape_str(want))
      end
      if v.dtype ~= dtype then
        lfail("state of param #%d: %s is %s, the param is %s", idx, path, v.dtype, dtype)
      end
    elseif type(v) == "table" then
      for _, k in ipairs(sorted_keys(v)) do walk(v[k], path .. "." .. tostring(k)) end
    end
  end
  -- in key order, so the first mismatch reported is the same on every run
  for _, k in ipairs(sorted_keys(s)) do walk(s[k], tostring(k)) end
end

--- Restores a state_dict. Everything is checked before anything changes: the group count,
-- each group's param count, every state entry's index, keys, tensor shapes and dtypes
-- (the param's: a float64 param's state is float64) and numbers
-- (step counts integral in [0, 2^53], the kernel's state numbers finite), and the
-- hyperparameters. The state tensors are copied, so the dict stays independent.
local function load_state_dict(self, sd)
  local name = self.name
  local function lfail(fmt, ...)
    fail("%s: load_state_dict: %s", name, string.format(fmt, ...))
  end
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    lfail("expected a table with 'state' and 'param_groups'")
  end
  if #sd.param_groups ~= #self.param_groups then
    lfail("the state dict has %d param groups, the optimizer has %d", #sd.param_groups,
          #self.param_groups)
  end
  local new_groups, params, group_of = load_groups(self, sd, lfail)
  local new_state = {}
  local info = kernel_info(self)
  for idx, s in pairs(sd.state) do
    local p = params[idx]
    if p == nil then lfail("state for param #%s, which no param group lists", show(idx)) end
    if type(s) ~= "table" then lfail("state of param #%d must be a table", idx) end
    local want = self.spec.state_shape and self.spec.state_shape(self, p) or p:shape()
    check_state_shapes(s, want, p.dtype, idx, lfail)
    local fresh = deep_clone(s)
    local msg
    if info then msg = check_kernel_state(info, fresh) end
    if msg == nil and info then msg = convert_state(info, fresh, new_groups[group_of[idx]]) end
    if msg == nil and self.spec.check_state then msg = self.spec.check_state(fresh, new_groups, p) end
    if msg then lfail("state of param #%d: %s", idx, msg) end
    new_state[p] = fresh
  end
  local skipped = sd.skipped_steps
  if skipped ~= nil and step_value(skipped) == nil then
    lfail("skipped_steps must be an integer in [0, 2^53], got %s", show(skipped))
  end
  -- commit: nothing above changed the optimizer
  for gi, ng in ipairs(new_groups) do
    local group = self.param_groups[gi]
    for k in pairs(group) do
      if not NOT_OPTIONS[k] then group[k] = nil end
    end
    for k, v in pairs(ng) do group[k] = v end
  end
  -- with shard_state this rank keeps its part of each state (any world size: no communication)
  if self._zero then new_state = require("moonopt.dist.zero").shard_state(self, new_state) end
  self.state = new_state
  self.skipped_steps = skipped and step_value(skipped) or 0
  if self.spec.setup then self.spec.setup(self) end
end
Optimizer.load_state_dict = api(load_state_dict)

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

-- ---- shared option checks (PyTorch's messages) --------------------------------------------

local C = {}
Optimizer.checks = C

function C.number(o, err, key)
  local v = o[key]
  if type(v) ~= "number" then
    if is_tensor(v) then
      err("option '%s' must be a number, got a moonopt.Tensor (use t:item() for its value)", key)
    end
    err("option '%s' must be a number, got %s", key, show(v))
  end
  if v ~= v then err("option '%s' must not be NaN", key) end
  return v
end

function C.boolean(o, err, key)
  local v = o[key]
  if type(v) ~= "boolean" then err("option '%s' must be a boolean, got %s", key, show(v)) end
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
  if type(b) ~= "table" then err("option 'betas' must be a table of two numbers, got %s", show(b)) end
  if type(b[1]) ~= "number" or type(b[2]) ~= "number" then
    err("option 'betas' must be a table of two numbers, got {%s, %s}", show(b[1]), show(b[2]))
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

-- state_dtype and state_rounding (the classes with lean state).
local STATE_DTYPES = {float32 = true, bfloat16 = true, int8 = true}
function C.state_dtype(o, err)
  if not STATE_DTYPES[o.state_dtype] then
    err("option 'state_dtype' must be \"float32\", \"bfloat16\" or \"int8\", got %s", show(o.state_dtype))
  end
  local r = o.state_rounding
  if r ~= "nearest" and r ~= "stochastic" then
    err("option 'state_rounding' must be \"nearest\" or \"stochastic\", got %s", show(r))
  end
  if r == "stochastic" and o.state_dtype ~= "bfloat16" then
    err("state_rounding \"stochastic\" applies to bfloat16 state, and state_dtype is %s (int8 "
        .. "state rounds to the nearest code)", show(o.state_dtype))
  end
end

function C.nonneg(o, err, key, what)
  local v = C.number(o, err, key)
  if v < 0 or v == math.huge then err("Invalid %s value: %s", what or key, show(v)) end
end

return Optimizer
