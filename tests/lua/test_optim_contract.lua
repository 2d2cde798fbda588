-- tests/lua/test_optim_contract.lua - the optimizer contract (docs/design.md "Adding an
-- optimizer"): nothing half-changed when a step fails, tampered state refused with the key,
-- class and value, the one clip_grad_norm, the messages of issue 9, and ScheduleFreeAdamW's
-- train/eval swap and exact resume.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local nn = mo.nn

-- Every class stepped by a C kernel, with options that turn every state buffer on.
local CLASSES = {
  {"SGD", {lr = 0.1, momentum = 0.9}},
  {"Adam", {lr = 0.01, amsgrad = true}},
  {"AdamW", {lr = 0.01}},
  {"Adamax", {lr = 0.01}},
  {"NAdam", {lr = 0.01}},
  {"RAdam", {lr = 0.01}},
  {"RMSprop", {lr = 0.01, centered = true, momentum = 0.5}},
  {"Adagrad", {lr = 0.1}},
  {"Adadelta", {}},
  {"Lion", {lr = 1e-3}},
  {"LAMB", {lr = 0.01}},
  {"ScheduleFreeAdamW", {lr = 0.01}},
}

local function bits(t)
  local out = {}
  for i, v in ipairs(t:reshape(t:numel()):totable()) do out[i] = string.pack("f", v) end
  return table.concat(out)
end

-- Every param and every state entry (tensors as bits, numbers as %a) as one string.
local function snapshot(opt)
  local parts = {}
  for gi, g in ipairs(opt.param_groups) do
    for j, p in ipairs(g.params) do
      parts[#parts + 1] = gi .. "." .. j .. "=" .. bits(p)
      local st = opt.state[p]
      if st then
        local keys = {}
        for k in pairs(st) do keys[#keys + 1] = k end
        table.sort(keys)
        for _, k in ipairs(keys) do
          local v = st[k]
          parts[#parts + 1] = k .. ":" .. (core.is_tensor(v) and bits(v) or string.format("%s", v))
        end
      end
    end
  end
  return table.concat(parts, "|")
end

local function make(name, opts, groups)
  mo.manual_seed(3)
  local ps = {mo.randn(2, 3), mo.randn(4), mo.randn(3)}
  for _, p in ipairs(ps) do p.grad = mo.randn(p:shape()) end
  local arg = ps
  if groups then arg = {{params = {ps[1], ps[2]}}, {params = {ps[3]}, lr = 0.5 * (opts.lr or 1)}} end
  return mo.optim[name](arg, opts), ps
end

-- The error of f(...), raised from a line of this file (no tail call, so an error at the
-- caller's level names this file).
local function err_of(f, ...)
  local args = table.pack(...)
  local ok, e = pcall(function()
    local r = f(table.unpack(args, 1, args.n))
    return r
  end)
  lu.assertFalse(ok, "expected an error")
  return tostring(e)
end

-- ======================================================================================

local TestOptimHalfChanged = {}

-- A state tensor replaced with a wrong shape (in the LAST param of the LAST group) makes
-- step raise before param #1 of group 1 changes: every param and every state as it was.
function TestOptimHalfChanged.test_wrong_state_shape_changes_nothing()
  for _, case in ipairs(CLASSES) do
    local opt, ps = make(case[1], case[2], true)
    opt:step()
    local info = core.optim_info(opt.spec.kernel)
    for _, b in ipairs(info.buffers) do
      local st = opt.state[ps[3]]
      if st[b.name] ~= nil then
        local good = st[b.name]
        st[b.name] = mo.zeros(5)
        local before = snapshot(opt)
        local e = err_of(opt.step, opt)
        lu.assertStrContains(e, case[1] .. ": step: state of param #3: '" .. b.name .. "' has shape {5}")
        lu.assertStrContains(e, "test_optim_contract.lua:")
        lu.assertEquals(snapshot(opt), before, case[1] .. " " .. b.name)
        st[b.name] = good
      end
    end
    opt:step()  -- whole again
  end
end

function TestOptimHalfChanged.test_freed_or_foreign_state_changes_nothing()
  for _, case in ipairs(CLASSES) do
    local opt, ps = make(case[1], case[2])
    opt:step()
    local key = core.optim_info(opt.spec.kernel).buffers[1].name
    local st = opt.state[ps[3]]
    local good = st[key]
    for _, bad in ipairs{"x", 1, {}} do
      st[key] = bad
      local before = snapshot(opt)
      lu.assertStrContains(err_of(opt.step, opt), "'" .. key .. "' is not a tensor")
      lu.assertEquals(snapshot(opt), before, case[1])
    end
    local t = mo.zeros(3)
    t:__gc()
    st[key] = t
    lu.assertStrContains(err_of(opt.step, opt), "'" .. key .. "' is a freed tensor")
    st[key] = good
  end
end

-- A bad grad in the last param: nothing changes and no state is created for the others.
function TestOptimHalfChanged.test_bad_grad_creates_no_state()
  for _, case in ipairs(CLASSES) do
    local opt, ps = make(case[1], case[2], true)
    local g = mo.zeros(3)
    ps[3].grad = g
    g:__gc()
    local before = snapshot(opt)
    lu.assertStrContains(err_of(opt.step, opt), "grad of param #3: tensor has been freed")
    lu.assertEquals(snapshot(opt), before)
    lu.assertNil(next(opt.state), case[1])
  end
end

-- ======================================================================================

local TestOptimTampered = {}

local HOSTILE_STEPS = {
  {math.maxinteger, "9223372036854775807"}, {math.mininteger, "-9223372036854775808"},
  {-1, "-1"}, {0 / 0, "nan"}, {math.huge, "inf"}, {-math.huge, "-inf"}, {1e300, "1e+300"},
  {2 ^ 63, "9.2233720368548e+18"}, {1.5, "1.5"}, {"3", "string"}, {2 ^ 53 + 2, "9.007199254741e+15"},
}

function TestOptimTampered.test_load_state_dict_refuses_bad_steps()
  for _, case in ipairs(CLASSES) do
    local opt = make(case[1], case[2])
    if case[1] ~= "SGD" then  -- SGD keeps no step count
      opt:step()
      for _, h in ipairs(HOSTILE_STEPS) do
        local sd = opt:state_dict()
        sd.state[2].step = h[1]
        local before = snapshot(opt)
        local e = err_of(opt.load_state_dict, opt, sd)
        lu.assertStrContains(e, case[1] .. ": load_state_dict: state of param #2: 'step' must be "
                             .. "an integer in [0, 2^53], got")
        lu.assertStrContains(e, "test_optim_contract.lua:")
        lu.assertEquals(snapshot(opt), before)
      end
      -- an integral float is taken, as an integer
      local sd = opt:state_dict()
      sd.state[2].step = 7.0
      opt:load_state_dict(sd)
      lu.assertEquals(math.type(opt.state[opt.param_groups[1].params[2]].step), "integer")
      opt:step()
    end
  end
end

function TestOptimTampered.test_load_state_dict_refuses_bad_numbers()
  local cases = {{"NAdam", "mu_product"}, {"ScheduleFreeAdamW", "weight_sum"},
                 {"ScheduleFreeAdamW", "lr_max"}, {"LAMB", "trust_ratio"}}
  for _, c in ipairs(cases) do
    local opt = make(c[1], {lr = 0.01})
    opt:step()
    for _, bad in ipairs{0 / 0, math.huge, -math.huge, "1", true} do
      local sd = opt:state_dict()
      sd.state[1][c[2]] = bad
      local e = err_of(opt.load_state_dict, opt, sd)
      lu.assertStrContains(e, c[1] .. ": load_state_dict: state of param #1: '" .. c[2]
                           .. "' must be a finite number, got")
    end
  end
  local opt = make("Adam", {lr = 0.01})
  opt:step()
  local sd = opt:state_dict()
  sd.skipped_steps = 0.5
  lu.assertStrContains(err_of(opt.load_state_dict, opt, sd), "skipped_steps must be an integer")
  local lb = mo.optim.LBFGS({mo.zeros(2)})
  local lsd = {state = {[1] = {func_evals = 1.5, n_iter = 0}}, param_groups = lb:state_dict().param_groups}
  lu.assertStrContains(err_of(lb.load_state_dict, lb, lsd), "'func_evals' must be an integer in [0, 2^53], got 1.5")
  lsd.state[1] = {func_evals = 1, n_iter = 0 / 0}
  lu.assertStrContains(err_of(lb.load_state_dict, lb, lsd), "'n_iter' must be an integer in [0, 2^53], got nan")
end

-- State set directly (not through load_state_dict) is checked at the step, nothing changes.
function TestOptimTampered.test_step_refuses_bad_state_numbers()
  for _, case in ipairs(CLASSES) do
    local opt, ps = make(case[1], case[2])
    opt:step()
    if case[1] ~= "SGD" then
      for _, h in ipairs(HOSTILE_STEPS) do
        opt.state[ps[2]].step = h[1]
        local before = snapshot(opt)
        local e = err_of(opt.step, opt)
        lu.assertStrContains(e, case[1] .. ": step: state of param #2: 'step' must be an integer "
                             .. "in [0, 2^53], got " .. h[2])
        lu.assertEquals(snapshot(opt), before)
      end
      opt.state[ps[2]].step = 2 ^ 53   -- the largest count still steps
      opt:step()
      lu.assertEquals(opt.state[ps[2]].step, (1 << 53) + 1)
    end
  end
  local opt, ps = make("NAdam", {})
  opt:step()
  opt.state[ps[1]].mu_product = 0 / 0
  lu.assertStrContains(err_of(opt.step, opt), "'mu_product' must be a finite number")
end

-- ======================================================================================

local TestOptimMessages = {}

function TestOptimMessages.test_option_errors_point_at_the_caller()
  local e = err_of(mo.optim.AdamW, {mo.zeros(2)}, {lr = -1})
  lu.assertStrContains(e, "test_optim_contract.lua:")
  lu.assertStrContains(e, "AdamW: Invalid learning rate: -1")
end

function TestOptimMessages.test_model_instead_of_parameters()
  local model = nn.Sequential(nn.Linear(2, 2))
  local e = err_of(mo.optim.SGD, model, {lr = 0.1})
  lu.assertStrContains(e, "model:parameters()")
  lu.assertStrContains(e, "test_optim_contract.lua:")
end

function TestOptimMessages.test_unknown_group_key_raises_at_step()
  local opt, ps = make("AdamW", {lr = 0.01})
  opt.param_groups[1].lrr = 0.1
  local before = snapshot(opt)
  local e = err_of(opt.step, opt)
  lu.assertStrContains(e, "AdamW: unknown option 'lrr' in param group 1")
  lu.assertEquals(snapshot(opt), before)
  opt.param_groups[1].lrr = nil
  opt.param_groups[1].initial_lr = 0.01  -- what a schedule records is allowed
  opt:step()
  lu.assertNotNil(opt.state[ps[1]])
end

function TestOptimMessages.test_tensor_lr_suggests_item()
  local e = err_of(function() return mo.optim.Adam({mo.zeros(2)}, {lr = mo.tensor(0.1)}) end)
  lu.assertStrContains(e, "option 'lr' must be a number, got a moonopt.Tensor (use t:item()")
  local opt = make("SGD", {lr = 0.1})
  opt.param_groups[1].lr = mo.tensor{0.1}
  lu.assertStrContains(err_of(opt.step, opt), "moonopt.Tensor")
end

-- Both L-BFGS implementations name their history alike: old_dirs the gradient changes y,
-- old_stps the steps s. On f = sum 0.5*a*x^2, y = a*s elementwise.
function TestOptimMessages.test_lbfgs_history_names_agree()
  local a = mo.tensor{1, 2, 3, 4}
  local function check(dirs, stps, label)
    lu.assertTrue(#dirs >= 1, label)
    for i = 1, #dirs do
      local want = stps[i]:mul(a)
      lu.assertTrue((dirs[i]:sub(want)):abs():max():item() <= 1e-5 * (want:abs():max():item() + 1e-12), label)
    end
  end
  local x = mo.tensor{1, -1, 2, 0.5}
  local st = {}
  local function opfunc(v) return 0.5 * v:mul(v):mul(a):sum():item(), v:mul(a) end
  mo.optim.lbfgs(opfunc, x, {maxIter = 3}, st)
  check(st.old_dirs, st.old_stps, "functional lbfgs")
  local p = mo.tensor{1, -1, 2, 0.5}
  local opt = mo.optim.LBFGS({p}, {max_iter = 3})
  opt:step(function()
    p.grad = p:mul(a)
    return 0.5 * p:mul(p):mul(a):sum():item()
  end)
  local s = opt.state[p]
  check(s.old_dirs, s.old_stps, "LBFGS")
end

-- ======================================================================================

local TestOptimClip = {}

local function grads_of(...)
  local ps = {}
  for i, v in ipairs{...} do
    ps[i] = mo.zeros(#v)
    ps[i].grad = mo.tensor(v)
  end
  return ps
end

function TestOptimClip.test_pytorch_formula_and_threshold()
  local ps = grads_of({3, 0}, {0, 4})
  lu.assertEquals(mo.optim.clip_grad_norm(ps, 1), 5)
  local coef = string.unpack("f", string.pack("f", 1 / (5 + 1e-6)))
  lu.assertEquals(ps[1].grad:totable()[1], string.unpack("f", string.pack("f", 3 * coef)))
  -- PyTorch scales whenever max/(norm + 1e-6) < 1, also for a norm a hair under max_norm
  ps = grads_of({3, 0}, {0, 4})
  mo.optim.clip_grad_norm(ps, 5 + 5e-7)
  lu.assertTrue(ps[2].grad:totable()[2] < 4)
  ps = grads_of({3, 0}, {0, 4})
  mo.optim.clip_grad_norm(ps, 5 + 2e-6)
  lu.assertEquals(ps[2].grad:totable()[2], 4)
  -- NaN norm: every grad NaN; infinite norm: finite grads 0 (as PyTorch)
  ps = grads_of({0 / 0, 1}, {2})
  local n = mo.optim.clip_grad_norm(ps, 1)
  lu.assertTrue(n ~= n)
  lu.assertTrue(ps[2].grad:totable()[1] ~= ps[2].grad:totable()[1])
  ps = grads_of({math.huge, 1}, {2})
  lu.assertEquals(mo.optim.clip_grad_norm(ps, 1), math.huge)
  lu.assertEquals(ps[2].grad:totable()[1], 0)
end

function TestOptimClip.test_global_formula()
  local ps = grads_of({3, 0}, {0, 4})
  lu.assertEquals(mo.optim.clip_grad_norm(ps, 1, {formula = "global"}), 5)
  local coef = string.unpack("f", string.pack("f", 1 / 5))
  lu.assertEquals(ps[2].grad:totable()[2], string.unpack("f", string.pack("f", 4 * coef)))
  ps = grads_of({3, 0}, {0, 4})
  mo.optim.clip_grad_norm(ps, 5, {formula = "global"})   -- norm == clip: unchanged
  lu.assertEquals(ps[2].grad:totable()[2], 4)
  ps = grads_of({math.huge, 1}, {2})
  mo.optim.clip_grad_norm(ps, 1, {formula = "global"})   -- TF: all NaN
  lu.assertTrue(ps[2].grad:totable()[1] ~= ps[2].grad:totable()[1])
end

function TestOptimClip.test_error_if_nonfinite_changes_nothing()
  local ps = grads_of({0 / 0, 1}, {2})
  local e = err_of(mo.optim.clip_grad_norm, ps, 1, {error_if_nonfinite = true})
  lu.assertStrContains(e, "the total norm of the gradients is nan")
  lu.assertStrContains(e, "test_optim_contract.lua:")
  lu.assertEquals(ps[2].grad:totable()[1], 2)
  lu.assertStrContains(err_of(function() return mo.optim.clip_grad_norm(ps, 1, {formula = "tf"}) end),
                       "opts.formula must be")
  lu.assertStrContains(err_of(function() return mo.optim.clip_grad_norm(ps, -1) end), "max_norm")
end

-- ======================================================================================

local TestOptimScheduleFree = {}

function TestOptimScheduleFree.test_eval_puts_x_and_train_puts_y_back()
  local opt, ps = make("ScheduleFreeAdamW", {lr = 0.05, betas = {0.8, 0.999}})
  for _ = 1, 3 do opt:step() end
  local y = ps[1]:clone()
  local z = opt.state[ps[1]].z
  opt:eval()
  lu.assertFalse(opt.param_groups[1].train_mode)
  -- x = (y - (1 - b1) z) / b1
  local want = y:sub(z:mul(0.2)):div(0.8)
  lu.assertTrue(ps[1]:sub(want):abs():max():item() < 1e-5)
  lu.assertStrContains(err_of(opt.step, opt), "ScheduleFreeAdamW: step: param group 1 is in eval mode")
  opt:eval()   -- a second eval changes nothing
  lu.assertTrue(ps[1]:sub(want):abs():max():item() < 1e-5)
  opt:train()
  lu.assertTrue(opt.param_groups[1].train_mode)
  lu.assertTrue(ps[1]:sub(y):abs():max():item() < 1e-5)
  lu.assertEquals(opt:state_dict().param_groups[1].train_mode, true)
  lu.assertStrContains(err_of(function() return mo.optim.ScheduleFreeAdamW(ps, {betas = {0, 0.9}}) end),
                       "betas[1] must be in (0, 1)")
  lu.assertStrContains(err_of(function() return mo.optim.ScheduleFreeAdamW(ps, {warmup_steps = 1.5}) end),
                       "Invalid warmup_steps value: 1.5")
end

local function sf_setup(seed)
  mo.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
  return model, mo.optim.ScheduleFreeAdamW(model:parameters(), {lr = 0.02, warmup_steps = 2})
end

local function params_bits(model)
  local out = {}
  for _, np in ipairs(model:named_parameters()) do out[#out + 1] = np[1] .. "=" .. bits(np[2]) end
  return table.concat(out, "|")
end

local function sf_steps(model, opt, n)
  local loss_fn = nn.MSELoss()
  for _ = 1, n do
    local x, y = mo.randn(4, 3), mo.randn(4, 2)
    opt:zero_grad()
    local out = model:forward(x)
    loss_fn:forward(out, y)
    model:backward(x, loss_fn:backward(out, y))
    opt:step()
  end
end

-- Saved in eval mode (params at x), resumed in fresh objects: bit-identical to the run
-- that went on without stopping.
function TestOptimScheduleFree.test_checkpoint_in_eval_mode_resumes_exactly()
  local path = os.tmpname()
  local m1, o1 = sf_setup(4)
  sf_steps(m1, o1, 3)
  o1:eval()
  mo.save(path, {model = m1, optimizer = o1})
  o1:train()
  sf_steps(m1, o1, 3)
  local m2, o2 = sf_setup(99)
  mo.load(path, {model = m2, optimizer = o2})
  os.remove(path)
  lu.assertFalse(o2.param_groups[1].train_mode)
  -- the checkpoint restored the generator too: run 2 draws the batches run 1 drew
  o2:train()
  sf_steps(m2, o2, 3)
  lu.assertTrue(params_bits(m2) == params_bits(m1), "resumed run differs")
  o1:eval()
  o2:eval()
  lu.assertTrue(params_bits(m2) == params_bits(m1), "the averages differ")
end

-- mo.train.fit, stopped mid-run with a checkpoint and resumed in fresh objects.
function TestOptimScheduleFree.test_fit_resumes_exactly()
  local data, train = mo.data, mo.train
  mo.manual_seed(5)
  local ds = data.spirals{n = 60, classes = 3}
  local function setup(seed)
    mo.manual_seed(seed)
    local model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    return model, mo.optim.ScheduleFreeAdamW(model:parameters(), {lr = 0.02, warmup_steps = 3})
  end
  local function args(model, opt, state, on_step)
    return {model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, data = ds, epochs = 2,
            batch_size = 16, progress = false, state = state, on_step = on_step}
  end
  local m1, o1 = setup(21)
  train.fit(args(m1, o1, {}))
  local path = os.tmpname()
  local m2, o2 = setup(21)
  local st2 = {}
  train.fit(args(m2, o2, st2, function(info)
    if info.epoch == 2 and info.batch == 2 then
      mo.save(path, {model = m2, optimizer = o2, fit = info.state})
      return false
    end
  end))
  local m3, o3 = setup(77)
  local st3 = {}
  mo.load(path, {model = m3, optimizer = o3, fit = st3})
  os.remove(path)
  train.fit(args(m3, o3, st3))
  lu.assertTrue(params_bits(m3) == params_bits(m1), "fit resumed run differs")
  if o1.eval then o1:eval(); o3:eval() end
  lu.assertTrue(params_bits(m3) == params_bits(m1), "the averages differ")
end

-- ======================================================================================

local TestOptimFinalizers = {}

-- Finalizers that run inside opt:step() (the collector runs at every allocation the step
-- makes: new state tensors and tables) and free or replace grads and state. The step must
-- either raise a message or finish; never crash, never read a freed tensor (ASan in make
-- check).
function TestOptimFinalizers.test_hostile_finalizers_during_step()
  -- pause 1% and an unbounded step (2^63): a whole cycle at every allocation, whatever the
  -- heap's size (see tests/lua/test_gc_hostile.lua)
  collectgarbage("incremental", 1, 1000, 63)
  collectgarbage()  -- a fresh cycle, whatever the tests before left the collector doing
  local ok_runs, errors = 0, 0
  for round = 1, 40 do
    for _, case in ipairs(CLASSES) do
      local opt, ps = make(case[1], case[2], round % 2 == 0)
      local k = round % 4
      -- garbage whose finalizer attacks the step in progress
      setmetatable({}, {__gc = function()
        local p = ps[1 + round % 3]
        local st = opt.state[p]
        if k == 0 and p.grad then p.grad:__gc()
        elseif k == 1 and st then
          for key, v in pairs(st) do
            if core.is_tensor(v) then st[key] = mo.zeros(1) end
          end
        elseif k == 2 then opt.state[p] = nil
        elseif st then
          for _, v in pairs(st) do if core.is_tensor(v) then v:__gc() end end
        end
      end})
      local ok, e = pcall(opt.step, opt)
      if ok then ok_runs = ok_runs + 1 else
        errors = errors + 1
        lu.assertEquals(type(e), "string")
      end
    end
  end
  collectgarbage("incremental", 200, 100, 13)  -- Lua 5.4's defaults
  collectgarbage()
  lu.assertTrue(ok_runs + errors == 40 * #CLASSES)
  lu.assertTrue(errors > 0, "the finalizers never hit a step")
end

return {
  TestOptimFinalizers = TestOptimFinalizers,
  TestOptimHalfChanged = TestOptimHalfChanged,
  TestOptimTampered = TestOptimTampered,
  TestOptimMessages = TestOptimMessages,
  TestOptimClip = TestOptimClip,
  TestOptimScheduleFree = TestOptimScheduleFree,
}
