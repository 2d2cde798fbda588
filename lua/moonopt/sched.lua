-- moonopt.sched - learning-rate schedules acting on an optimizer's param groups.
--
-- An optimizer here is any table with `param_groups`, a list of tables each with a numeric
-- `lr` (mo.optim objects, or plain tables in tests). A schedule records each group's initial
-- lr (group.initial_lr, set once like PyTorch) and writes group.lr on construction (step 0)
-- and on every :step().
--
-- Every schedule is a pure function of (step t, input lrs) -> output lrs, evaluated in closed
-- form; the input of a stand-alone schedule is its base lrs (the initial lrs). That one shape
-- is what makes composition simple: Chained feeds each member's output into the next member,
-- Sequential hands the input to the member active at step t with the step counted from that
-- member's milestone. ReduceLROnPlateau is the one schedule with state beyond the step
-- counter: a per-group scale (the product of the reductions so far) that multiplies its input.
-- See docs/schedules.md for the formulas and where they differ from PyTorch's recursive forms.
local M = {}

local floor, cos, pi, huge = math.floor, math.cos, math.pi, math.huge
local maxinteger = math.maxinteger
local fmt = string.format

-------------------------------------------------------------------------------------------
-- Errors. Internal code raises a tagged table; the public entry points (wrapped by `api`)
-- re-raise its message at level 2, so the position in the message is the user's call.

local apierror = require "moonopt.apierror"
local fail, api, show, to_int = apierror.fail, apierror.api, apierror.show, apierror.to_int

local function finite(v)
  return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

local function copy(list)
  local r = {}
  for i = 1, #list do r[i] = list[i] end
  return r
end

-------------------------------------------------------------------------------------------
-- Option checkers: check(schedule_name, option_name, value, ngroups) -> normalized value.

local REQUIRED = {}

local function bad(s, name, what, v)
  fail("%s: option '%s' must be %s, got %s", s, name, what, show(v))
end

local function integer(min)
  local what = apierror.int_range(min)
  return function(s, name, v)
    local i = to_int(v)
    if not i or i < min then bad(s, name, what, v) end
    return i
  end
end

local function number(what, ok)
  return function(s, name, v)
    if not finite(v) or not ok(v) then bad(s, name, what, v) end
    return v + 0.0
  end
end

local nonneg = number("a non-negative number", function(v) return v >= 0 end)
local positive = number("a positive number", function(v) return v > 0 end)
local unit = number("a number in [0, 1]", function(v) return v >= 0 and v <= 1 end)
local below_one = number("a number in (0, 1)", function(v) return v > 0 and v < 1 end)

local function enum(...)
  local values, quoted = {}, {}
  for i, v in ipairs{...} do values[v] = true; quoted[i] = "'" .. v .. "'" end
  local what = "one of " .. table.concat(quoted, ", ")
  return function(s, name, v)
    if not values[v] then bad(s, name, what, v) end
    return v
  end
end

local function boolean(s, name, v)
  if type(v) ~= "boolean" then bad(s, name, "a boolean", v) end
  return v
end

local function func(s, name, v)
  if type(v) ~= "function" then bad(s, name, "a function", v) end
  return v
end

-- a scalar for every group, or a list with one value per group; always returns the list
local function per_group(check, what)
  return function(s, name, v, n)
    local list = {}
    if type(v) == "table" then
      if #v ~= n then
        bad(s, name, fmt("%s or a list of %d of them (one per param group)", what, n), v)
      end
      for i = 1, n do list[i] = check(s, fmt("%s[%d]", name, i), v[i]) end
    else
      if type(v) ~= "number" then
        bad(s, name, fmt("%s or a list of %d of them (one per param group)", what, n), v)
      end
      local x = check(s, name, v)
      for i = 1, n do list[i] = x end
    end
    return list
  end
end

local function milestones_check(min)
  local what = fmt("a non-empty list of strictly increasing integers >= %d", min)
  return function(s, name, v)
    if type(v) ~= "table" or #v == 0 then bad(s, name, what, v) end
    local r = {}
    for i = 1, #v do
      local k = to_int(v[i])
      if not k or k < min or (i > 1 and k <= r[i - 1]) then
        fail("%s: option '%s' must be %s, got %s at position %d", s, name, what, show(v[i]), i)
      end
      r[i] = k
    end
    return r
  end
end

