-- tests/lua/test_optim_golden.lua - every optimizer against the golden trajectories in
-- tests/golden/optim_golden.lua (made by tests/golden/make_optim_golden.py from PyTorch 1.13
-- and from float64 NumPy transcriptions of the published formulas; see tests/golden/README.md).
--
-- One LuaUnit test per case (TestOptimGolden.test_<case name>): the case's params are built,
-- its gradient sequence is fed through the public API (p.grad = ..., opt:step()), optional
-- hyperparameter changes are written into opt.param_groups before their step, and after EVERY
-- step every element of every parameter must satisfy
--     |got - want| <= rtol * max(|want|, floor)
-- with rtol = 2e-5 (5e-4 for LBFGS) and floor = 0.1 from the data file's meta table.
local lu = require "luaunit"
local helpers = require "helpers"
local nest = helpers.nest
local flatten = helpers.flatten
local deepcopy = helpers.deepcopy
local param_arg = helpers.param_arg
local mo = require "moonopt"

local golden = dofile("tests/golden/optim_golden.lua")
local META = golden.meta

-- Round a double to the nearest float32 (what a float32 tensor stores).
local function f32(x)
  return (string.unpack("f", string.pack("f", x)))
end

local function make_params(case)
  local params = {}
  for i, p in ipairs(case.params) do
    params[i] = mo.tensor(nest(p.data, p.shape))
  end
  return params
end

-- LBFGS: f(x) = sum 0.5*a*x^2 + b*x, computed exactly as the generator's closure did:
-- grad = float32(float32(a*x) + b), loss in double, element by element in row-major order.
local function make_closure(case, params)
  local A, B = case.closure.a, case.closure.b
  return function()
    local loss = 0.0
    for i, p in ipairs(params) do
      local x = flatten(p:totable())
      local g = {}
      for k = 1, #x do
        local a, b = f32(A[i][k]), f32(B[i][k])
        g[k] = f32(f32(a * x[k]) + b)
        loss = loss + (0.5 * a * x[k] * x[k] + b * x[k])
      end
      p.grad = mo.tensor(nest(g, case.params[i].shape))
    end
    return loss
  end
end

-- Fail with the case, step, param and element of the worst mismatch of this step.
local function check_step(case, step, params)
  local rtol = case.rtol or META.rtol
  for i, p in ipairs(params) do
    local got = flatten(p:totable())
    local want = case.expected[step][i]
    if #got ~= #want then
      lu.fail(string.format("%s: step %d, param %d has %d elements, want %d",
                            case.name, step, i, #got, #want))
    end
    local bad, worst, worst_k = 0, -1, nil
    for k = 1, #want do
      local err = math.abs(got[k] - want[k]) / (rtol * math.max(math.abs(want[k]), META.floor))
      if err ~= err then err = math.huge end     -- NaN: the worst possible mismatch
      if err > 1 then
        bad = bad + 1
        if err > worst then worst, worst_k = err, k end
      end
    end
    if bad > 0 then
      local k = worst_k
      lu.fail(string.format(
        "%s (%s %s): step %d, param %d {%s}, element %d: want %.9g, got %.9g "
          .. "(|diff| = %.3g x tolerance; %d of %d elements out)",
        case.name, case.class, case.source, step, i, table.concat(case.params[i].shape, ","),
        k, want[k], got[k], worst, bad, #want))
    end
  end
end

local function run_case(case)
  local class = mo.optim[case.class]
  if class == nil then lu.fail("mo.optim." .. case.class .. " does not exist") end
  local params = make_params(case)
  local opt = class(param_arg(case, params), deepcopy(case.opts))
  if case.closure then
    local closure = make_closure(case, params)
    for step = 1, case.steps do
      opt:step(closure)
      check_step(case, step, params)
    end
    return
  end
  for step, grads in ipairs(case.grads) do
    for _, change in ipairs(case.set and case.set[step] or {}) do
      opt.param_groups[change.group][change.key] = change.value
    end
    for i, p in ipairs(params) do
      if grads[i] then
        p.grad = mo.tensor(nest(grads[i], case.params[i].shape))
      else
        p.grad = nil                -- no gradient this step: skipped, state untouched
      end
    end
    opt:step()
    check_step(case, step, params)
  end
end

local TestOptimGolden = {}

-- The data file itself: well-formed and complete, so a truncated regeneration is caught.
function TestOptimGolden.test_data_file()
  lu.assertEquals(META.rtol, 2e-5)
  lu.assertTrue(#golden.cases >= 90)
  local seen, classes = {}, {}
  for _, case in ipairs(golden.cases) do
    lu.assertNil(seen[case.name], "duplicate case " .. case.name)
    seen[case.name] = true
    classes[case.class] = true
    local steps = case.steps or #case.grads
    lu.assertTrue(steps >= 4, case.name)
    lu.assertEquals(#case.expected, steps, case.name)
    for _, exp in ipairs(case.expected) do lu.assertEquals(#exp, #case.params, case.name) end
  end
  for _, c in ipairs{"SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad",
                     "Adadelta", "Lion", "LAMB", "LBFGS"} do
    lu.assertTrue(classes[c], "no golden case for " .. c)
  end
end

for _, case in ipairs(golden.cases) do
  TestOptimGolden["test_" .. case.name] = function() run_case(case) end
end

return {TestOptimGolden = TestOptimGolden}
