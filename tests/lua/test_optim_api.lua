-- tests/lua/test_optim_api.lua - the optimizer classes' API: param groups, option changes
-- between steps, nil grads, closures, skip_nonfinite, state_dict round trips, every error,
-- describe, mo.optim.groups, the gradient utilities.
local lu = require "luaunit"
local mo = require "moonopt"

local function f32(x) return (string.unpack("f", string.pack("f", x))) end

local function flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then for _, x in ipairs(v) do walk(x) end else out[#out + 1] = v end
  end
  walk(t:totable())
  return out
end

-- deterministic "gradients" for step k of a tensor with n elements
local function grad_values(n, k, seed)
  local v = {}
  for i = 1, n do v[i] = math.sin(i * 1.7 + k * 0.9 + (seed or 0)) * (1 + (i % 3)) end
  return v
end

local function set_grad(p, k, seed)
  local shape = p:shape()
  local n = p:numel()
  p.grad = mo.tensor(grad_values(n, k, seed), shape)
end

local function params3()
  return {mo.tensor{0.5, -1.0, 2.0}, mo.tensor{{1, 2, 3}, {-4, 5, -6}}, mo.tensor{0.25}}
end

local function assert_error_contains(fn, text)
  local ok, err = pcall(fn)
  lu.assertFalse(ok, "expected an error containing: " .. text)
  lu.assertStrContains(tostring(err), text)
end

-- ======================================================================================

local TestOptimApiGroups = {}

function TestOptimApiGroups.test_param_groups_have_every_option()
  local a, b = params3()[1], params3()[2]
  local opt = mo.optim.AdamW({{params = {a}, lr = 0.1}, {params = {b}, weight_decay = 0}},
                             {lr = 0.01, betas = {0.8, 0.9}})
  local g1, g2 = opt.param_groups[1], opt.param_groups[2]
  lu.assertEquals(g1.lr, 0.1)
  lu.assertEquals(g2.lr, 0.01)
  lu.assertEquals(g1.weight_decay, 1e-2)
  lu.assertEquals(g2.weight_decay, 0)
  lu.assertEquals(g1.betas, {0.8, 0.9})
  lu.assertEquals(g1.eps, 1e-8)
  lu.assertEquals(g1.amsgrad, false)
  lu.assertEquals(g1.flavor, "pytorch")
  lu.assertEquals(g1.weight_decay_mode, "decoupled")
  lu.assertEquals(g1.eps_mode, "raw")
  lu.assertEquals(g1.bias_correction, true)
  -- the groups do not share the user's betas table
  g1.betas[1] = 0.5
  lu.assertEquals(g2.betas[1], 0.8)
end

function TestOptimApiGroups.test_tostring_names_class_and_group_count()
  local a, b = mo.zeros(2), mo.zeros(3)
  lu.assertEquals(tostring(mo.optim.AdamW({a, b}, {})), "moonopt.optim.AdamW (1 param group)")
  lu.assertEquals(tostring(mo.optim.SGD({{params = {a}}, {params = {b}}}, {lr = 0.1})),
                  "moonopt.optim.SGD (2 param groups)")
end

function TestOptimApiGroups.test_group_keys_override_options_in_the_update()
  -- SGD, lr 0.1 in group 1 and the default 0.01 in group 2: w -= lr*g
  local a, b = mo.tensor{1, 1}, mo.tensor{1, 1}
  a.grad, b.grad = mo.tensor{1, 2}, mo.tensor{1, 2}
  local opt = mo.optim.SGD({{params = {a}, lr = 0.1}, {params = {b}}}, {lr = 0.01})
  opt:step()
  lu.assertEquals(flat(a), {f32(0.9), f32(0.8)})
  lu.assertEquals(flat(b), {f32(0.99), f32(0.98)})
end

function TestOptimApiGroups.test_lr_change_takes_effect_at_next_step()
  local p = mo.tensor{1, 1}
  p.grad = mo.tensor{1, 1}
  local opt = mo.optim.SGD({p}, {lr = 0.1})
  opt:step()
  lu.assertEquals(flat(p), {f32(0.9), f32(0.9)})
  opt.param_groups[1].lr = 0.5
  opt:step()
  lu.assertEquals(flat(p), {f32(f32(0.9) - 0.5), f32(f32(0.9) - 0.5)})
  -- any option: momentum switched on later starts its buffer then
  opt.param_groups[1].momentum = 0.9
  opt.param_groups[1].lr = 0.1
  opt:step()
  lu.assertNotNil(opt.state[p].momentum_buffer)
end

function TestOptimApiGroups.test_betas_changed_between_adam_steps()
  local p1, p2 = mo.tensor{1, 2, 3}, mo.tensor{1, 2, 3}
  local o1 = mo.optim.Adam({p1}, {lr = 0.1})
  local o2 = mo.optim.Adam({p2}, {lr = 0.1})
  for k = 1, 3 do
    set_grad(p1, k); set_grad(p2, k)
    if k == 2 then o1.param_groups[1].betas = {0.5, 0.9} end
    o1:step(); o2:step()
  end
  lu.assertNotEquals(flat(p1), flat(p2))
end

function TestOptimApiGroups.test_nil_grad_is_skipped_and_state_untouched()
  local a, b = mo.tensor{1, 2}, mo.tensor{3, 4}
  local opt = mo.optim.Adam({a, b}, {lr = 0.1})
  a.grad = mo.tensor{1, 1}
  opt:step()
  lu.assertEquals(flat(b), {3, 4})
  lu.assertNil(opt.state[b])
  lu.assertEquals(opt.state[a].step, 1)
  local before = flat(opt.state[a].exp_avg)
  a.grad = nil
  b.grad = mo.tensor{1, 1}
  opt:step()
  lu.assertEquals(opt.state[a].step, 1)
  lu.assertEquals(flat(opt.state[a].exp_avg), before)
  lu.assertEquals(opt.state[b].step, 1)
end

function TestOptimApiGroups.test_closure_called_once_before_update()
  local p = mo.tensor{2}
  local opt = mo.optim.SGD({p}, {lr = 0.5})
  local calls, seen = 0, nil
  local loss = opt:step(function()
    calls = calls + 1
    seen = p:get(1)
    p.grad = mo.tensor{p:get(1)}    -- f = x^2/2
    return 0.5 * p:get(1) ^ 2
  end)
  lu.assertEquals(calls, 1)
  lu.assertEquals(seen, 2)         -- evaluated before the update
  lu.assertEquals(loss, 2)
  lu.assertEquals(p:get(1), 1)
  lu.assertNil(opt:step())         -- no closure: returns nil
end

function TestOptimApiGroups.test_zero_grad()
  local a, b = mo.tensor{1, 2}, mo.tensor{3}
  a.grad, b.grad = mo.tensor{5, 6}, mo.tensor{7}
  local opt = mo.optim.SGD({a, b}, {lr = 0.1})
  opt:zero_grad()
  lu.assertEquals(flat(a.grad), {0, 0})
  lu.assertEquals(flat(b.grad), {0})
  opt:zero_grad(true)
  lu.assertNil(a.grad)
  lu.assertNil(b.grad)
  a.grad = mo.tensor{1, 1}
  opt:zero_grad{set_to_none = true}
  lu.assertNil(a.grad)
end

function TestOptimApiGroups.test_add_param_group()
  local a, b = mo.tensor{1}, mo.tensor{2}
  local opt = mo.optim.Adam({a}, {lr = 0.3})
  opt:add_param_group{params = {b}, eps = 1e-3}
  lu.assertEquals(#opt.param_groups, 2)
  lu.assertEquals(opt.param_groups[2].lr, 0.3)
  lu.assertEquals(opt.param_groups[2].eps, 1e-3)
  assert_error_contains(function() opt:add_param_group{params = {a}} end, "more than one parameter group")
end

function TestOptimApiGroups.test_strided_param_equals_contiguous()
  local base = mo.tensor{{1, 2, 3}, {4, 5, 6}}
  local pt = base:t()                      -- {3, 2}, not contiguous
  local pc = pt:contiguous()
  lu.assertFalse(pt:is_contiguous())
  local o1 = mo.optim.AdamW({pt}, {lr = 0.1, amsgrad = true})
  local o2 = mo.optim.AdamW({pc}, {lr = 0.1, amsgrad = true})
  for k = 1, 3 do
    set_grad(pt, k); set_grad(pc, k)
    o1:step(); o2:step()
  end
  lu.assertEquals(flat(pt), flat(pc))
  lu.assertEquals(flat(base:t():contiguous()), flat(pc))
end

-- ======================================================================================

local TestOptimApiNonfinite = {}

function TestOptimApiNonfinite.test_skip_nonfinite_changes_nothing()
  local a, b = mo.tensor{1, 2}, mo.tensor{3, 4}
  local opt = mo.optim.Adam({a, b}, {lr = 0.1, skip_nonfinite = true})
  a.grad, b.grad = mo.tensor{1, 1}, mo.tensor{1, 1}
  opt:step()
  local pa, pb, m = flat(a), flat(b), flat(opt.state[a].exp_avg)
  b.grad = mo.tensor{1, 0 / 0}
  opt:step()
  b.grad = mo.tensor{math.huge, 1}
  opt:step()
  lu.assertEquals(opt.skipped_steps, 2)
  lu.assertEquals(flat(a), pa)
  lu.assertEquals(flat(b), pb)
  lu.assertEquals(flat(opt.state[a].exp_avg), m)
  lu.assertEquals(opt.state[a].step, 1)
  lu.assertEquals(opt.state[b].step, 1)
  b.grad = mo.tensor{1, 1}
  opt:step()
  lu.assertEquals(opt.state[a].step, 2)
  lu.assertEquals(opt.skipped_steps, 2)
end

function TestOptimApiNonfinite.test_without_skip_nan_propagates()
  local a = mo.tensor{1, 2}
  local opt = mo.optim.SGD({a}, {lr = 0.1})
  a.grad = mo.tensor{0 / 0, 1}
  opt:step()
  lu.assertTrue(a:get(1) ~= a:get(1))
  lu.assertEquals(opt.skipped_steps, 0)
end

function TestOptimApiNonfinite.test_gradient_utilities()
  local a, b = mo.tensor{3, 0}, mo.tensor{{0, 4}}
  a.grad, b.grad = mo.tensor{3, 0}, mo.tensor{{0, 4}}
  lu.assertTrue(mo.optim.all_finite({a, b}))
  local n = mo.optim.clip_grad_norm({a, b}, 10)
  lu.assertAlmostEquals(n, 5, 1e-12)
  lu.assertEquals(a.grad:get(1), 3)
  n = mo.optim.clip_grad_norm({a, b}, 1)
  lu.assertAlmostEquals(n, 5, 1e-12)
  lu.assertAlmostEquals(a.grad:get(1), 3 / (5 + 1e-6), 1e-7)
  lu.assertAlmostEquals(b.grad:get(1, 2), 4 / (5 + 1e-6), 1e-7)
  a.grad = mo.tensor{-3, 0.5}
  mo.optim.clip_grad_value({a, b}, 0.6)
  lu.assertEquals(flat(a.grad), {f32(-0.6), 0.5})
  a.grad = mo.tensor{1, -math.huge}
  lu.assertFalse(mo.optim.all_finite({a, b}))
  lu.assertFalse(mo.optim.all_finite(a.grad))
  assert_error_contains(function() mo.optim.clip_grad_norm({a}, -1) end, "max_norm")
end

-- ======================================================================================

local TestOptimApiStateDict = {}

-- Runs `steps` steps of a fresh optimizer on fresh params, with gradients for steps first..
local function run(make, params, opt, first, last)
  for k = first, last do
    for i, p in ipairs(params) do set_grad(p, k, i) end
    if opt.name == "LBFGS" then
      opt:step(function()
        local loss = 0
        for _, p in ipairs(params) do
          local v = flat(p)
          local g = {}
          for j, x in ipairs(v) do
            g[j] = (j % 3 + 1) * x - 0.5
            loss = loss + 0.5 * (j % 3 + 1) * x * x - 0.5 * x
          end
          p.grad = mo.tensor(g, p:shape())
        end
        return loss
      end)
    else
      opt:step()
    end
  end
  return make
end

local ROUND_TRIP = {
  {"SGD", {lr = 0.1, momentum = 0.9, nesterov = true}},
  {"Adam", {lr = 0.05, amsgrad = true}},
  {"AdamW", {lr = 0.05, flavor = "mxnet"}},
  {"Adamax", {lr = 0.05}},
  {"NAdam", {lr = 0.05}},
  {"RAdam", {lr = 0.05}},
  {"RMSprop", {lr = 0.01, centered = true, momentum = 0.5}},
  {"Adagrad", {lr = 0.1, lr_decay = 0.1}},
  {"Adadelta", {}},
  {"Lion", {lr = 0.01, weight_decay = 0.1}},
  {"LAMB", {lr = 0.01, weight_decay = 0.1}},
  {"LBFGS", {history_size = 3, max_iter = 4}},
}

for _, case in ipairs(ROUND_TRIP) do
  local class, opts = case[1], case[2]
  TestOptimApiStateDict["test_round_trip_bit_identical_" .. class] = function()
    local pa = params3()
    local oa = mo.optim[class](pa, opts)
    run(nil, pa, oa, 1, 3)
    local sd = oa:state_dict()
    -- a second optimizer on copies of the params, restored from the dict
    local pb = {}
    for i, p in ipairs(pa) do pb[i] = p:clone() end
    local ob = mo.optim[class](pb, opts)
    ob:load_state_dict(sd)
    run(nil, pa, oa, 4, 6)
    run(nil, pb, ob, 4, 6)
    for i = 1, #pa do lu.assertEquals(flat(pb[i]), flat(pa[i]), class .. " param " .. i) end
    -- the dict was a copy: the steps after it did not change it
    local sd2 = oa:state_dict()
    lu.assertNotEquals(sd2, sd)
  end
end

function TestOptimApiStateDict.test_layout()
  local p = params3()
  local opt = mo.optim.Adam({{params = {p[1], p[2]}}, {params = {p[3]}, lr = 0.5}}, {lr = 0.1})
  p[1].grad = mo.tensor{1, 1, 1}
  opt:step()
  local sd = opt:state_dict()
  lu.assertEquals(#sd.param_groups, 2)
  lu.assertEquals(sd.param_groups[1].params, {1, 2})
  lu.assertEquals(sd.param_groups[2].params, {3})
  lu.assertEquals(sd.param_groups[2].lr, 0.5)
  lu.assertEquals(sd.state[1].step, 1)
  lu.assertTrue(mo.is_tensor(sd.state[1].exp_avg))
  lu.assertNil(sd.state[2])
  lu.assertEquals(sd.skipped_steps, 0)
  -- hyperparameters come back too
  local q = params3()
  local o2 = mo.optim.Adam({{params = {q[1], q[2]}}, {params = {q[3]}}}, {lr = 0.1})
  o2:load_state_dict(sd)
  lu.assertEquals(o2.param_groups[2].lr, 0.5)
  lu.assertEquals(o2.param_groups[2].params[1], q[3])
end

function TestOptimApiStateDict.test_load_errors_change_nothing()
  local p = params3()
  local opt = mo.optim.Adam(p, {lr = 0.1})
  for _, t in ipairs(p) do t.grad = mo.zeros(t:shape()):fill(1) end
  opt:step()
  local sd = opt:state_dict()
  local q = params3()
  local o2 = mo.optim.Adam(q, {lr = 0.2})
  -- group count
  local bad = mo.optim.Adam({{params = {q[1]}}, {params = {q[2], q[3]}}})
  assert_error_contains(function() bad:load_state_dict(sd) end, "1 param groups, the optimizer has 2")
  -- param count
  local few = mo.optim.Adam({q[1], q[2]})
  assert_error_contains(function() few:load_state_dict(sd) end,
                        "param group 1 has 3 params in the state dict, 2 in the optimizer")
  -- a state tensor of the wrong shape: names the param and both shapes
  local sd2 = opt:state_dict()
  sd2.state[2].exp_avg_sq = mo.zeros(3, 2)
  sd2.param_groups[1].lr = 0.7
  assert_error_contains(function() o2:load_state_dict(sd2) end,
                        "state of param #2: exp_avg_sq has shape {3, 2}, the param has shape {2, 3}")
  lu.assertEquals(o2.param_groups[1].lr, 0.2)   -- nothing changed
  lu.assertNil(o2.state[q[1]])
  -- a missing key, a bad hyperparameter, an unknown index
  local sd3 = opt:state_dict()
  sd3.state[1].exp_avg = nil
  assert_error_contains(function() o2:load_state_dict(sd3) end, "state of param #1: no 'exp_avg'")
  local sd4 = opt:state_dict()
  sd4.param_groups[1].lr = -1
  assert_error_contains(function() o2:load_state_dict(sd4) end, "Invalid learning rate: -1")
  local sd5 = opt:state_dict()
  sd5.state[9] = sd5.state[1]
  assert_error_contains(function() o2:load_state_dict(sd5) end, "param #9")
  assert_error_contains(function() o2:load_state_dict(nil) end, "expected a table")
  lu.assertNil(o2.state[q[1]])
  lu.assertEquals(flat(q[1]), {0.5, -1, 2})
end

function TestOptimApiStateDict.test_skipped_steps_survive()
  local p = mo.tensor{1}
  local opt = mo.optim.SGD({p}, {lr = 0.1, skip_nonfinite = true})
  p.grad = mo.tensor{0 / 0}
  opt:step()
  local o2 = mo.optim.SGD({mo.tensor{1}}, {lr = 0.1})
  o2:load_state_dict(opt:state_dict())
  lu.assertEquals(o2.skipped_steps, 1)
end

-- ======================================================================================

local TestOptimApiErrors = {}

function TestOptimApiErrors.test_unknown_option_is_named()
  local p = params3()
  assert_error_contains(function() mo.optim.AdamW(p, {weight_decy = 0.1}) end,
                        "AdamW: unknown option 'weight_decy'")
  assert_error_contains(function() mo.optim.SGD({{params = p, lr = 0.1, mommentum = 0.9}}) end,
                        "SGD: unknown option 'mommentum'")
  assert_error_contains(function() mo.optim.Lion(p, {eps = 1e-8}) end, "Lion: unknown option 'eps'")
end

function TestOptimApiErrors.test_invalid_values_as_pytorch()
  local p = params3()
  local cases = {
    {"Adam", {lr = -1}, "Invalid learning rate: -1"},
    {"Adam", {lr = 0 / 0}, "must not be NaN"},
    {"AdamW", {betas = {1.0, 0.999}}, "Invalid beta parameter at index 1: 1 (betas[1] must be in [0, 1))"},
    {"AdamW", {betas = {0.9, -0.1}}, "Invalid beta parameter at index 2: -0.1"},
    {"Adam", {betas = 0.9}, "option 'betas' must be a table of two numbers"},
    {"Adam", {eps = 0}, "Invalid epsilon value: 0"},
    {"Adam", {eps = -1e-8}, "Invalid epsilon value"},
    {"Adam", {weight_decay = -0.1}, "Invalid weight_decay value: -0.1"},
    {"Adam", {amsgrad = 1}, "option 'amsgrad' must be a boolean"},
    {"Adam", {eps_mode = "cooked"}, "option 'eps_mode' must be \"raw\" or \"hat\""},
    {"Adam", {weight_decay_mode = "l3"}, "option 'weight_decay_mode'"},
    {"Adam", {flavor = "tensorflow"}, "unknown flavor string \"tensorflow\""},
    {"Adam", {flavor = "bert"}, "unknown flavor string \"bert\""},
    {"AdamW", {flavor = "torch7"}, "unknown flavor string \"torch7\""},
    {"Adam", {clip_gradient = "x"}, "option 'clip_gradient'"},
    {"SGD", {}, "SGD: option 'lr' is required"},
    {"SGD", {lr = 0.1, momentum = -0.5}, "Invalid momentum value: -0.5"},
    {"SGD", {lr = 0.1, nesterov = true}, "Nesterov momentum requires a momentum and zero dampening"},
    {"SGD", {lr = 0.1, nesterov = true, momentum = 0.9, dampening = 0.1}, "Nesterov momentum requires"},
    {"RMSprop", {alpha = -1}, "Invalid alpha value: -1"},
    {"RMSprop", {momentum = -1}, "Invalid momentum value"},
    {"Adagrad", {lr_decay = -1}, "Invalid lr_decay value"},
    {"Adagrad", {initial_accumulator_value = -1}, "Invalid initial_accumulator_value value"},
    {"Adadelta", {rho = 1.5}, "Invalid rho value: 1.5"},
    {"NAdam", {momentum_decay = -1}, "Invalid momentum_decay value"},
    {"LBFGS", {line_search_fn = "armijo"}, "only 'strong_wolfe' is supported"},
    {"LBFGS", {history_size = 0}, "Invalid history_size value"},
  }
  for _, c in ipairs(cases) do
    assert_error_contains(function() mo.optim[c[1]](p, c[2]) end, c[3])
  end
end

function TestOptimApiErrors.test_bad_params()
  assert_error_contains(function() mo.optim.Adam({}) end, "empty parameter list")
  assert_error_contains(function() mo.optim.Adam(mo.tensor{1}) end, "single tensor")
  assert_error_contains(function() mo.optim.Adam({1, 2}) end, "entry 1 is not a tensor")
  assert_error_contains(function() mo.optim.Adam({mo.tensor{1}}, 0.1) end, "options must be a table")
  local t = mo.tensor{1}
  assert_error_contains(function() mo.optim.Adam({{params = {t}}, {params = {t}}}) end,
                        "more than one parameter group")
  assert_error_contains(function() mo.optim.LBFGS({{params = {t}}, {params = {mo.tensor{2}}}}) end,
                        "doesn't support per-parameter options")
  assert_error_contains(function() mo.optim.LBFGS({t}):step() end, "requires a closure")
  assert_error_contains(function() mo.optim.Adam({t}):step(42) end, "closure must be a function")
end

function TestOptimApiErrors.test_grad_shape_mismatch_names_both_shapes_and_changes_nothing()
  local a, b = mo.tensor{1, 2, 3}, mo.tensor{{1, 2, 3}, {4, 5, 6}}
  local opt = mo.optim.Adam({a, b}, {lr = 0.1})
  a.grad = mo.tensor{1, 1, 1}
  -- a grad of another shape cannot be set through .grad, so go around it: a view of b
  b.grad = mo.zeros(2, 3)
  local ok = pcall(function() b.grad = mo.zeros(3, 2) end)
  if ok then
    assert_error_contains(function() opt:step() end, "does not match param #2 shape {2, 3}")
    lu.assertEquals(flat(a), {1, 2, 3})
    lu.assertNil(opt.state[a])
  end
  -- a freed gradient is refused the same way, before any update
  local g = mo.zeros(2, 3)
  b.grad = g
  getmetatable(g).__gc(g)
  assert_error_contains(function() opt:step() end, "grad of param #2: tensor has been freed")
  lu.assertEquals(flat(a), {1, 2, 3})
  lu.assertNil(opt.state[a])
  -- an option made invalid between steps: the step raises before any update
  b.grad = mo.zeros(2, 3)
  opt:step()
  local before = flat(a)
  opt.param_groups[1].lr = -3
  assert_error_contains(function() opt:step() end, "Adam: Invalid learning rate: -3")
  lu.assertEquals(flat(a), before)
  lu.assertEquals(opt.state[a].step, 1)
end

function TestOptimApiErrors.test_second_group_error_leaves_first_group_unchanged()
  local a, b = mo.tensor{1, 2}, mo.tensor{3, 4}
  a.grad, b.grad = mo.tensor{1, 1}, mo.tensor{1, 1}
  local opt = mo.optim.SGD({{params = {a}}, {params = {b}}}, {lr = 0.1})
  opt.param_groups[2].momentum = -1
  assert_error_contains(function() opt:step() end, "Invalid momentum value: -1")
  lu.assertEquals(flat(a), {1, 2})
  lu.assertEquals(flat(b), {3, 4})
end

-- ======================================================================================

local TestOptimApiNames = {}

local function named_model()
  return {
    {"encoder.weight", mo.tensor{{1, 1}, {1, 1}}},
    {"encoder.bias", mo.tensor{1, 1}},
    {"encoder.LayerNorm.weight", mo.tensor{1, 1}},
    {"head.weight", mo.tensor{{1, 1}}},
  }
end

function TestOptimApiNames.test_groups_by_name_and_ndim()
  local named = named_model()
  local groups = mo.optim.groups(named, {{match = {"bias$", "LayerNorm"}, weight_decay = 0},
                                         {ndim = 1, lr = 5}})
  lu.assertEquals(#groups, 2)      -- the ndim rule matched nothing left over
  lu.assertEquals(groups[1].names, {"encoder.weight", "head.weight"})
  lu.assertNil(groups[1].weight_decay)
  lu.assertEquals(groups[2].names, {"encoder.bias", "encoder.LayerNorm.weight"})
  lu.assertEquals(groups[2].weight_decay, 0)
  local opt = mo.optim.AdamW(groups, {lr = 0.1})
  lu.assertEquals(opt.param_groups[1].weight_decay, 1e-2)
  lu.assertEquals(opt.param_groups[2].weight_decay, 0)
  -- a map works too (sorted by name), and fn rules
  local map = {b = mo.tensor{1}, a = mo.tensor{{1}}}
  local g2 = mo.optim.groups(map, {{fn = function(name) return name == "b" end, lr = 1}})
  lu.assertEquals(g2[1].names, {"a"})
  lu.assertEquals(g2[2].names, {"b"})
  assert_error_contains(function() mo.optim.groups(named, {{match = 3}}) end, "match must be")
  assert_error_contains(function() mo.optim.groups({1, 2}) end, "must be a {name, tensor} pair")
end

function TestOptimApiNames.test_bert_flavor_exempts_layernorm_and_bias()
  -- zero gradients: the only change is the decay, w *= 1 - lr*wd (bert: no bias correction,
  -- m = v = 0, so the adaptive term is 0)
  local named = named_model()
  for _, pair in ipairs(named) do pair[2].grad = mo.zeros(pair[2]:shape()) end
  local opt = mo.optim.AdamW(named, {lr = 0.1, flavor = "bert"})
  lu.assertEquals(opt.param_groups[1].weight_decay, 0.01)
  lu.assertEquals(opt.param_groups[1].eps, 1e-6)
  lu.assertEquals(opt.param_groups[1].bias_correction, false)
  opt:step()
  local decayed = f32(1 - 0.1 * 0.01)
  -- the map order: names sorted as given in the list
  lu.assertEquals(flat(named[1][2]), {decayed, decayed, decayed, decayed})
  lu.assertEquals(flat(named[2][2]), {1, 1})         -- bias
  lu.assertEquals(flat(named[3][2]), {1, 1})         -- LayerNorm
  lu.assertEquals(flat(named[4][2]), {decayed, decayed})
  local text = opt:describe()
  lu.assertStrContains(text, "encoder.bias")
  lu.assertStrMatches(text:match("[^\n]*encoder%.bias[^\n]*"), ".*weight_decay=0$")
  lu.assertStrMatches(text:match("[^\n]*head%.weight[^\n]*"), ".*weight_decay=0%.01$")
  -- an explicit list replaces the preset's
  local o2 = mo.optim.AdamW(named_model(), {flavor = "bert", exclude_from_weight_decay = {"head"}})
  lu.assertEquals(o2.param_groups[1].exclude_from_weight_decay, {"head"})
end

function TestOptimApiNames.test_describe_lists_every_param()
  local a, b = mo.tensor{1, 2, 3}, mo.zeros(4, 5)
  local opt = mo.optim.SGD({{params = {a}, lr = 0.5}, {params = {b}, weight_decay = 0.1}}, {lr = 0.01})
  local text = opt:describe()
  lu.assertStrContains(text, "SGD")
  lu.assertStrContains(text, "#1")
  lu.assertStrContains(text, "{3}")
  lu.assertStrContains(text, "lr=0.5")
  lu.assertStrContains(text, "{4, 5}")
  lu.assertStrContains(text, "weight_decay=0.1")
  local lines = 0
  for _ in text:gmatch("\n") do lines = lines + 1 end
  lu.assertEquals(lines, 3)
  -- written to a file when given one
  local path = os.tmpname()
  local f = io.open(path, "w")
  opt:describe(f)
  f:close()
  f = io.open(path)
  lu.assertEquals(f:read("a"), text)
  f:close()
  os.remove(path)
end

-- ======================================================================================

local TestOptimApiTorch7 = {}

-- f(x) = 0.5 * sum a_i (x_i - c_i)^2, minimum at c
local A = {1, 2, 3, 4}
local Cm = {1, -1, 2, 0.5}
local function quadratic()
  local a, c = mo.tensor(A), mo.tensor(Cm)
  return function(x)
    local d = x:sub(c)
    return 0.5 * d:mul(d):mul(a):sum():item(), d:mul(a)
  end
end

function TestOptimApiTorch7.test_every_method_minimizes_a_quadratic()
  local configs = {
    sgd = {learningRate = 0.1, momentum = 0.5}, adam = {learningRate = 0.05},
    adamax = {learningRate = 0.05}, adagrad = {learningRate = 0.5},
    adadelta = {}, rmsprop = {learningRate = 0.01}, nag = {learningRate = 0.05},
    lbfgs = {}, cg = {},
  }
  for name, config in pairs(configs) do
    local opfunc = quadratic()
    local x = mo.zeros(4)
    local f0 = opfunc(x)
    local iters = (name == "lbfgs" or name == "cg") and 3 or 400
    for _ = 1, iters do
      local x2, fs = mo.optim[name](opfunc, x, config)
      lu.assertIs(x2, x)
      lu.assertEquals(type(fs[1]), "number")
    end
    local f1 = opfunc(x)
    lu.assertTrue(f1 < 0.2 * f0, name .. ": f went from " .. f0 .. " to " .. f1)
    if name ~= "adadelta" then lu.assertTrue(f1 < 1e-3, name .. ": f = " .. f1) end
  end
end

function TestOptimApiTorch7.test_sgd_one_step_by_hand_and_state()
  local opfunc = quadratic()
  local x = mo.zeros(4)
  local config = {learningRate = 0.1, weightDecay = 0.5, momentum = 0.9}
  local _, fs = mo.optim.sgd(opfunc, x, config)
  lu.assertEquals(fs[1], 0.5 * (1 + 2 + 12 + 1))
  -- g = a*(0 - c) + wd*0 = -a*c; x = -lr*g; the buffer starts at g
  for i = 1, 4 do lu.assertAlmostEquals(x:get(i), 0.1 * A[i] * Cm[i], 1e-7) end
  lu.assertEquals(config.evalCounter, 1)      -- state defaults to config, as in torch7
  lu.assertNotNil(config.dfdx)
  -- dampening defaults to momentum: buf = 0.9*buf + (1-0.9)*g at the second step
  local state = {}
  local y = mo.zeros(4)
  mo.optim.sgd(opfunc, y, {learningRate = 0.1, momentum = 0.9}, state)
  local g1 = flat(state.dfdx)
  local _, g2 = opfunc(y)
  mo.optim.sgd(opfunc, y, {learningRate = 0.1, momentum = 0.9}, state)
  local b = flat(state.dfdx)
  for i = 1, 4 do lu.assertAlmostEquals(b[i], 0.9 * g1[i] + 0.1 * g2:get(i), 1e-6) end
end

function TestOptimApiTorch7.test_adam_matches_the_torch7_flavor()
  local opfunc = quadratic()
  local x = mo.zeros(4)
  local p = mo.zeros(4)
  local opt = mo.optim.Adam({p}, {flavor = "torch7", lr = 0.01, lr_decay = 0.1, weight_decay = 0.05})
  local state = {}
  for _ = 1, 5 do
    mo.optim.adam(opfunc, x, {learningRate = 0.01, learningRateDecay = 0.1, weightDecay = 0.05}, state)
    local _, g = opfunc(p)
    p.grad = g
    opt:step()
  end
  lu.assertEquals(flat(x), flat(p))
  lu.assertEquals(state.t, 5)
end

function TestOptimApiTorch7.test_errors()
  local opfunc = quadratic()
  assert_error_contains(function() mo.optim.sgd(opfunc, mo.zeros(4), {nesterov = true, momentum = 0.9}) end,
                        "Nesterov momentum requires")
  assert_error_contains(function() mo.optim.adam(function() return 0, mo.zeros(4) end, mo.zeros(3)) end,
                        "df/dx has shape {4}, x has shape {3}")
  assert_error_contains(function() mo.optim.nag(opfunc, mo.zeros(4), {momentum = 0}) end,
                        "Momentum must be positive")
  assert_error_contains(function() mo.optim.sgd(42, mo.zeros(4)) end, "opfunc must be a function")
  assert_error_contains(function() mo.optim.sgd(function() return "x", mo.zeros(4) end, mo.zeros(4)) end,
                        "opfunc must return f(x) as a number")
  assert_error_contains(function() mo.optim.adam(opfunc, mo.zeros(4), {learningRate = "big"}) end,
                        "config.learningRate must be a number")
  -- a bad opfunc result is reported at the caller's line, for every function (cg included)
  local bad = function() return "x", mo.zeros(4) end
  for _, name in ipairs{"sgd", "adam", "lbfgs", "cg"} do
    local ok, err = pcall(function() local r = mo.optim[name](bad, mo.zeros(4), {}) return r end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "test_optim_api.lua:")
    lu.assertStrContains(err, name .. ": opfunc must return f(x) as a number")
  end
end

return {
  TestOptimApiGroups = TestOptimApiGroups,
  TestOptimApiNonfinite = TestOptimApiNonfinite,
  TestOptimApiStateDict = TestOptimApiStateDict,
  TestOptimApiErrors = TestOptimApiErrors,
  TestOptimApiNames = TestOptimApiNames,
  TestOptimApiTorch7 = TestOptimApiTorch7,
}