-- opts table -> validated options (defaults filled in); unknown names are errors
local function parse(sname, o, spec, n)
  if o == nil then o = {} end
  if type(o) ~= "table" then
    fail("%s: argument 'opts' must be a table of options, got %s", sname, show(o))
  end
  local known, names = {}, {}
  for i, s in ipairs(spec) do known[s[1]] = true; names[i] = s[1] end
  local unknown
  for k in pairs(o) do
    if not known[k] and (unknown == nil or tostring(k) < tostring(unknown)) then unknown = k end
  end
  if unknown ~= nil then
    fail("%s: unknown option %s (options: %s)", sname,
      type(unknown) == "string" and ("'" .. unknown .. "'") or show(unknown), table.concat(names, ", "))
  end
  local r = {}
  for _, s in ipairs(spec) do
    local name, check, default = s[1], s[2], s[3]
    local v = o[name]
    if v == nil then
      if default == REQUIRED then fail("%s: option '%s' is required", sname, name) end
      v = default
    end
    if v ~= nil then r[name] = check(sname, name, v, n) end
  end
  return r
end

-------------------------------------------------------------------------------------------
-- The schedule object.

local Schedule = {}                 -- public methods (filled in below)
local SchedMT = {__index = Schedule, __name = "moonopt.Schedule"}

local function is_schedule(x)
  return getmetatable(x) == SchedMT
end

local function check_self(self, method)
  if not is_schedule(self) then
    fail("mo.sched: %s must be called as a method: sched:%s(...), got %s as self", method, method, show(self))
  end
end

-- the optimizer's groups, validated; lr and any initial_lr must be finite and >= 0
local function check_optimizer(sname, opt)
  local t = type(opt)
  if t ~= "table" and t ~= "userdata" then
    fail("%s: argument 'optimizer' must be an optimizer (a table with param_groups), got %s", sname, show(opt))
  end
  local groups = opt.param_groups
  if type(groups) ~= "table" or #groups == 0 then
    fail("%s: optimizer.param_groups must be a non-empty list of groups, got %s", sname, show(groups))
  end
  for i = 1, #groups do
    local g = groups[i]
    if type(g) ~= "table" then
      fail("%s: optimizer.param_groups[%d] must be a table, got %s", sname, i, show(g))
    end
    if not finite(g.lr) or g.lr < 0 then
      fail("%s: optimizer.param_groups[%d].lr must be a non-negative number, got %s", sname, i, show(g.lr))
    end
    if g.initial_lr ~= nil and (not finite(g.initial_lr) or g.initial_lr < 0) then
      fail("%s: optimizer.param_groups[%d].initial_lr must be a non-negative number, got %s",
        sname, i, show(g.initial_lr))
    end
  end
  return groups
end

