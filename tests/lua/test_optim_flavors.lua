-- tests/lua/test_optim_flavors.lua - each Adam/AdamW flavor against its framework's code.
--
-- tests/golden/flavor_golden.lua (made by tests/golden/make_flavor_golden.py) holds, for every
-- flavor, trajectories computed by a float32 NumPy mirror of the framework's own update (MXNet
-- 1.x and 2.x kernels, Keras 3, Google BERT, torch7) or by PyTorch 1.13 itself; each case names
-- the file and function it follows. Every case is replayed through the public API (p.grad =
-- ..., opt:step(), option changes written into param_groups before their step) and after EVERY
-- step every element must satisfy |got - want| <= rtol * max(|want|, floor), rtol 2e-6: the
-- remaining differences are rounding (docs/optimizers.md lists them per flavor). The MXNet and
-- Keras cases carry a wider rtol (2e-5) and its reason (`why`): those frameworks derive
-- 1 - beta or beta^t in float32 where moonopt uses double.
local lu = require "luaunit"
local mo = require "moonopt"

local golden = dofile("tests/golden/flavor_golden.lua")
local META = golden.meta

-- A 1-D tensor's elements as a Lua list (every tensor here is 1-D).
local function values(t)
  return t:totable()
end

local function build(case)
  local params, list = {}, {}
  for j, p in ipairs(case.params) do
    params[j] = mo.tensor(p)
    list[j] = case.names and {case.names[j], params[j]} or params[j]
  end
  local cls = mo.optim[case.class]
  return params, cls(list, case.opts)
end

local function run_case(case)
  local params, opt = build(case)
  local rtol, floor = case.rtol or META.rtol, META.floor
  for t, step in ipairs(case.steps) do
    for k, v in pairs(step.set or {}) do opt.param_groups[1][k] = v end
    for j, p in ipairs(params) do p.grad = mo.tensor(step.grads[j]) end
    opt:step()
    for j, p in ipairs(params) do
      local got, want = values(p), case.want[t][j]
      for i = 1, #want do
        local err = math.abs(got[i] - want[i]) / (rtol * math.max(math.abs(want[i]), floor))
        if err ~= err or err > 1 then  -- NaN fails too
          lu.fail(string.format("%s (%s): step %d, param %d, element %d: want %.9g, got %.9g "
                                .. "(%.3g x tolerance %g)", case.name, case.follows, t, j, i,
                                want[i], got[i], err, rtol))
        end
      end
    end
  end
end

local TestOptimFlavors = {}

for _, case in ipairs(golden.cases) do
  TestOptimFlavors["test_" .. case.name] = function() run_case(case) end
end

function TestOptimFlavors.test_tolerances_stay_tight()
  lu.assertEquals(META.rtol, 2e-6)
  for _, case in ipairs(golden.cases) do
    if case.rtol then
      lu.assertTrue(case.rtol <= 2e-5 and type(case.why) == "string", case.name)
    end
  end
end

function TestOptimFlavors.test_every_flavor_has_a_golden_case()
  local seen = {}
  for _, case in ipairs(golden.cases) do seen[case.class .. "/" .. (case.opts.flavor or "pytorch")] = true end
  for _, key in ipairs{"Adam/pytorch", "Adam/mxnet", "Adam/mxnet1", "Adam/keras", "Adam/torch7",
                       "AdamW/pytorch", "AdamW/mxnet", "AdamW/mxnet1", "AdamW/keras", "AdamW/bert"} do
    lu.assertTrue(seen[key], key .. " has no golden case")
  end
end

local TestOptimFlavorPresets = {}

function TestOptimFlavorPresets.test_mxnet_adamw_defaults()
  for _, flavor in ipairs{"mxnet", "mxnet1"} do
    local g = mo.optim.AdamW({mo.zeros({2})}, {flavor = flavor}).param_groups[1]
    lu.assertEquals(g.eps, 1e-6)
    lu.assertEquals(g.weight_decay, 0)
    lu.assertEquals(g.skip_nonfinite_rescale, true)
    lu.assertEquals(g.weight_decay_mode, "decoupled_bc")
    lu.assertEquals(g.eps_mode, "hat")
  end
end

