-- tests/lua/test_sched.lua - mo.sched: golden values from PyTorch 1.13, composition, state,
-- and every error path. The optimizers are plain tables: {param_groups = {{lr = ...}, ...}}.
local lu = require "luaunit"
local S = require "moonopt.sched"

local GOLDEN = dofile("tests/golden/sched_golden.lua")
local RTOL = 1e-12

local function optim(...)
  local groups = {}
  for i, lr in ipairs{...} do groups[i] = {lr = lr} end
  return {param_groups = groups}
end

local function lrs_of(opt)
  local r = {}
  for i, g in ipairs(opt.param_groups) do r[i] = g.lr end
  return r
end

local function close(a, b, rtol)
  return math.abs(a - b) <= (rtol or RTOL) * math.max(math.abs(a), math.abs(b))
end

local function assert_lrs(actual, expected, what, rtol)
  lu.assertEquals(#actual, #expected, what)
  for i = 1, #expected do
    if not close(actual[i], expected[i], rtol) then
      lu.fail(string.format("%s, group %d: got %.17g, expected %.17g", what, i, actual[i], expected[i]))
    end
  end
end

-- the message of the error f(...) raises
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  lu.assertFalse(ok, "expected an error")
  return tostring(e)
end

local function assert_err(expected, f, ...)
  local e = err_of(f, ...)
  if not e:find(expected, 1, true) then
    lu.fail(string.format("error message %q does not contain %q", e, expected))
  end
end

-------------------------------------------------------------------------------------------
-- Golden: every case of tests/golden/sched_golden.lua

-- the same lambdas as make_sched_golden.py's LAMBDAS
local LAMBDAS = {
  exp97 = function(t) return 0.97 ^ t end,
  inv = function(t) return 1.0 / (1.0 + 0.05 * t) end,
  stairs = function(t) return 0.5 ^ (t // 10) end,
}

local function opts_of(c)
  local o = {}
  for k, v in pairs(c.opts) do o[k] = v end
  if c.schedule == "Lambda" then
    local f = o.lr_lambda
    if type(f) == "string" then o.lr_lambda = LAMBDAS[f]
    else o.lr_lambda = {LAMBDAS[f[1]], LAMBDAS[f[2]]} end
  end
  return o
end

local function build(c, opt)
  if c.members then
    local ms = {}
    for i, m in ipairs(c.members) do ms[i] = S[m.schedule](opt, opts_of(m)) end
    if c.schedule == "Sequential" then return S.Sequential(opt, ms, c.milestones) end
    return S.Chained(opt, ms)
  end
  return S[c.schedule](opt, opts_of(c))
end

local function golden_opt()
  return optim(GOLDEN.base_lrs[1], GOLDEN.base_lrs[2])
end

local function run_golden(c)
  local opt = golden_opt()
  local s = build(c, opt)
  local half = c.steps // 2
  local twin, twin_opt
  for t = 0, c.steps do
    if t > 0 then
      s:step(c.metrics and c.metrics[t])
      if twin then twin:step(c.metrics and c.metrics[t]) end
    end
    local what = string.format("%s, step %d", c.name, t)
    -- PyTorch's recursive cosine drifts from the closed form after T_max by rounding only
    local rtol = (c.compare_until and t > c.compare_until) and 1e-9 or RTOL
    assert_lrs(lrs_of(opt), c.lr[t + 1], what, rtol)
    lu.assertEquals(s:get_last_lr(), lrs_of(opt), what .. ": get_last_lr")
    if not s.needs_metric then
      lu.assertEquals(s:lr_at(t), lrs_of(opt), what .. ": lr_at")
    end
    if twin then lu.assertEquals(lrs_of(twin_opt), lrs_of(opt), what .. ": restored twin") end
    if t == half then
      -- a schedule restored from state_dict continues exactly like the original
      twin_opt = golden_opt()
      twin = build(c, twin_opt)
      twin:load_state_dict(s:state_dict())
      lu.assertEquals(lrs_of(twin_opt), lrs_of(opt), what .. ": after load_state_dict")
      lu.assertEquals(twin:state_dict(), s:state_dict(), what .. ": state round trip")
    end
  end
  lu.assertEquals(s.last_epoch, c.steps)
end

local TestSchedGolden = {}
for _, c in ipairs(GOLDEN.cases) do
  local name = "test_" .. c.name:gsub("[^%w]+", "_")
  assert(TestSchedGolden[name] == nil, "duplicate golden case name " .. c.name)
  TestSchedGolden[name] = function() run_golden(c) end
end

function TestSchedGolden.test_covers_every_schedule()
  local seen = {}
  for _, c in ipairs(GOLDEN.cases) do
    seen[c.schedule] = true
    for _, m in ipairs(c.members or {}) do seen[m.schedule] = true end
  end
  for _, name in ipairs{"Constant", "Step", "MultiStep", "Exponential", "Linear", "Polynomial",
                        "CosineAnnealing", "CosineAnnealingWarmRestarts", "WarmupCosine", "WarmupLinear",
                        "OneCycle", "Cyclic", "ReduceLROnPlateau", "Lambda", "Sequential", "Chained"} do
    lu.assertTrue(seen[name], name .. " has no golden case")
  end
end

-------------------------------------------------------------------------------------------
-- Behaviour of single schedules

local TestSchedBasics = {}

function TestSchedBasics.test_construction_sets_initial_lr_and_step0()
  local opt = optim(0.1, 0.02)
  local s = S.WarmupLinear(opt, {warmup = 4, total = 10})
  lu.assertEquals(opt.param_groups[1].initial_lr, 0.1)
  lu.assertEquals(opt.param_groups[2].initial_lr, 0.02)
  lu.assertEquals(lrs_of(opt), {0, 0})            -- step 0 of a warmup from 0
  lu.assertEquals(s.last_epoch, 0)
  lu.assertEquals(s.base_lrs, {0.1, 0.02})
  s:step()
  lu.assertEquals(s.last_epoch, 1)
  assert_lrs(lrs_of(opt), {0.025, 0.005}, "step 1")
end

function TestSchedBasics.test_existing_initial_lr_is_kept()
  -- like PyTorch's setdefault: a second schedule on the same optimizer starts from initial_lr
  local opt = optim(0.1)
  S.Step(opt, {step_size = 1, gamma = 0.5}):step()
  lu.assertEquals(opt.param_groups[1].lr, 0.05)
  local s = S.Exponential(opt, {gamma = 0.9})
  lu.assertEquals(s.base_lrs, {0.1})
  lu.assertEquals(opt.param_groups[1].lr, 0.1)
end

function TestSchedBasics.test_lr_at_is_pure()
  local opt = optim(0.1, 0.01)
  local s = S.CosineAnnealing(opt, {T_max = 10})
  s:step(); s:step()
  local before = lrs_of(opt)
  local v = s:lr_at(5)
  assert_lrs(v, {0.05, 0.005}, "lr_at(5)")
  lu.assertEquals(lrs_of(opt), before)
  lu.assertEquals(s.last_epoch, 2)
  assert_lrs(s:lr_at(0), {0.1, 0.01}, "lr_at(0)")
  lu.assertEquals(s:lr_at(3.0), s:lr_at(3))        -- an integral float is an integer
end

function TestSchedBasics.test_get_last_lr_is_a_copy()
  local opt = optim(0.1)
  local s = S.Constant(opt, {factor = 0.5, total_iters = 2})
  local l = s:get_last_lr()
  l[1] = 42
  lu.assertEquals(s:get_last_lr(), {0.05})
end

function TestSchedBasics.test_hand_set_lr_is_overwritten_by_the_next_step()
  local opt = optim(0.1)
  local s = S.Exponential(opt, {gamma = 0.5})
  opt.param_groups[1].lr = 7
  s:step()
  lu.assertEquals(opt.param_groups[1].lr, 0.05)
end

function TestSchedBasics.test_cosine_is_periodic_after_T_max()
  local opt = optim(0.2)
  local s = S.CosineAnnealing(opt, {T_max = 10, eta_min = 0.01})
  assert_lrs(s:lr_at(10), {0.01}, "T_max")
  assert_lrs(s:lr_at(15), s:lr_at(5), "mirror")
  assert_lrs(s:lr_at(20), {0.2}, "2 T_max")
end

function TestSchedBasics.test_warm_restarts_restart_at_the_right_steps()
  local opt = optim(0.1)
  local s = S.CosineAnnealingWarmRestarts(opt, {T_0 = 5, T_mult = 2, eta_min = 0.001})
  for _, t in ipairs{0, 5, 15, 35, 75} do
    assert_lrs(s:lr_at(t), {0.1}, "restart at " .. t)
    lu.assertTrue(s:lr_at(t - 1 < 0 and 1 or t - 1)[1] < 0.1)
  end
  local s3 = S.CosineAnnealingWarmRestarts(optim(0.1), {T_0 = 2, T_mult = 3})
  -- restarts at 2, 8, 26, 80 (cycles of 2, 6, 18, 54 steps); the step before one ends a cycle
  for _, r in ipairs{{2, 2}, {8, 6}, {26, 18}, {80, 54}} do
    local t, len = r[1], r[2]
    assert_lrs(s3:lr_at(t), {0.1}, "T_mult 3: restart at " .. t)
    assert_lrs(s3:lr_at(t - 1), {0.1 * (1 + math.cos(math.pi * (len - 1) / len)) / 2}, "T_mult 3: before " .. t)
  end
  -- far steps stay exact integers (no log-based cycle search)
  lu.assertTrue(s:lr_at(5 * (2 ^ 40 - 1) // 1 | 0)[1] == 0.1)
end

function TestSchedBasics.test_warmup_cosine()
  local opt = optim(0.1, 0.01)
  local s = S.WarmupCosine(opt, {warmup = 10, total = 30, min_lr = 0.001})
  assert_lrs(s:lr_at(5), {0.05, 0.005}, "half warmup")
  assert_lrs(s:lr_at(10), {0.1, 0.01}, "peak")
  assert_lrs(s:lr_at(20), {0.0505, 0.0055}, "half decay")
  assert_lrs(s:lr_at(30), {0.001, 0.001}, "end")
  assert_lrs(s:lr_at(1000), {0.001, 0.001}, "after the end")
  local z = S.WarmupCosine(optim(0.1), {warmup = 0, total = 10})
  assert_lrs(z:lr_at(0), {0.1}, "no warmup")
  local w = S.WarmupCosine(optim(0.1), {warmup = 4, total = 8, warmup_start = 0.02})
  assert_lrs(w:lr_at(0), {0.02}, "warmup_start")
  assert_lrs(w:lr_at(2), {0.06}, "warmup_start half way")
end

function TestSchedBasics.test_warmup_linear_ends_at_zero()
  local s = S.WarmupLinear(optim(0.1), {warmup = 10, total = 20})
  assert_lrs(s:lr_at(10), {0.1}, "peak")
  assert_lrs(s:lr_at(15), {0.05}, "half way down")
  lu.assertEquals(s:lr_at(20), {0})
  lu.assertEquals(s:lr_at(25), {0})
end

function TestSchedBasics.test_one_cycle_defaults_and_end()
  -- without max_lr the optimizer's lr is the peak
  local opt = optim(0.5)
  local s = S.OneCycle(opt, {total_steps = 10})
  assert_lrs(lrs_of(opt), {0.02}, "start = max_lr / 25")
  assert_lrs(s:lr_at(2), {0.5}, "peak at pct_start * total - 1")
  assert_lrs(s:lr_at(9), {0.02 / 1e4}, "end = start / 1e4")
  for _ = 1, 10 do s:step() end                    -- stepping to total_steps is allowed
  lu.assertEquals(s.last_epoch, 10)
  local before = lrs_of(opt)
  assert_err("OneCycle: step 11 is past total_steps (10)", s.step, s)
  lu.assertEquals(s.last_epoch, 10)                 -- nothing changed
  lu.assertEquals(lrs_of(opt), before)
  assert_err("OneCycle: step 11 is past total_steps (10)", s.lr_at, s, 11)
  local one = S.OneCycle(optim(0.1), {max_lr = 1, total_steps = 1})
  assert_lrs(one:lr_at(0), {1 / 25 / 1e4}, "total_steps = 1")
end

function TestSchedBasics.test_cyclic_defaults_and_scale_fn()
  local s = S.Cyclic(optim(0.01), {max_lr = 0.11, step_size_up = 5})
  assert_lrs(s:lr_at(0), {0.01}, "base_lr defaults to the optimizer's lr")
  assert_lrs(s:lr_at(5), {0.11}, "peak")
  assert_lrs(s:lr_at(10), {0.01}, "back down")
  local h = S.Cyclic(optim(0.01), {base_lr = 0, max_lr = 1, step_size_up = 2,
                                   scale_fn = function(x) return 1 / x end, scale_mode = "cycle"})
  assert_lrs(h:lr_at(2), {1}, "cycle 1 peak")
  assert_lrs(h:lr_at(6), {0.5}, "cycle 2 peak, scale 1/2")
end

function TestSchedBasics.test_lambda_short_form_and_per_group()
  local opt = optim(1, 2)
  local s = S.Lambda(opt, function(t) return 1 / (t + 1) end)
  s:step()
  lu.assertEquals(lrs_of(opt), {0.5, 1})
  local g = S.Lambda(optim(1, 2), {lr_lambda = {function() return 2 end, function() return 3 end}})
  lu.assertEquals(g:lr_at(4), {2, 6})
end

function TestSchedBasics.test_plateau_nan_metric_is_a_bad_epoch()
  local opt = optim(1)
  local s = S.ReduceLROnPlateau(opt, {patience = 1, factor = 0.5})
  s:step(1.0); s:step(0 / 0); s:step(0 / 0)
  lu.assertEquals(opt.param_groups[1].lr, 0.5)
  lu.assertEquals(s.num_bad_epochs, 0)
end

function TestSchedBasics.test_state_dict_is_plain_data()
  local opt = optim(0.1, 0.2)
  local p = S.ReduceLROnPlateau(opt, {patience = 0})
  local c = S.Chained(opt, {S.Lambda(opt, function(t) return 0.9 ^ t end), p})
  c:step(1); c:step(2)
  local function plain(v, path)
    local t = type(v)
    if t == "table" then
      lu.assertNil(getmetatable(v), path)
      for k, x in pairs(v) do
        lu.assertTrue(type(k) == "string" or math.type(k) == "integer", path)
        plain(x, path .. "." .. tostring(k))
      end
    else
      lu.assertTrue(t == "number" or t == "string" or t == "boolean", path .. " is a " .. t)
    end
  end
  local sd = c:state_dict()
  plain(sd, "sd")
  lu.assertEquals(sd.schedule, "Chained")
  lu.assertEquals(sd.members[2].schedule, "ReduceLROnPlateau")
  lu.assertEquals(sd.members[2].best, 1)
  assert_lrs(sd.members[2].scale, {0.1, 0.1}, "scale")
  sd.last_lr[1] = 99                                -- a copy, not the live state
  lu.assertNotEquals(c:get_last_lr()[1], 99)
end

function TestSchedBasics.test_load_state_dict_sets_the_lrs()
  local a_opt, b_opt = optim(0.1), optim(0.1)
  local a = S.Step(a_opt, {step_size = 2, gamma = 0.1})
  local b = S.Step(b_opt, {step_size = 2, gamma = 0.1})
  for _ = 1, 5 do a:step() end
  b:load_state_dict(a:state_dict())
  lu.assertEquals(b.last_epoch, 5)
  lu.assertEquals(lrs_of(b_opt), lrs_of(a_opt))
end

function TestSchedBasics.test_tostring()
  local s = S.Step(optim(0.1), {step_size = 2})
  lu.assertStrContains(tostring(s), "moonopt.sched.Step(step=0, lr={0.1})")
  lu.assertTrue(S.is_schedule(s))
  lu.assertFalse(S.is_schedule({}))
end

-------------------------------------------------------------------------------------------
-- Composition, with ReduceLROnPlateau as a member

local TestSchedCompose = {}

function TestSchedCompose.test_chained_plateau_reduction_persists_through_cosine()
  local opt = optim(0.1, 0.01)
  local cos = S.CosineAnnealing(opt, {T_max = 20})
  local p = S.ReduceLROnPlateau(opt, {patience = 0, factor = 0.5})
  local c = S.Chained(opt, {cos, p})
  lu.assertTrue(c.needs_metric)
  c:step(1.0)                                       -- better than nothing: no reduction
  assert_lrs(lrs_of(opt), cos:lr_at(1), "step 1")
  c:step(2.0)                                       -- worse: halve
  assert_lrs(lrs_of(opt), {cos:lr_at(2)[1] * 0.5, cos:lr_at(2)[2] * 0.5}, "step 2")
  c:step(0.5)                                       -- better: the reduction stays
  assert_lrs(lrs_of(opt), {cos:lr_at(3)[1] * 0.5, cos:lr_at(3)[2] * 0.5}, "step 3")
  assert_err("Chained: step(metric) needs a metric: it holds a ReduceLROnPlateau", c.step, c)
  assert_err("Chained: lr_at is not available: schedules[2] is ReduceLROnPlateau", c.lr_at, c, 1)
end

function TestSchedCompose.test_chained_order_matters_for_min_lr()
  -- the plateau's min_lr bounds the lr at the moment of a reduction, at its place in the chain
  local opt = optim(1)
  local p = S.ReduceLROnPlateau(opt, {patience = 0, factor = 0.1, min_lr = 0.05})
  local c = S.Chained(opt, {S.Exponential(opt, {gamma = 0.5}), p})
  c:step(1); c:step(2)                              -- in 0.25 -> max(0.025, 0.05)
  assert_lrs(lrs_of(opt), {0.05}, "floored at min_lr")
  c:step(3)                                         -- no reduction (eps rule: 0.025 -> 0.05 would raise)
  assert_lrs(lrs_of(opt), {0.025}, "the input keeps decaying under the kept scale")
end

function TestSchedCompose.test_sequential_warmup_then_plateau()
  local opt = optim(0.1)
  local warm = S.Linear(opt, {start_factor = 0.1, total_iters = 5})
  local p = S.ReduceLROnPlateau(opt, {patience = 1, factor = 0.1})
  local s = S.Sequential(opt, {warm, p}, {5})
  assert_lrs(lrs_of(opt), {0.01}, "step 0")
  s:step(1.0)                                       -- a metric during warmup is ignored...
  for t = 2, 4 do s:step(); assert_lrs(lrs_of(opt), warm:lr_at(t), "warmup " .. t) end
  assert_err("Sequential: step(metric) needs a metric while schedules[2] (ReduceLROnPlateau) is active",
             s.step, s)                             -- ...and needed once the plateau runs (step 5)
  lu.assertEquals(s.last_epoch, 4)
  s:step(1.0); s:step(1.0)
  lu.assertEquals(opt.param_groups[1].lr, 0.1)      -- the plateau starts from the base lr
  s:step(1.0)                                       -- second bad epoch > patience 1
  assert_lrs(lrs_of(opt), {0.01}, "reduced")
  lu.assertEquals(p.last_epoch, 2)                  -- the member counts from its milestone
  lu.assertEquals(s.last_epoch, 7)
end

function TestSchedCompose.test_nested_composition()
  local opt = optim(1)
  local warm = S.Linear(opt, {start_factor = 0.5, total_iters = 2})
  local decay = S.Exponential(opt, {gamma = 0.5})
  local seq = S.Sequential(opt, {warm, decay}, {2})
  local c = S.Chained(opt, {seq, S.Constant(opt, {factor = 0.1, total_iters = 3})})
  local expect = {0.05, 0.075, 0.1, 0.5, 0.25}
  for t = 0, 4 do
    if t > 0 then c:step() end
    assert_lrs(lrs_of(opt), {expect[t + 1]}, "step " .. t)
  end
  assert_lrs(c:lr_at(3), {0.5}, "lr_at through both")
end

function TestSchedCompose.test_metric_on_a_schedule_without_plateau_is_an_error()
  local opt = optim(1)
  local c = S.Chained(opt, {S.Exponential(opt, {gamma = 0.5})})
  assert_err("Chained: step() takes no metric (only ReduceLROnPlateau and compositions holding one do), got 0.5",
             c.step, c, 0.5)
  local s = S.Step(opt, {step_size = 1})
  assert_err("Step: step() takes no metric", s.step, s, 3)
  lu.assertEquals(s.last_epoch, 0)
end

function TestSchedCompose.test_member_errors()
  local opt, other = optim(1), optim(1)
  local a = S.Exponential(opt, {gamma = 0.5})
  local b = S.Exponential(other, {gamma = 0.5})
  assert_err("Chained: schedules[2] (Exponential) was built for a different optimizer", S.Chained, opt, {a, b})
  assert_err("Chained: schedules[2] (Exponential) appears twice", S.Chained, opt, {a, a})
  assert_err("Chained: schedules[1] must be a schedule (from mo.sched), got a table", S.Chained, opt, {{}})
  assert_err("Chained: argument 'schedules' must be a non-empty list of schedules, got nil", S.Chained, opt)
  assert_err("Sequential: argument 'schedules' must be a non-empty list of schedules, got a table",
             S.Sequential, opt, {}, {})
  local c = S.Constant(opt)
  assert_err("Sequential: argument 'milestones' must be a list of 1 step(s) (one fewer than the schedules), got nil",
             S.Sequential, opt, {a, c})
  assert_err("Sequential: argument 'milestones' must be a list of 1 step(s)", S.Sequential, opt, {a, c}, {1, 2})
  local d = S.Step(opt, {step_size = 3})
  assert_err("Sequential: milestones[2] must be a positive integer greater than the one before, got 5",
             S.Sequential, opt, {a, c, d}, {5, 5})
  assert_err("Sequential: milestones[1] must be a positive integer greater than the one before, got 0",
             S.Sequential, opt, {a, c}, {0})
end

-------------------------------------------------------------------------------------------
-- Errors: each names the schedule, the option or argument, and the value

local TestSchedErrors = {}

function TestSchedErrors.test_error_position_is_the_callers_line()
  -- (not tail calls: a tail call leaves no caller line to report)
  local ok, e = pcall(function() local s = S.WarmupCosine(optim(0.1), {warmup = -3, total = 10}); return s end)
  lu.assertFalse(ok)
  lu.assertStrMatches(e, ".*test_sched%.lua:%d+: WarmupCosine: option 'warmup' must be a non%-negative " ..
                         "integer, got %-3")
  local s = S.Step(optim(0.1), {step_size = 1})
  ok, e = pcall(function() local v = s:lr_at(-1); return v end)
  lu.assertFalse(ok)
  lu.assertStrMatches(e, ".*test_sched%.lua:%d+: Step: lr_at: argument 'step' must be a non%-negative " ..
                         "integer, got %-1")
end

function TestSchedErrors.test_option_errors()
  local opt = optim(0.1, 0.01)
  local cases = {
    {"WarmupCosine", {warmup = -3, total = 10}, "WarmupCosine: option 'warmup' must be a non-negative integer, got -3"},
    {"WarmupCosine", {warmup = 1.5, total = 10}, "option 'warmup' must be a non-negative integer, got 1.5"},
    {"WarmupCosine", {warmup = 20, total = 10}, "WarmupCosine: option 'total' must be >= warmup (20), got 10"},
    {"WarmupCosine", {warmup = 2, total = 10, eta_min = 0, min_lr = 0},
     "WarmupCosine: options 'eta_min' and 'min_lr' are the same; give one"},
    {"WarmupCosine", {warmup = 2, total = 10, warmpu = 1},
     "WarmupCosine: unknown option 'warmpu' (options: warmup, total, eta_min, min_lr, warmup_start)"},
    {"WarmupCosine", {total = 10}, "WarmupCosine: option 'warmup' is required"},
    {"WarmupCosine", {warmup = 2, total = "10"}, "option 'total' must be a positive integer, got string \"10\""},
    {"WarmupLinear", {warmup = 2, total = 0}, "WarmupLinear: option 'total' must be a positive integer, got 0"},
    {"Step", {}, "Step: option 'step_size' is required"},
    {"Step", {step_size = 0}, "Step: option 'step_size' must be a positive integer, got 0"},
    {"Step", {step_size = 2, gamma = -1}, "Step: option 'gamma' must be a positive number, got -1"},
    {"Step", {step_size = 2, gamma = 0 / 0}, "Step: option 'gamma' must be a positive number, got nan"},
    {"Step", {step_size = 2, gamma = math.huge}, "Step: option 'gamma' must be a positive number, got inf"},
    {"Step", 5, "Step: argument 'opts' must be a table of options, got 5"},
    {"Step", {3}, "Step: unknown option 1 (options: step_size, gamma)"},
    {"MultiStep", {milestones = {5, 3}},
     "MultiStep: option 'milestones' must be a non-empty list of strictly increasing integers >= 0, " ..
     "got 3 at position 2"},
    {"MultiStep", {milestones = {}}, "MultiStep: option 'milestones' must be a non-empty list"},
    {"Exponential", {}, "Exponential: option 'gamma' is required"},
    {"Constant", {factor = 1.5}, "Constant: option 'factor' must be a number in [0, 1], got 1.5"},
    {"Linear", {total_iters = 0}, "Linear: option 'total_iters' must be a positive integer, got 0"},
    {"Linear", {start_factor = -0.1}, "Linear: option 'start_factor' must be a number in [0, 1], got -0.1"},
    {"Polynomial", {power = -1}, "Polynomial: option 'power' must be a non-negative number, got -1"},
    {"CosineAnnealing", {T_max = 0}, "CosineAnnealing: option 'T_max' must be a positive integer, got 0"},
    {"CosineAnnealing", {T_max = 5, eta_min = -1}, "option 'eta_min' must be a non-negative number, got -1"},
    {"CosineAnnealingWarmRestarts", {T_0 = 5, T_mult = 0},
     "CosineAnnealingWarmRestarts: option 'T_mult' must be a positive integer, got 0"},
    {"OneCycle", {}, "OneCycle: option 'total_steps' (or both 'epochs' and 'steps_per_epoch') is required"},
    {"OneCycle", {total_steps = 10, epochs = 2, steps_per_epoch = 5},
     "OneCycle: give total_steps or epochs and steps_per_epoch, not both"},
    {"OneCycle", {total_steps = 10, anneal_strategy = "cosine"},
     "OneCycle: option 'anneal_strategy' must be one of 'cos', 'linear', got string \"cosine\""},
    {"OneCycle", {total_steps = 10, max_lr = {0.1}},
     "OneCycle: option 'max_lr' must be a positive number or a list of 2 of them (one per param group), " ..
     "got a table"},
    {"OneCycle", {total_steps = 10, max_lr = {0.1, -1}},
     "OneCycle: option 'max_lr[2]' must be a positive number, got -1"},
    {"OneCycle", {total_steps = 10, pct_start = 0.1}, "OneCycle: phase 1 has zero length with pct_start=0.1"},
    {"OneCycle", {total_steps = 10, pct_start = 1}, "OneCycle: phase 2 has zero length"},
    {"OneCycle", {total_steps = 10, three_phase = "yes"},
     "OneCycle: option 'three_phase' must be a boolean, got string \"yes\""},
    {"OneCycle", {total_steps = 10, cycle_momentum = true},
     "OneCycle: option 'cycle_momentum' = true is not supported"},
    {"OneCycle", {epochs = math.maxinteger, steps_per_epoch = 2}, "OneCycle: epochs * steps_per_epoch overflows"},
    {"Cyclic", {base_lr = 0.1}, "Cyclic: option 'max_lr' is required"},
    {"Cyclic", {max_lr = 1, mode = "sine"},
     "Cyclic: option 'mode' must be one of 'triangular', 'triangular2', 'exp_range', got string \"sine\""},
    {"Cyclic", {max_lr = 1, scale_mode = "cycle"}, "Cyclic: option 'scale_mode' needs 'scale_fn'"},
    {"Cyclic", {max_lr = 1, scale_fn = 3}, "Cyclic: option 'scale_fn' must be a function, got 3"},
    {"ReduceLROnPlateau", {mode = "minimum"},
     "ReduceLROnPlateau: option 'mode' must be one of 'min', 'max', got string \"minimum\""},
    {"ReduceLROnPlateau", {factor = 1}, "ReduceLROnPlateau: option 'factor' must be a number in (0, 1), got 1"},
    {"ReduceLROnPlateau", {patience = -1},
     "ReduceLROnPlateau: option 'patience' must be a non-negative integer, got -1"},
    {"ReduceLROnPlateau", {threshold_mode = "relative"}, "option 'threshold_mode' must be one of 'rel', 'abs'"},
    {"ReduceLROnPlateau", {min_lr = {0, 0, 0}}, "option 'min_lr' must be a non-negative number or a list of 2 of them"},
    {"ReduceLROnPlateau", {verbose = true}, "ReduceLROnPlateau: unknown option 'verbose'"},
    {"Lambda", {}, "Lambda: option 'lr_lambda' is required"},
    {"Lambda", {lr_lambda = 1}, "Lambda: option 'lr_lambda' must be a function, got 1"},
    {"Lambda", {lr_lambda = {print}},
     "Lambda: option 'lr_lambda' must be a function or a list of 2 functions (one per param group), got a table"},
  }
  for _, c in ipairs(cases) do
    assert_err(c[3], S[c[1]], opt, c[2])
  end
end

function TestSchedErrors.test_bad_optimizer()
  assert_err("Step: argument 'optimizer' must be an optimizer (a table with param_groups), got nil", S.Step, nil,
             {step_size = 1})
  assert_err("Step: optimizer.param_groups must be a non-empty list of groups, got nil", S.Step, {}, {step_size = 1})
  assert_err("Step: optimizer.param_groups must be a non-empty list of groups, got a table", S.Step,
             {param_groups = {}}, {step_size = 1})
  assert_err("Step: optimizer.param_groups[2] must be a table, got 3", S.Step, {param_groups = {{lr = 1}, 3}},
             {step_size = 1})
  assert_err("Step: optimizer.param_groups[1].lr must be a non-negative number, got string \"x\"", S.Step,
             {param_groups = {{lr = "x"}}}, {step_size = 1})
  assert_err("Step: optimizer.param_groups[1].lr must be a non-negative number, got -1", S.Step,
             {param_groups = {{lr = -1}}}, {step_size = 1})
  assert_err("optimizer.param_groups[1].initial_lr must be a non-negative number, got nan", S.Step,
             {param_groups = {{lr = 1, initial_lr = 0 / 0}}}, {step_size = 1})
  -- a failed construction leaves the optimizer as it was
  local opt = optim(0.1)
  pcall(S.Step, opt, {step_size = 0})
  lu.assertNil(opt.param_groups[1].initial_lr)
  lu.assertEquals(opt.param_groups[1].lr, 0.1)
end

function TestSchedErrors.test_lambda_bad_results_leave_state_unchanged()
  local opt = optim(1)
  local bad_at = 2
  local s = S.Lambda(opt, function(t) if t == bad_at then return 0 / 0 end return 1 end)
  s:step()
  assert_err("Lambda: lr_lambda returned nan at step 2, expected a finite number", s.step, s)
  lu.assertEquals(s.last_epoch, 1)
  bad_at = -1
  local n = S.Lambda(optim(1), function(t) if t > 0 then return "x" end return 1 end)
  assert_err("Lambda: lr_lambda returned string \"x\" at step 1, expected a finite number", n.step, n)
  -- an error raised by the user's function comes through unchanged
  local r = S.Lambda(optim(1), function(t) if t > 0 then error("boom", 0) end return 1 end)
  lu.assertEquals(err_of(r.step, r), "boom")
  -- inside a composition, no member moves when a later one fails
  local opt2 = optim(1)
  local p = S.ReduceLROnPlateau(opt2, {patience = 0})
  local f = S.Lambda(opt2, function(t) if t == 3 then error("late", 0) end return 1 end)
  local c = S.Chained(opt2, {p, f})
  c:step(1); c:step(2)                              -- the second is a bad epoch: scale 0.1
  local before = c:state_dict()
  assert_err("late", c.step, c, 3)                  -- would be another reduction
  lu.assertEquals(c:state_dict(), before)
  lu.assertEquals(p.last_epoch, 2)
  lu.assertEquals(p.best, 1)
  assert_lrs(lrs_of(opt2), {0.1}, "lr unchanged")
end

function TestSchedErrors.test_method_errors()
  local opt = optim(0.1, 0.2)
  local s = S.Step(opt, {step_size = 1})
  assert_err("mo.sched: step must be called as a method: sched:step(...), got nil as self", s.step)
  assert_err("Step: lr_at: argument 'step' must be a non-negative integer, got 1.5", s.lr_at, s, 1.5)
  assert_err("Step: lr_at: argument 'step' must be a non-negative integer, got string \"3\"", s.lr_at, s, "3")
  local p = S.ReduceLROnPlateau(opt)
  assert_err("ReduceLROnPlateau: step(metric): 'metric' must be a number, got string \"low\"", p.step, p, "low")
  assert_err("ReduceLROnPlateau: step(metric) needs the metric (a number), got nil", p.step, p)
  assert_err("ReduceLROnPlateau: lr_at is not available: ReduceLROnPlateau's lr depends on the metrics",
             p.lr_at, p, 0)
  opt.param_groups[3] = {lr = 1}
  assert_err("Step: the optimizer's param_groups changed: the schedule was built for 2 group(s), now 3", s.step, s)
end

function TestSchedErrors.test_load_state_dict_errors_change_nothing()
  local opt = optim(0.1, 0.2)
  local s = S.Step(opt, {step_size = 1, gamma = 0.5})
  s:step()
  local good = s:state_dict()
  local function with(k, v)
    local sd = s:state_dict()
    sd[k] = v
    return sd
  end
  assert_err("Step: load_state_dict: the state must be a table, got nil", s.load_state_dict, s)
  assert_err("Step: load_state_dict: the state is for schedule string \"Exponential\", not Step", s.load_state_dict, s,
             with("schedule", "Exponential"))
  assert_err("Step: load_state_dict: last_epoch must be a non-negative integer, got -1", s.load_state_dict, s,
             with("last_epoch", -1))
  assert_err("Step: load_state_dict: base_lrs must be a list of 2 non-negative numbers, got a table",
             s.load_state_dict, s, with("base_lrs", {0.1}))
  assert_err("Step: load_state_dict: last_lr must be a list of 2 numbers, got a table", s.load_state_dict, s,
             with("last_lr", {0.1, "x"}))
  lu.assertEquals(s:state_dict(), good)
  -- composite: a bad member state leaves every member untouched
  local p = S.ReduceLROnPlateau(opt, {patience = 0})
  local c = S.Chained(opt, {S.Exponential(opt, {gamma = 0.9}), p})
  c:step(1); c:step(2)
  local before = c:state_dict()
  local sd = c:state_dict()
  sd.last_epoch = 7
  sd.members[1].last_epoch = 7
  sd.members[2].scale = {1, -1}
  assert_err("Chained: load_state_dict: members[2].scale must be a list of 2 non-negative numbers",
             c.load_state_dict, c, sd)
  lu.assertEquals(c:state_dict(), before)
  sd.members[2].scale = {1, 1}
  sd.members[2].schedule = "Step"
  assert_err("Chained: load_state_dict: members[2] is for schedule string \"Step\", not ReduceLROnPlateau",
             c.load_state_dict, c, sd)
  sd.members = {sd.members[1]}
  assert_err("Chained: load_state_dict: members must be a list of 2 states, got a table", c.load_state_dict, c, sd)
  lu.assertEquals(c:state_dict(), before)
end

return {
  TestSchedGolden = TestSchedGolden,
  TestSchedBasics = TestSchedBasics,
  TestSchedCompose = TestSchedCompose,
  TestSchedErrors = TestSchedErrors,
}