-- the groups at step time: the same count as at construction
local function groups_of(self)
  local groups = self.optimizer.param_groups
  if type(groups) ~= "table" or #groups ~= self.n then
    fail("%s: the optimizer's param_groups changed: the schedule was built for %d group(s), now %s",
      self.name, self.n, type(groups) == "table" and tostring(#groups) or show(groups))
  end
  return groups
end

local function check_lrs(self, lrs, t)
  for i = 1, self.n do
    if not finite(lrs[i]) then
      fail("%s: the lr of param group %d at step %d is %s, not a finite number", self.name, i, t, show(lrs[i]))
    end
  end
end

local function check_step(self, method, t)
  local i = to_int(t)
  if not i or i < 0 then
    fail("%s: %s: argument 'step' must be a non-negative integer, got %s", self.name, method, show(t))
  end
  return i
end

-- Stepping is two-phase so that an error (a lr_lambda that raises, OneCycle stepped past its
-- end) leaves every object as it was: `advance` computes the new lrs and queues the state
-- changes as closures in `pending`; :step() runs them only once everything succeeded.
local function default_advance(self, t, lrs, _, pending)
  local out = self.kind.apply(self, t, lrs)
  pending[#pending + 1] = function() self.last_epoch = t; self.last_lr = out end
  return out
end

function Schedule.step(self, metric)
  check_self(self, "step")
  if metric ~= nil then
    if not self.needs_metric then
      fail("%s: step() takes no metric (only ReduceLROnPlateau and compositions holding one do), got %s",
        self.name, show(metric))
    end
    if type(metric) ~= "number" then
      fail("%s: step(metric): 'metric' must be a number, got %s", self.name, show(metric))
    end
  end
  local groups = groups_of(self)
  local t = self.last_epoch + 1
  local pending = {}
  local lrs = self.kind.advance(self, t, self.base_lrs, metric, pending)
  check_lrs(self, lrs, t)
  for _, commit in ipairs(pending) do commit() end
  self.last_epoch, self.last_lr = t, lrs
  for i = 1, self.n do groups[i].lr = lrs[i] end
end

function Schedule.get_last_lr(self)
  check_self(self, "get_last_lr")
  return copy(self.last_lr)
end

function Schedule.lr_at(self, step)
  check_self(self, "lr_at")
  if not self.pure then
    fail("%s: lr_at is not available: %s", self.name, self.impure_why)
  end
  local t = check_step(self, "lr_at", step)
  local lrs = self.kind.apply(self, t, self.base_lrs)
  check_lrs(self, lrs, t)
  return lrs
end

local function state_of(self)
  local sd = {schedule = self.name, last_epoch = self.last_epoch,
              base_lrs = copy(self.base_lrs), last_lr = copy(self.last_lr)}
  if self.kind.save then self.kind.save(self, sd) end
  return sd
end

function Schedule.state_dict(self)
  check_self(self, "state_dict")
  return state_of(self)
end

-- Loading validates the whole state (members included) before changing anything. `top` is
-- the name of the schedule load_state_dict was called on; `path` locates a member's state
-- ("" or "members[2].").
local function number_list(top, sd, key, path, n, min)
  local v = sd[key]
  local ok = type(v) == "table" and #v == n
  if ok then
    for i = 1, n do
      if not finite(v[i]) or (min and v[i] < min) then ok = false end
    end
  end
  if not ok then
    fail("%s: load_state_dict: %s%s must be a list of %d %snumbers, got %s", top, path, key, n,
      min and "non-negative " or "", show(v))
  end
  return copy(v)
end

local function load_integer(top, sd, key, path)
  local v = to_int(sd[key])
  if not v or v < 0 then
    fail("%s: load_state_dict: %s%s must be a non-negative integer, got %s", top, path, key, show(sd[key]))
  end
  return v
end

local function prepare_load(self, sd, top, path, pending)
  local label = path == "" and "the state" or path:sub(1, -2)
  if type(sd) ~= "table" then
    fail("%s: load_state_dict: %s must be a table, got %s", top, label, show(sd))
  end
  if sd.schedule ~= self.name then
    fail("%s: load_state_dict: %s is for schedule %s, not %s", top, label, show(sd.schedule), self.name)
  end
  local t = load_integer(top, sd, "last_epoch", path)
  local base = number_list(top, sd, "base_lrs", path, self.n, 0)
  local last = number_list(top, sd, "last_lr", path, self.n)
  if self.kind.load then self.kind.load(self, sd, top, path, pending) end
  pending[#pending + 1] = function() self.last_epoch, self.base_lrs, self.last_lr = t, base, last end
end

function Schedule.load_state_dict(self, sd)
  check_self(self, "load_state_dict")
  local groups = groups_of(self)
  local pending = {}
  prepare_load(self, sd, self.name, "", pending)
  for _, commit in ipairs(pending) do commit() end
  for i = 1, self.n do groups[i].lr = self.last_lr[i] end
end

local function tostring_sched(self)
  local lrs = {}
  for i, v in ipairs(self.last_lr) do lrs[i] = fmt("%.6g", v) end
  return fmt("moonopt.sched.%s(step=%d, lr={%s})", self.name, self.last_epoch, table.concat(lrs, ", "))
end

for name, f in pairs(Schedule) do Schedule[name] = api(f) end
SchedMT.__tostring = tostring_sched

-- Build a schedule of `kind` on opt: validate everything, then write initial_lr and lr.
local function new(kind, opt, o)
  local groups = check_optimizer(kind.name, opt)
  local n = #groups
  local self = setmetatable({kind = kind, name = kind.name, optimizer = opt, n = n, last_epoch = 0,
                             needs_metric = false, pure = true}, SchedMT)
  if kind.spec then self.o = parse(kind.name, o, kind.spec, n) end
  if kind.init then kind.init(self, self.o, o) end
  local base = {}
  for i = 1, n do base[i] = (groups[i].initial_lr or groups[i].lr) + 0.0 end
  self.base_lrs = base
  local lrs = kind.apply(self, 0, base)
  check_lrs(self, lrs, 0)
  for i = 1, n do
    local g = groups[i]
    if g.initial_lr == nil then g.initial_lr = base[i] end
    g.lr = lrs[i]
  end
  self.last_lr = lrs
  return self
end

local function define(kind)
  kind.advance = kind.advance or default_advance
  M[kind.name] = api(function(opt, o)
    if kind.shorthand then o = kind.shorthand(o) end
    return new(kind, opt, o)
  end)
end

-- out[i] = lrs[i] * factor
local function scaled(lrs, factor)
  local out = {}
  for i = 1, #lrs do out[i] = lrs[i] * factor end
  return out
end

-------------------------------------------------------------------------------------------
-- Multiplicative schedules: out = in * f(t). PyTorch computes these recursively
-- (lr_t = lr_{t-1} * ratio); the closed form gives the same numbers up to rounding.

define{
  name = "Constant",                -- PyTorch ConstantLR
  spec = {{"factor", unit, 1 / 3}, {"total_iters", integer(0), 5}},
  apply = function(self, t, lrs)
    return scaled(lrs, t < self.o.total_iters and self.o.factor or 1.0)
  end,
}

define{
  name = "Step",                    -- PyTorch StepLR
  spec = {{"step_size", integer(1), REQUIRED}, {"gamma", positive, 0.1}},
  apply = function(self, t, lrs)
    return scaled(lrs, self.o.gamma ^ (t // self.o.step_size))
  end,
}

define{
  name = "MultiStep",               -- PyTorch MultiStepLR (milestones strictly increasing)
  spec = {{"milestones", milestones_check(0), REQUIRED}, {"gamma", positive, 0.1}},
  apply = function(self, t, lrs)
    local k, ms = 0, self.o.milestones
    while k < #ms and ms[k + 1] <= t do k = k + 1 end
    return scaled(lrs, self.o.gamma ^ k)
  end,
}

define{
  name = "Exponential",             -- PyTorch ExponentialLR
  spec = {{"gamma", positive, REQUIRED}},
  apply = function(self, t, lrs) return scaled(lrs, self.o.gamma ^ t) end,
}

define{
  name = "Linear",                  -- PyTorch LinearLR
  spec = {{"start_factor", unit, 1 / 3}, {"end_factor", unit, 1.0}, {"total_iters", integer(1), 5}},
  apply = function(self, t, lrs)
    local o = self.o
    local k = t < o.total_iters and t or o.total_iters
    return scaled(lrs, o.start_factor + (o.end_factor - o.start_factor) * k / o.total_iters)
  end,
}

define{
  name = "Polynomial",              -- PyTorch PolynomialLR
  spec = {{"total_iters", integer(1), 5}, {"power", nonneg, 1.0}},
  apply = function(self, t, lrs)
    local o = self.o
    local k = t < o.total_iters and t or o.total_iters
    return scaled(lrs, (1.0 - k / o.total_iters) ^ o.power)
  end,
}

local function check_lambda_result(self, v, t, i)
  if not finite(v) then
    fail("%s: lr_lambda%s returned %s at step %d, expected a finite number", self.name,
      #self.o.lr_lambda > 1 and fmt("[%d]", i) or "", show(v), t)
  end
  return v
end

define{
  name = "Lambda",                  -- PyTorch LambdaLR: lr = base * lr_lambda(t)
  -- Lambda(opt, f) is short for Lambda(opt, {lr_lambda = f})
  shorthand = function(o) return type(o) == "function" and {lr_lambda = o} or o end,
  spec = {{"lr_lambda", function(s, name, v, n)
    if type(v) == "table" then
      if #v ~= n then bad(s, name, fmt("a function or a list of %d functions (one per param group)", n), v) end
      local r = {}
      for i = 1, n do r[i] = func(s, fmt("%s[%d]", name, i), v[i]) end
      return r
    end
    return {func(s, name, v)}
  end, REQUIRED}},
  apply = function(self, t, lrs)
    local fns, out = self.o.lr_lambda, {}
    for i = 1, #lrs do
      out[i] = lrs[i] * check_lambda_result(self, (fns[i] or fns[1])(t), t, i)
    end
    return out
  end,
}


-------------------------------------------------------------------------------------------
-- Cosine family.

local function cosine(eta_min, lr, t, period)
  return eta_min + (lr - eta_min) * (1 + cos(pi * t / period)) / 2
end

-- Closed form for every t (it keeps oscillating after T_max, as PyTorch's closed form does).
-- PyTorch steps a recursive form; within T_max the two agree to rounding (docs/schedules.md).
define{
  name = "CosineAnnealing",         -- PyTorch CosineAnnealingLR
  spec = {{"T_max", integer(1), REQUIRED}, {"eta_min", nonneg, 0.0}},
  apply = function(self, t, lrs)
    local o, out = self.o, {}
    for i = 1, #lrs do out[i] = cosine(o.eta_min, lrs[i], t, o.T_max) end
    return out
  end,
}

define{
  name = "CosineAnnealingWarmRestarts",   -- SGDR (PyTorch CosineAnnealingWarmRestarts)
  spec = {{"T_0", integer(1), REQUIRED}, {"T_mult", integer(1), 1}, {"eta_min", nonneg, 0.0}},
  apply = function(self, t, lrs)
    local o = self.o
    -- the cycle holding step t, in integers (PyTorch's log-based closed form can misplace a
    -- restart by rounding; its step() counts in integers like this)
    local start, len = 0, o.T_0
    if o.T_mult == 1 then
      start = t - t % len
    else
      while t - start >= len do
        start = start + len
        len = len > maxinteger // o.T_mult and maxinteger or len * o.T_mult
      end
    end
    local out = {}
    for i = 1, #lrs do out[i] = cosine(o.eta_min, lrs[i], t - start, len) end
    return out
  end,
}

-- eta_min may also be given as min_lr; both at once is an error
local function eta_min_alias(self, o)
  if o.min_lr ~= nil then
    if o.eta_min ~= nil then
      fail("%s: options 'eta_min' and 'min_lr' are the same; give one, got eta_min=%s and min_lr=%s",
        self.name, show(o.eta_min), show(o.min_lr))
    end
    o.eta_min = o.min_lr
  end
  o.eta_min = o.eta_min or 0.0
end

local function check_total(self, o)
  if o.total < o.warmup then
    fail("%s: option 'total' must be >= warmup (%d), got %d", self.name, o.warmup, o.total)
  end
end

-- Linear warmup from warmup_start (default 0) to the base lr over `warmup` steps, then a
-- cosine from the base lr down to eta_min at step `total`; eta_min after that. With the
-- defaults this is transformers' get_cosine_schedule_with_warmup (num_cycles 0.5) up to total.
define{
  name = "WarmupCosine",
  spec = {{"warmup", integer(0), REQUIRED}, {"total", integer(1), REQUIRED}, {"eta_min", nonneg},
          {"min_lr", nonneg}, {"warmup_start", nonneg, 0.0}},
  init = function(self, o)
    eta_min_alias(self, o)
    check_total(self, o)
  end,
  apply = function(self, t, lrs)
    local o, out = self.o, {}
    local w, total, lo = o.warmup, o.total, o.eta_min
    for i = 1, #lrs do
      if t < w then
        out[i] = o.warmup_start + (lrs[i] - o.warmup_start) * (t / w)
      elseif t <= total then
        local progress = (t - w) / math.max(1, total - w)
        out[i] = lo + (lrs[i] - lo) * (0.5 * (1.0 + cos(pi * progress)))
      else
        out[i] = lo
      end
    end
    return out
  end,
}

-- BERT's schedule (transformers' get_linear_schedule_with_warmup):
--   f(t) = t / max(1, warmup)                            for t < warmup
--   f(t) = max(0, (total - t) / max(1, total - warmup))  after
define{
  name = "WarmupLinear",
  spec = {{"warmup", integer(0), REQUIRED}, {"total", integer(1), REQUIRED}},
  init = function(self, o) check_total(self, o) end,
  apply = function(self, t, lrs)
    local o = self.o
    local f
    if t < o.warmup then
      f = t / math.max(1, o.warmup)
    else
      f = math.max(0.0, (o.total - t) / math.max(1, o.total - o.warmup))
    end
    return scaled(lrs, f)
  end,
}

-------------------------------------------------------------------------------------------
-- Absolute schedules: their own lr bounds, not their input (unless the bound is left out).

local function anneal_cos(from, to, pct)
  return to + (from - to) / 2.0 * (cos(pi * pct) + 1)
end

local function anneal_linear(from, to, pct)
  return (to - from) * pct + from
end

-- OneCycleLR (Smith's super-convergence; fastai's two phases, or the paper's three), lr only.
define{
  name = "OneCycle",
  spec = {{"max_lr", per_group(positive, "a positive number")}, {"total_steps", integer(1)},
          {"epochs", integer(1)}, {"steps_per_epoch", integer(1)}, {"pct_start", unit, 0.3},
          {"anneal_strategy", enum("cos", "linear"), "cos"}, {"div_factor", positive, 25.0},
          {"final_div_factor", positive, 1e4}, {"three_phase", boolean, false},
          {"cycle_momentum", boolean, false}},
  init = function(self, o)
    if o.cycle_momentum then
      fail("OneCycle: option 'cycle_momentum' = true is not supported (this schedule sets the lr only)")
    end
    if o.total_steps then
      if o.epochs or o.steps_per_epoch then
        fail("OneCycle: give total_steps or epochs and steps_per_epoch, not both")
      end
      self.total = o.total_steps
    elseif o.epochs and o.steps_per_epoch then
      if o.epochs > maxinteger // o.steps_per_epoch then
        fail("OneCycle: epochs * steps_per_epoch overflows (%d * %d)", o.epochs, o.steps_per_epoch)
      end
      self.total = o.epochs * o.steps_per_epoch
    else
      fail("OneCycle: option 'total_steps' (or both 'epochs' and 'steps_per_epoch') is required")
    end
    -- phase ends as PyTorch places them (floats); a phase of zero length would divide by zero
    local n, p = self.total, o.pct_start
    if o.three_phase then
      self.phases = {{p * n - 1, "initial", "max"}, {2 * p * n - 2, "max", "initial"}, {n - 1, "initial", "min"}}
    else
      self.phases = {{p * n - 1, "initial", "max"}, {n - 1, "max", "min"}}
    end
    local start = 0
    for k, ph in ipairs(self.phases) do
      if ph[1] == start then
        fail("OneCycle: phase %d has zero length with pct_start=%s and total_steps=%d", k, show(p), n)
      end
      start = ph[1]
    end
    self.anneal = o.anneal_strategy == "cos" and anneal_cos or anneal_linear
  end,
  apply = function(self, t, lrs)
    if t > self.total then
      fail("OneCycle: step %d is past total_steps (%d)", t, self.total)
    end
    local o, out = self.o, {}
    local phases = self.phases
    for i = 1, #lrs do
      local peak = o.max_lr and o.max_lr[i] or lrs[i]
      local v = {max = peak, initial = peak / o.div_factor}
      v.min = v.initial / o.final_div_factor
      local start = 0
      for k, ph in ipairs(phases) do
        if t <= ph[1] or k == #phases then
          local span = ph[1] - start
          local pct = span ~= 0 and (t - start) / span or 1.0   -- total_steps = 1: the one step
          out[i] = self.anneal(v[ph[2]], v[ph[3]], pct)
          break
        end
        start = ph[1]
      end
    end
    return out
  end,
}

-- CyclicLR (Smith's cyclical learning rates), lr only.
define{
  name = "Cyclic",
  spec = {{"base_lr", per_group(nonneg, "a non-negative number")},
          {"max_lr", per_group(nonneg, "a non-negative number"), REQUIRED},
          {"step_size_up", integer(1), 2000}, {"step_size_down", integer(1)},
          {"mode", enum("triangular", "triangular2", "exp_range"), "triangular"},
          {"gamma", positive, 1.0}, {"scale_fn", func}, {"scale_mode", enum("cycle", "iterations")},
          {"cycle_momentum", boolean, false}},
  init = function(self, o)
    if o.cycle_momentum then
      fail("Cyclic: option 'cycle_momentum' = true is not supported (this schedule sets the lr only)")
    end
    if o.scale_mode and not o.scale_fn then
      fail("Cyclic: option 'scale_mode' needs 'scale_fn' (the built-in modes fix it)")
    end
    local up = o.step_size_up + 0.0
    local down = (o.step_size_down or o.step_size_up) + 0.0
    self.total_size = up + down
    self.step_ratio = up / self.total_size
    if o.scale_fn then
      self.scale_fn, self.scale_mode = o.scale_fn, o.scale_mode or "cycle"
    elseif o.mode == "triangular" then
      self.scale_fn, self.scale_mode = function() return 1.0 end, "cycle"
    elseif o.mode == "triangular2" then
      self.scale_fn, self.scale_mode = function(x) return 1 / (2.0 ^ (x - 1)) end, "cycle"
    else
      local gamma = o.gamma
      self.scale_fn, self.scale_mode = function(x) return gamma ^ x end, "iterations"
    end
  end,
  apply = function(self, t, lrs)
    local o = self.o
    local cycle = floor(1 + t / self.total_size)
    local x = 1.0 + t / self.total_size - cycle
    local ratio = self.step_ratio
    local scale = x <= ratio and x / ratio or (x - 1) / (ratio - 1)
    local arg = self.scale_mode == "cycle" and cycle or t
    local s = self.scale_fn(arg)
    if not finite(s) then
      fail("Cyclic: scale_fn returned %s for %s %d, expected a finite number", show(s), self.scale_mode, arg)
    end
    local out = {}
    for i = 1, #lrs do
      local lo = o.base_lr and o.base_lr[i] or lrs[i]
      out[i] = lo + (o.max_lr[i] - lo) * scale * s
    end
    return out
  end,
}

-------------------------------------------------------------------------------------------
-- ReduceLROnPlateau: out = in * scale, where scale (per group) changes only on step(metric).

local function plateau_better(o, a, best)
  if best == nil then best = o.mode == "min" and huge or -huge end
  if o.mode == "min" then
    if o.threshold_mode == "rel" then return a < best * (1.0 - o.threshold) end
    return a < best - o.threshold
  end
  if o.threshold_mode == "rel" then return a > best * (o.threshold + 1.0) end
  return a > best + o.threshold
end

define{
  name = "ReduceLROnPlateau",
  spec = {{"mode", enum("min", "max"), "min"}, {"factor", below_one, 0.1}, {"patience", integer(0), 10},
          {"threshold", nonneg, 1e-4}, {"threshold_mode", enum("rel", "abs"), "rel"},
          {"cooldown", integer(0), 0}, {"min_lr", per_group(nonneg, "a non-negative number"), 0.0},
          {"eps", nonneg, 1e-8}},
  init = function(self)
    self.needs_metric, self.pure = true, false
    self.impure_why = "ReduceLROnPlateau's lr depends on the metrics passed to step(metric)"
    self.num_bad_epochs, self.cooldown_counter = 0, 0
    self.best = nil                 -- no metric seen yet (PyTorch: +-inf)
    self.scale = {}
    for i = 1, self.n do self.scale[i] = 1.0 end
  end,
  apply = function(self, _, lrs)
    local out = {}
    for i = 1, #lrs do out[i] = lrs[i] * self.scale[i] end
    return out
  end,
  -- PyTorch's rule: a reduction multiplies the current lr by factor, floored at min_lr, and
  -- is skipped when it would change the lr by eps or less. Here "the current lr" is the input
  -- times the scale, and the reduction is kept as a new scale.
  advance = function(self, t, lrs, metric, pending)
    if metric == nil then
      fail("ReduceLROnPlateau: step(metric) needs the metric (a number), got nil")
    end
    local o = self.o
    local best, bad_epochs, cool = self.best, self.num_bad_epochs, self.cooldown_counter
    if plateau_better(o, metric, best) then
      best, bad_epochs = metric, 0
    else
      bad_epochs = bad_epochs + 1
    end
    if cool > 0 then cool, bad_epochs = cool - 1, 0 end
    local scale = copy(self.scale)
    if bad_epochs > o.patience then
      for i = 1, #lrs do
        local old = lrs[i] * scale[i]
        local new_lr = math.max(old * o.factor, o.min_lr[i])
        if old - new_lr > o.eps then scale[i] = new_lr / lrs[i] end
      end
      cool, bad_epochs = o.cooldown, 0
    end
    local out = {}
    for i = 1, #lrs do out[i] = lrs[i] * scale[i] end
    pending[#pending + 1] = function()
      self.best, self.num_bad_epochs, self.cooldown_counter, self.scale = best, bad_epochs, cool, scale
      self.last_epoch, self.last_lr = t, out
    end
    return out
  end,
  save = function(self, sd)
    sd.best = self.best
    sd.num_bad_epochs, sd.cooldown_counter, sd.scale = self.num_bad_epochs, self.cooldown_counter, copy(self.scale)
  end,
  load = function(self, sd, top, path, pending)
    if sd.best ~= nil and type(sd.best) ~= "number" then
      fail("%s: load_state_dict: %sbest must be a number or nil, got %s", top, path, show(sd.best))
    end
    local bad_epochs = load_integer(top, sd, "num_bad_epochs", path)
    local cool = load_integer(top, sd, "cooldown_counter", path)
    local scale = number_list(top, sd, "scale", path, self.n, 0)
    local best = sd.best
    pending[#pending + 1] = function()
      self.best, self.num_bad_epochs, self.cooldown_counter, self.scale = best, bad_epochs, cool, scale
    end
  end,
}

-------------------------------------------------------------------------------------------
-- Composition.

local function save_members(self, sd)
  sd.members = {}
  for i, m in ipairs(self.members) do sd.members[i] = state_of(m) end
end

local function load_members(self, sd, top, path, pending)
  if type(sd.members) ~= "table" or #sd.members ~= #self.members then
    fail("%s: load_state_dict: %smembers must be a list of %d states, got %s", top, path,
      #self.members, show(sd.members))
  end
  for i, m in ipairs(self.members) do
    prepare_load(m, sd.members[i], top, fmt("%smembers[%d].", path, i), pending)
  end
end

-- members: a non-empty list of distinct schedules built on opt
local function init_members(self, schedules)
  local name = self.name
  if type(schedules) ~= "table" or #schedules == 0 then
    fail("%s: argument 'schedules' must be a non-empty list of schedules, got %s", name, show(schedules))
  end
  local seen = {}
  self.members = {}
  for i = 1, #schedules do
    local m = schedules[i]
    if not is_schedule(m) then
      fail("%s: schedules[%d] must be a schedule (from mo.sched), got %s", name, i, show(m))
    end
    if m.optimizer ~= self.optimizer then
      fail("%s: schedules[%d] (%s) was built for a different optimizer", name, i, m.name)
    end
    if seen[m] then fail("%s: schedules[%d] (%s) appears twice", name, i, m.name) end
    seen[m] = true
    self.members[i] = m
    if m.needs_metric then self.needs_metric = true end
    if not m.pure then
      self.pure = false
      self.impure_why = fmt("schedules[%d] is %s: %s", i, m.name, m.impure_why)
    end
  end
end

-- The member active at step t and the step at which it started.
local function active(self, t)
  local ms, k = self.milestones, 0
  while k < #ms and ms[k + 1] <= t do k = k + 1 end
  return self.members[k + 1], ms[k] or 0, k + 1
end

-- Sequential(opt, schedules, milestones): schedules[k + 1] runs from milestones[k] on, its own
-- step counter restarting at 0 there (PyTorch's SequentialLR). A metric passed to step() goes
-- to the active member when it takes one (a ReduceLROnPlateau) and is ignored otherwise.
local Sequential = {
  name = "Sequential",
  apply = function(self, t, lrs)
    local m, start = active(self, t)
    return m.kind.apply(m, t - start, lrs)
  end,
  advance = function(self, t, lrs, metric, pending)
    local m, start, k = active(self, t)
    if m.needs_metric and metric == nil then
      fail("Sequential: step(metric) needs a metric while schedules[%d] (%s) is active", k, m.name)
    end
    local out = m.kind.advance(m, t - start, lrs, m.needs_metric and metric or nil, pending)
    pending[#pending + 1] = function() self.last_epoch = t; self.last_lr = out end
    return out
  end,
  save = save_members,
  load = load_members,
}

-- Chained(opt, schedules): every member at every step, each applied to the previous
-- member's output (the first gets the base lrs). A metric passed to step() goes to every
-- member that takes one.
local Chained = {
  name = "Chained",
  apply = function(self, t, lrs)
    for _, m in ipairs(self.members) do lrs = m.kind.apply(m, t, lrs) end
    return lrs
  end,
  advance = function(self, t, lrs, metric, pending)
    if self.needs_metric and metric == nil then
      fail("Chained: step(metric) needs a metric: it holds a ReduceLROnPlateau")
    end
    for _, m in ipairs(self.members) do lrs = m.kind.advance(m, t, lrs, metric, pending) end
    pending[#pending + 1] = function() self.last_epoch = t; self.last_lr = lrs end
    return lrs
  end,
  save = save_members,
  load = load_members,
}

M.Sequential = api(function(opt, schedules, milestones)
  return new(Sequential, opt, {schedules = schedules, milestones = milestones})
end)
M.Chained = api(function(opt, schedules)
  return new(Chained, opt, {schedules = schedules})
end)

Sequential.init = function(self, _, args)
  init_members(self, args.schedules)
  local ms = args.milestones
  local want = #self.members - 1
  if type(ms) ~= "table" or #ms ~= want then
    fail("Sequential: argument 'milestones' must be a list of %d step(s) (one fewer than the schedules), got %s",
      want, show(ms))
  end
  self.milestones = {}
  for i = 1, want do
    local k = to_int(ms[i])
    if not k or k < 1 or (i > 1 and k <= self.milestones[i - 1]) then
      fail("Sequential: milestones[%d] must be a positive integer greater than the one before, got %s", i, show(ms[i]))
    end
    self.milestones[i] = k
  end
end
Chained.init = function(self, _, args) init_members(self, args.schedules) end

M.is_schedule = is_schedule

return M