function TestOptimFlavorPresets.test_adam_mxnet_versions_differ_only_in_the_clip()
  local g2 = mo.optim.Adam({mo.zeros({2})}, {flavor = "mxnet"}).param_groups[1]
  local g1 = mo.optim.Adam({mo.zeros({2})}, {flavor = "mxnet1"}).param_groups[1]
  lu.assertEquals(g2.clip_weight_decay, false)
  lu.assertEquals(g1.clip_weight_decay, true)
  for k, v in pairs(g2) do
    if k ~= "clip_weight_decay" and k ~= "flavor" and k ~= "params" then
      lu.assertEquals(g1[k], v, k)
    end
  end
end

function TestOptimFlavorPresets.test_keras_adam_decays_decoupled()
  local g = mo.optim.Adam({mo.zeros({2})}, {flavor = "keras"}).param_groups[1]
  lu.assertEquals(g.weight_decay_mode, "decoupled")
  lu.assertEquals(g.eps, 1e-7)
  -- zero gradients: only the decay moves w, by w*wd*lr (L2 would give an adaptive step of
  -- about lr instead)
  local p = mo.tensor({1, -2})
  p.grad = mo.zeros({2})
  local opt = mo.optim.Adam({p}, {flavor = "keras", lr = 0.1, weight_decay = 0.5})
  opt:step()
  local w = values(p)
  lu.assertAlmostEquals(w[1], 0.95, 1e-7)
  lu.assertAlmostEquals(w[2], -1.9, 1e-7)
end

function TestOptimFlavorPresets.test_bert_decays_on_the_step()
  local g = mo.optim.AdamW({mo.zeros({2})}, {flavor = "bert"}).param_groups[1]
  lu.assertEquals(g.weight_decay_mode, "decoupled_bc")
  lu.assertEquals(g.bias_correction, false)
  lu.assertEquals(g.weight_decay, 0.01)
  lu.assertEquals(g.eps, 1e-6)
end

local TestOptimFlavorSkip = {}

local function mx_adamw(rescale)
  local p = mo.tensor({0.5, -1.5, 2})
  local opt = mo.optim.AdamW({p}, {flavor = "mxnet", lr = 0.1, weight_decay = 0.5,
                                   rescale_grad = rescale})
  return p, opt
end

function TestOptimFlavorSkip.test_skip_changes_nothing_but_the_step_count()
  for _, r in ipairs{0, 1 / 0, -1 / 0, 0 / 0, 1e-50, 1e300} do
    local p, opt = mx_adamw(1)
    p.grad = mo.tensor({0.1, 0.2, -0.3})
    opt:step()
    local before = values(p)
    local st = opt.state[p]
    local m, v = values(st.exp_avg), values(st.exp_avg_sq)
    opt.param_groups[1].rescale_grad = r
    p.grad = mo.tensor({5, 5, 5})
    opt:step()
    lu.assertEquals(values(p), before, "rescale_grad " .. tostring(r))
    lu.assertEquals(values(st.exp_avg), m)
    lu.assertEquals(values(st.exp_avg_sq), v)
    -- MXNet counts the update before its kernel skips it
    lu.assertEquals(st.step, 2)
  end
end

function TestOptimFlavorSkip.test_without_the_switch_a_nonfinite_rescale_is_an_error()
  local p = mo.tensor({1, 2})
  p.grad = mo.tensor({1, 1})
  for _, r in ipairs{1 / 0, 0 / 0} do
    lu.assertErrorMsgContains("rescale_grad", function()
      mo.optim.Adam({p}, {flavor = "mxnet", rescale_grad = r})
    end)
  end
  -- rescale_grad 0 without the switch is a zero gradient: weight decay still applies
  local opt = mo.optim.AdamW({p}, {flavor = "mxnet", lr = 0.1, weight_decay = 0.5,
                                   rescale_grad = 0, skip_nonfinite_rescale = false})
  opt:step()
  lu.assertTrue(values(p)[1] < 1)
end

function TestOptimFlavorSkip.test_switches_must_be_booleans()
  for _, key in ipairs{"clip_weight_decay", "skip_nonfinite_rescale"} do
    lu.assertErrorMsgContains("option '" .. key .. "' must be a boolean", function()
      mo.optim.Adam({mo.zeros({2})}, {[key] = 1})
    end)
  end
end

return {TestOptimFlavors = TestOptimFlavors, TestOptimFlavorPresets = TestOptimFlavorPresets,
        TestOptimFlavorSkip = TestOptimFlavorSkip}
