-- tests/lua/test_optim_f64.lua - optimizers on float64 parameters (issue 11): every class
-- against the float64 golden trajectories of tests/golden/optim_golden_f64.lua (torch.optim in
-- float64 and the float64 NumPy formulas, made by tests/golden/make_optim_golden.py; the
-- tolerance, 1e-12 relative, is one a float32 path misses by 1e4-1e6 times), state made and
-- kept in float64, mixed dtypes refused before any write, state_dict / mo.save round trips
-- bit-exact, L-BFGS and the torch7 functional layer in float64, and Rosenbrock to 1e-10.
local lu = require "luaunit"
local helpers = require "helpers"
local nest = helpers.nest
local flatten = helpers.flatten
local deepcopy = helpers.deepcopy
local param_arg = helpers.param_arg
local mo = require "moonopt"
local core = require "moonopt.core"

-- The data is loaded when a test needs it and kept only weakly, so a few MB of tables do not
-- stay in the suite's heap for the whole run.
local GOLDEN = "tests/golden/optim_golden_f64.lua"
local cache = setmetatable({}, {__mode = "v"})
local function golden()
  local g = cache.g
  if g == nil then
    g = dofile(GOLDEN)
    cache.g = g
  end
  return g
end
local META = golden().meta
local F64 = {dtype = "float64"}

local function values(t) return flatten(t:totable()) end

-- ---- the golden trajectories ------------------------------------------------------------

local function check_step(case, step, params)
  local rtol = case.rtol or META.rtol
  for i, p in ipairs(params) do
    lu.assertEquals(p.dtype, "float64", case.name)
    local got, want = values(p), case.expected[step][i]
    lu.assertEquals(#got, #want, case.name)
    for k = 1, #want do
      local err = math.abs(got[k] - want[k]) / (rtol * math.max(math.abs(want[k]), META.floor))
      if err ~= err or err > 1 then   -- NaN is a mismatch too
        lu.fail(string.format("%s (%s %s): step %d, param %d, element %d: want %.17g, got %.17g "
                              .. "(%.3g x tolerance)", case.name, case.class, case.source, step, i,
                              k, want[k], got[k], err))
      end
    end
  end
end

-- LBFGS: f = sum 0.5*a*x^2 + b*x, everything in double (as the generator's float64 closure)
local function make_closure(case, params)
  local A, B = case.closure.a, case.closure.b
  return function()
    local loss = 0.0
    for i, p in ipairs(params) do
      local x, g = values(p), {}
      for k = 1, #x do
        g[k] = A[i][k] * x[k] + B[i][k]
        loss = loss + (0.5 * A[i][k] * x[k] * x[k] + B[i][k] * x[k])
      end
      p.grad = mo.tensor(nest(g, case.params[i].shape), F64)
    end
    return loss
  end
end

-- every tensor of every state is float64
local function check_state_dtypes(case, opt)
  for p, st in pairs(opt.state) do
    lu.assertEquals(p.dtype, "float64")
    for k, v in pairs(st) do
      if core.is_tensor(v) then lu.assertEquals(v.dtype, "float64", case.name .. ": state " .. k) end
    end
  end
end

local function run_case(case)
  local params = {}
  for i, p in ipairs(case.params) do params[i] = mo.tensor(nest(p.data, p.shape), F64) end
  local opt = mo.optim[case.class](param_arg(case, params), deepcopy(case.opts))
  if case.closure then
    local closure = make_closure(case, params)
    for step = 1, case.steps do
      opt:step(closure)
      check_step(case, step, params)
    end
  else
    for step, grads in ipairs(case.grads) do
      for i, p in ipairs(params) do p.grad = mo.tensor(nest(grads[i], case.params[i].shape), F64) end
      opt:step()
      check_step(case, step, params)
    end
  end
  check_state_dtypes(case, opt)
end

local TestOptimF64Golden = {}

function TestOptimF64Golden.test_data_file()
  lu.assertEquals(META.rtol, 1e-12)
  local classes, flavors = {}, {}
  for _, case in ipairs(golden().cases) do
    classes[case.class] = true
    if case.opts.flavor then flavors[case.class .. "/" .. case.opts.flavor] = true end
    lu.assertEquals(#case.expected, case.steps or #case.grads, case.name)
  end
  for _, c in ipairs{"SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad",
                     "Adadelta", "Lion", "LAMB", "ScheduleFreeAdamW", "LBFGS"} do
    lu.assertTrue(classes[c], "no float64 golden case for " .. c)
  end
  for _, f in ipairs{"Adam/mxnet", "AdamW/mxnet", "AdamW/bert", "Adam/keras", "AdamW/keras",
                     "Adam/torch7"} do
    lu.assertTrue(flavors[f], "no float64 golden case for " .. f)
  end
end

for i, case in ipairs(golden().cases) do
  TestOptimF64Golden["test_" .. case.name] = function() run_case(golden().cases[i]) end
end

-- ---- dtypes of state, refusals, round trips ---------------------------------------------

local TestOptimF64 = {}

local CLASSES = {"SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad",
                 "Adadelta", "Lion", "LAMB", "ScheduleFreeAdamW"}
local function opts_for(cls)
  if cls == "SGD" or cls == "RMSprop" then return {lr = 0.01, momentum = 0.9} end
  return {lr = 0.01}
end

-- a few steps of class `cls` on one param of dtype dt; returns the optimizer and param
local function stepped(cls, dt, steps)
  mo.manual_seed(11)
  local p = mo.randn(3, 4):to(dt)
  local opt = mo.optim[cls]({p}, opts_for(cls))
  for _ = 1, steps or 3 do
    p.grad = mo.randn(3, 4):to(dt)
    opt:step()
  end
  return opt, p
end

function TestOptimF64.test_state_has_the_param_dtype()
  for _, cls in ipairs(CLASSES) do
    for _, dt in ipairs{"float32", "float64"} do
      local opt, p = stepped(cls, dt)
      lu.assertEquals(p.dtype, dt)
      local n = 0
      for k, v in pairs(opt.state[p]) do
        if core.is_tensor(v) then
          n = n + 1
          lu.assertEquals(v.dtype, dt, cls .. " " .. k)
        end
      end
      lu.assertTrue(n >= 1, cls)
    end
  end
end

-- float64 keeps digits float32 cannot: a step of 1e-12 on 1 is seen
function TestOptimF64.test_steps_below_float32_resolution()
  local p = mo.tensor({1, 1}, F64)
  local opt = mo.optim.SGD({p}, {lr = 1e-12})
  p.grad = mo.tensor({1, -1}, F64)
  opt:step()
  lu.assertEquals(p:totable(), {1 - 1e-12, 1 + 1e-12})
end

-- a strided (transposed) float64 param steps exactly as a contiguous one
function TestOptimF64.test_strided_param()
  for _, cls in ipairs(CLASSES) do
    mo.manual_seed(5)
    local base = mo.randn({4, 3}, F64)
    local a, b = base:t(), base:t():contiguous()
    local oa, ob = mo.optim[cls]({a}, opts_for(cls)), mo.optim[cls]({b}, opts_for(cls))
    for _ = 1, 3 do
      local g = mo.randn({3, 4}, F64)
      a.grad, b.grad = g:clone(), g:clone()
      oa:step(); ob:step()
    end
    lu.assertEquals(values(a), values(b), cls)
  end
end

-- the state of param #1 is float32 (a hand-edited or foreign state): refused, nothing written
function TestOptimF64.test_mixed_state_refused_without_write()
  local p1 = mo.tensor({1, 2}, F64)
  local p2 = mo.tensor({3, 4}, F64)
  local opt = mo.optim.Adam({p1, p2}, {lr = 0.1})
  p1.grad, p2.grad = mo.tensor({1, 1}, F64), mo.tensor({1, 1}, F64)
  opt:step()
  local before1, before2 = values(p1), values(p2)
  local m2 = values(opt.state[p2].exp_avg)
  opt.state[p2].exp_avg_sq = opt.state[p2].exp_avg_sq:float()
  local ok, err = pcall(opt.step, opt)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "Adam: step: state of param #2: 'exp_avg_sq' is float32, the param is float64")
  lu.assertEquals(values(p1), before1)     -- param #1 comes first and was not stepped either
  lu.assertEquals(values(p2), before2)
  lu.assertEquals(values(opt.state[p2].exp_avg), m2)
  lu.assertEquals(opt.state[p1].step, 1)
end

-- a float32 gradient for a float64 param (possible through the grads argument the torch7
-- layer uses; .grad itself refuses it): refused, naming the param and both dtypes
function TestOptimF64.test_mixed_grad_refused()
  local p = mo.tensor({1, 2}, F64)
  local ok, err = pcall(core.optim_step, "sgd", "SGD", {{params = {p}, lr = 0.1}}, {}, false, nil,
                        {{mo.tensor({1, 1})}})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "SGD: grad of param #1 is float32, the param is float64")
  lu.assertEquals(p:totable(), {1, 2})
  lu.assertErrorMsgContains("adam: df/dx is float32, x is float64", mo.optim.adam,
                            function() return 0, mo.tensor({1, 1}) end, mo.tensor({1, 2}, F64))
  lu.assertErrorMsgContains("grad: dtype mismatch", function() p.grad = mo.tensor({1, 1}) end)
end

-- load_state_dict compares dtypes as well as shapes, before changing anything
function TestOptimF64.test_load_state_dict_refuses_other_dtype()
  local opt32 = stepped("Adam", "float32")
  local opt64, p = stepped("Adam", "float64")
  local before = values(opt64.state[p].exp_avg)
  local ok, err = pcall(opt64.load_state_dict, opt64, opt32:state_dict())
  lu.assertFalse(ok)
  -- exp_avg or exp_avg_sq, whichever the walk meets first
  lu.assertStrMatches(err, ".*Adam: load_state_dict: state of param #1: exp_avg[_sq]* is float32, "
                      .. "the param is float64")
  lu.assertEquals(values(opt64.state[p].exp_avg), before)
  lu.assertEquals(opt64.state[p].exp_avg.dtype, "float64")
end

-- state_dict -> load_state_dict keeps float64 and the run continues bit for bit
function TestOptimF64.test_state_dict_round_trip()
  for _, cls in ipairs(CLASSES) do
    local a, pa = stepped(cls, "float64", 3)
    local b, pb = stepped(cls, "float64", 3)
    local sd = a:state_dict()
    local fresh = mo.tensor(pa:totable(), F64)
    local c = mo.optim[cls]({fresh}, opts_for(cls))
    c:load_state_dict(sd)
    for k, v in pairs(c.state[fresh]) do
      if core.is_tensor(v) then lu.assertEquals(v.dtype, "float64", cls .. " " .. k) end
    end
    mo.manual_seed(99)
    local g = mo.randn({3, 4}, F64)
    pb.grad, fresh.grad = g:clone(), g:clone()
    b:step(); c:step()
    lu.assertEquals(values(fresh), values(pb), cls)
  end
end

-- mo.save / mo.load: the state is stored as F64 and comes back bit-exact
function TestOptimF64.test_checkpoint_round_trip_bit_exact()
  for _, cls in ipairs{"Adam", "NAdam", "ScheduleFreeAdamW", "SGD", "Adagrad"} do
    local opt, p = stepped(cls, "float64", 4)
    local path = os.tmpname()
    mo.save(path, {optimizer = opt})
    local _, _, _, dtypes = core.ckpt_read(path)
    local n = 0
    for name, dt in pairs(dtypes) do
      if name:find("^optimizer%.state") then
        n = n + 1
        lu.assertEquals(dt, "F64", cls .. " " .. name)
      end
    end
    lu.assertTrue(n >= 1, cls)
    local q = mo.tensor(p:totable(), F64)
    local opt2 = mo.optim[cls]({q}, opts_for(cls))
    mo.load(path, {optimizer = opt2})
    os.remove(path)
    for k, v in pairs(opt.state[p]) do
      local w = opt2.state[q][k]
      if core.is_tensor(v) then
        lu.assertEquals(w.dtype, "float64", cls .. " " .. k)
        lu.assertEquals(values(w), values(v), cls .. " " .. k)   -- exact equality
      else
        lu.assertEquals(w, v, cls .. " " .. k)
      end
    end
    -- a float32 optimizer cannot take the float64 file's state
    local r = mo.tensor(p:totable())
    local opt3 = mo.optim[cls]({r}, opts_for(cls))
    local path2 = os.tmpname()
    mo.save(path2, {optimizer = opt})
    lu.assertErrorMsgContains("is float64, the param is float32", mo.load, path2, {optimizer = opt3})
    if cls == "AdamW" then -- the state's keys are checked in order: the same message every run
      lu.assertErrorMsgContains("state of param #1: exp_avg is float64", mo.load, path2,
                                {optimizer = opt3})
    end
    os.remove(path2)
  end
end

-- the gradient utilities on float64 gradients
function TestOptimF64.test_clip_and_finite()
  local p = mo.tensor({0, 0}, F64)
  p.grad = mo.tensor({3e-9, 4e-9}, F64)
  local norm = mo.optim.clip_grad_norm({p}, 1e-9, {formula = "global"})
  lu.assertAlmostEquals(norm, 5e-9, 1e-23)
  lu.assertAlmostEquals(p.grad:get(1), 0.6e-9, 1e-23)
  p.grad = mo.tensor({0.5 + 1e-12, -3}, F64)
  mo.optim.clip_grad_value({p}, 0.5)
  lu.assertEquals(p.grad:totable(), {0.5, -0.5})
  lu.assertTrue(core.all_finite(p.grad))
  lu.assertFalse(core.all_finite(mo.tensor({1, 0 / 0}, F64)))
end

-- ---- L-BFGS, the torch7 layer, and why float64 matters -----------------------------------

-- Rosenbrock with its minimum at (1/3, 1/9): not representable in float32 to 1e-10
local A = 1 / 3
local function rosenbrock(x)
  local a, b = x:get(1), x:get(2)
  local f = (A - a) ^ 2 + 100 * (b - a * a) ^ 2
  return f, mo.tensor({-2 * (A - a) - 400 * a * (b - a * a), 200 * (b - a * a)}, {dtype = x.dtype})
end

local function lbfgs_rosenbrock(dt)
  local x = mo.tensor({-1.5, 2}, {dtype = dt})
  local opt = mo.optim.LBFGS({x}, {max_iter = 100, tolerance_grad = 1e-14, tolerance_change = 0,
                                   line_search_fn = "strong_wolfe"})
  for _ = 1, 3 do
    opt:step(function()
      local f, g = rosenbrock(x)
      x.grad = g
      return f
    end)
  end
  for _, v in pairs(opt.state[x]) do
    if core.is_tensor(v) then lu.assertEquals(v.dtype, dt) end
  end
  return math.max(math.abs(x:get(1) - A), math.abs(x:get(2) - A * A))
end

local function adam_rosenbrock(dt)
  local x = mo.tensor({-1.5, 2}, {dtype = dt})
  local opt = mo.optim.Adam({x}, {lr = 1e-2})
  for i = 1, 20000 do
    if i > 4000 then opt.param_groups[1].lr = opt.param_groups[1].lr * 0.999 end
    local _, g = rosenbrock(x)
    x.grad = g
    opt:step()
  end
  return math.max(math.abs(x:get(1) - A), math.abs(x:get(2) - A * A))
end

function TestOptimF64.test_rosenbrock_to_1e10()
  lu.assertTrue(lbfgs_rosenbrock("float64") < 1e-10)
  lu.assertTrue(adam_rosenbrock("float64") < 1e-10)
  -- float32 stops where its resolution does (1/3 is 1e-8 from the nearest float)
  lu.assertTrue(lbfgs_rosenbrock("float32") > 1e-10)
  lu.assertTrue(adam_rosenbrock("float32") > 1e-10)
end

function TestOptimF64.test_lbfgs_refuses_mixed_dtypes()
  lu.assertErrorMsgContains("LBFGS: params must share one dtype: param #1 is float64, param #2 is float32",
                            mo.optim.LBFGS, {mo.zeros({2}, F64), mo.zeros(2)})
end

-- the torch7 functions on a float64 x: the state follows x's dtype, and x converges past
-- float32's resolution on a quadratic with its minimum at 1/3
function TestOptimF64.test_functional_layer()
  local function opfunc(x)
    local d = x - A
    return d:dot(d):item(), d * 2
  end
  local runs = {
    {"sgd", {learningRate = 0.1, momentum = 0.5}, 200},
    {"adam", {learningRate = 0.05}, 3000},
    {"adagrad", {learningRate = 0.5}, 3000},
    {"rmsprop", {learningRate = 0.01}, 200},
    {"nag", {learningRate = 0.1}, 200},
    {"lbfgs", {maxIter = 50, tolFun = 0, tolX = 0}, 1},
    {"cg", {maxIter = 50}, 1},
  }
  for _, r in ipairs(runs) do
    local x = mo.tensor({1, -1, 2}, F64)
    local state = {}
    for _ = 1, r[3] do mo.optim[r[1]](opfunc, x, r[2], state) end
    lu.assertEquals(x.dtype, "float64")
    for k, v in pairs(state) do
      if core.is_tensor(v) then lu.assertEquals(v.dtype, "float64", r[1] .. " " .. k) end
    end
    if r[1] ~= "rmsprop" then   -- rmsprop hovers at lr scale: dtype only
      for _, v in ipairs(values(x)) do
        lu.assertTrue(math.abs(v - A) < 1e-10, r[1] .. ": " .. string.format("%.17g", v))
      end
    end
  end
end

return {TestOptimF64Golden = TestOptimF64Golden, TestOptimF64 = TestOptimF64}
