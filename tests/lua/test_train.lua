-- tests/lua/test_train.lua - mo.train.fit: learning on a synthetic set, gradient
-- accumulation, clipping, callbacks, history, non-finite losses, progress output.
-- The optimizer here is a tiny SGD written with tensor ops, so these tests depend
-- only on mo.nn (the real optimizers are exercised in the last test when present).
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local nn, data, train = mo.nn, mo.data, mo.train

-- SGD with optional momentum on model:parameters(), shaped like mo.optim's objects.
local function sgd(params, lr, momentum)
  local opt = {param_groups = {{lr = lr, params = params}}, steps = 0}
  local bufs = {}
  function opt.step()
    local g1 = opt.param_groups[1]
    for i, p in ipairs(params) do
      local g = p.grad
      if momentum then
        bufs[i] = bufs[i] and bufs[i]:mul_(momentum):add_(g) or g:clone()
        g = bufs[i]
      end
      p:sub_(g:mul(g1.lr))
    end
    opt.steps = opt.steps + 1
  end
  function opt.zero_grad()
    for _, p in ipairs(params) do p.grad:zero_() end
  end
  return opt
end

local function params_table(model)
  local out = {}
  for i, p in ipairs(model:parameters()) do out[i] = p:totable() end
  return out
end

local function max_abs_diff(a, b)
  local m = 0
  local function walk(x, y)
    if type(x) == "table" then
      for i = 1, #x do walk(x[i], y[i]) end
    else
      m = math.max(m, math.abs(x - y))
    end
  end
  walk(a, b)
  return m
end

local function quiet()
  return {live = false, write = function() end}
end

-- ---------------------------------------------------------------------------

local TestTrainFit = {}

function TestTrainFit.test_learns_moons_quickly()
  mo.manual_seed(11)
  local ds = data.moons{n = 400, noise = 0.1}
  local test = data.moons{n = 200, noise = 0.1}
  local model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2))
  local opt = sgd(model:parameters(), 0.1, 0.9)
  local h = train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, data = ds, eval = test,
                      epochs = 15, batch_size = 32, progress = false}
  lu.assertTrue(h.eval_acc[15] >= 0.97, "eval accuracy " .. h.eval_acc[15])
  lu.assertTrue(h.train_acc[15] >= 0.95, "train accuracy " .. h.train_acc[15])
  lu.assertTrue(h.train_loss[15] < h.train_loss[1] / 4)
  lu.assertEquals(h.steps, 15 * 13)  -- ceil(400 / 32) = 13 batches per epoch
  lu.assertEquals(opt.steps, 15 * 13)
  -- the same number from evaluate()
  local loss, acc = train.evaluate(model, nn.CrossEntropyLoss(), test)
  lu.assertAlmostEquals(loss, h.eval_loss[15], 1e-6)
  lu.assertEquals(acc, h.eval_acc[15])
end

-- accumulate = 2 with batch B takes the same steps as batch 2B (mean-reduced loss).
function TestTrainFit.test_accumulate_equals_the_doubled_batch()
  local function run(bs, k, n)
    mo.manual_seed(5)
    local ds = data.regression{n = n, d = 3, noise = 0.1}
    local model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    local opt = sgd(model:parameters(), 0.2)
    local h = train.fit{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, epochs = 2,
                        batch_size = bs, accumulate = k, shuffle = false, progress = false}
    return params_table(model), h, opt
  end
  local p_acc, h_acc, o_acc = run(4, 2, 16)
  local p_big, h_big = run(8, 1, 16)
  lu.assertEquals(h_acc.steps, 4)
  lu.assertEquals(h_big.steps, 4)
  lu.assertEquals(o_acc.steps, 4)
  lu.assertTrue(max_abs_diff(p_acc, p_big) < 1e-5, "max diff " .. max_abs_diff(p_acc, p_big))
  -- and they really moved
  local p_none = run(8, 1, 16)
  lu.assertEquals(max_abs_diff(p_none, p_big), 0)
  -- a short last group (3 of 4 batches) steps with the mean over the batches it has
  local p_short, h_short = run(2, 4, 6)
  local p_whole = run(6, 1, 6)
  lu.assertEquals(h_short.steps, 2)
  lu.assertTrue(max_abs_diff(p_short, p_whole) < 1e-5, "short group diff " .. max_abs_diff(p_short, p_whole))
end

function TestTrainFit.test_callbacks_history_and_epoch_schedule()
  mo.manual_seed(3)
  local ds = data.spirals{n = 60, classes = 3}
  local ev = data.spirals{n = 30, classes = 3}
  local model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
  local opt = sgd(model:parameters(), 0.4)
  local sched = mo.sched.Step(opt, {step_size = 1, gamma = 0.5})
  local steps, epochs, last_step = 0, {}, 0
  local h = train.fit{
    model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched, schedule_per = "epoch",
    data = ds, eval = ev, epochs = 3, batch_size = 16, accumulate = 2, progress = false,
    on_step = function(info)
      steps = steps + 1
      lu.assertTrue(info.batch >= 1 and info.batch <= 4)
      lu.assertTrue(info.step >= last_step)
      last_step = info.step
      lu.assertEquals(type(info.loss), "number")
      lu.assertEquals(info.batch_size, info.batch == 4 and 12 or 16)
    end,
    on_epoch = function(e) epochs[#epochs + 1] = e.epoch end,
  }
  lu.assertEquals(steps, 12)         -- 4 batches x 3 epochs
  lu.assertEquals(last_step, 6)      -- one optimizer step per 2 batches
  lu.assertEquals(epochs, {1, 2, 3})
  lu.assertEquals(#h, 3)
  lu.assertEquals(h[2].epoch, 2)
  -- the lr column: the rate each epoch's steps used (the schedule steps after the epoch)
  lu.assertEquals(h.lr, {0.4, 0.2, 0.1})
  lu.assertEquals(opt.param_groups[1].lr, 0.05)
  for _, col in ipairs{"train_loss", "train_acc", "eval_loss", "eval_acc", "lr", "seconds", "eval_seconds"} do
    lu.assertEquals(#h[col], 3, col)
  end
  for e = 1, 3 do
    lu.assertTrue(h.seconds[e] >= 0)
    lu.assertTrue(h.eval_acc[e] >= 0 and h.eval_acc[e] <= 1)
    lu.assertEquals(h[e].train_loss, h.train_loss[e])
  end
  lu.assertFalse(h.stopped_early)
end

function TestTrainFit.test_schedule_per_batch_and_early_stop()
  mo.manual_seed(4)
  local ds = data.moons{n = 40}
  local model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
  local opt = sgd(model:parameters(), 1.0)
  local sched = mo.sched.Lambda(opt, {lr_lambda = function(t) return 1 / (1 + t) end})
  local lrs = {}
  local h = train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched,
                      data = ds, epochs = 5, batch_size = 10, progress = false,
                      on_step = function(info) lrs[#lrs + 1] = info.lr end,
                      on_epoch = function(e) return e.epoch < 2 end}
  lu.assertEquals(#h, 2)            -- stopped after epoch 2
  lu.assertTrue(h.stopped_early)
  lu.assertEquals(#lrs, 8)
  -- stepped after each optimizer step; info.lr is the rate that step used
  lu.assertAlmostEquals(lrs[1], 1, 1e-12)
  lu.assertAlmostEquals(lrs[8], 1 / 8, 1e-12)
  lu.assertAlmostEquals(h.lr[2], 1 / 8, 1e-12)
  lu.assertAlmostEquals(opt.param_groups[1].lr, 1 / 9, 1e-12)
  -- on_step returning false stops at once
  local n = 0
  h = train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, data = ds, epochs = 5,
                batch_size = 10, progress = false,
                on_step = function() n = n + 1 return n < 3 end}
  lu.assertEquals(n, 3)
  lu.assertEquals(#h, 1)
  lu.assertTrue(h.stopped_early)
end

-- A loss that turns NaN at its `at`-th forward call.
local function nan_loss(at)
  local inner = nn.MSELoss()
  local calls = 0
  return {
    forward = function(_, out, y)
      calls = calls + 1
      if calls == at then return 0 / 0 end
      return inner:forward(out, y)
    end,
    backward = function(_, out, y) return inner:backward(out, y) end,
  }
end

function TestTrainFit.test_nonfinite_loss_names_the_step()
  mo.manual_seed(6)
  local ds = data.regression{n = 40, d = 2}
  local model = nn.Linear(2, 1)
  local opt = sgd(model:parameters(), 0.01)
  local ok, msg = pcall(train.fit, {model = model, loss = nan_loss(7), optimizer = opt, data = ds, epochs = 2,
                                    batch_size = 10, accumulate = 2, progress = false})
  lu.assertFalse(ok)
  -- call 7 = epoch 2, batch 3; 3 optimizer steps done before it (2 in epoch 1, 1 in epoch 2)
  lu.assertStrContains(msg, "fit: non-finite loss (nan) at epoch 2, batch 3, step 4")
  lu.assertNil(msg:find("train.lua", 1, true), msg)
  -- skip_nonfinite: the batch is dropped and counted
  local before = params_table(model)
  local h = train.fit{model = model, loss = nan_loss(2), optimizer = opt, data = ds, epochs = 1, batch_size = 10,
                      skip_nonfinite = true, progress = false}
  lu.assertEquals(h.skipped_batches, 1)
  lu.assertEquals(h.steps, 3)
  lu.assertTrue(h.train_loss[1] == h.train_loss[1])
  lu.assertTrue(max_abs_diff(before, params_table(model)) > 0)
end

function TestTrainFit.test_clip_grad_norm()
  local p = mo.zeros(2)
  p.grad = mo.tensor{3, 4}
  local q = mo.zeros(1)
  q.grad = mo.tensor{0}
  -- fit clips with the one clip_grad_norm, mo.optim's (train.clip_grad_norm is gone)
  lu.assertNil(train.clip_grad_norm)
  lu.assertAlmostEquals(mo.optim.clip_grad_norm({p, q}, 1), 5, 1e-6)
  lu.assertAlmostEquals(p.grad:get(1), 0.6, 1e-6)
  lu.assertAlmostEquals(p.grad:get(2), 0.8, 1e-6)
  lu.assertAlmostEquals(mo.optim.clip_grad_norm({p, q}, 10), 1, 1e-5)  -- under the limit: unchanged
  lu.assertAlmostEquals(p.grad:get(2), 0.8, 1e-6)
  -- in fit: the reported norm is before clipping, the step uses the clipped gradient
  mo.manual_seed(8)
  local ds = data.regression{n = 8, d = 2, bias = 100}
  local model = nn.Linear(2, 1)
  local opt = sgd(model:parameters(), 1)
  local norms = {}
  local b0 = model:parameters()[2]:get(1)
  train.fit{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, batch_size = 8, clip_grad_norm = 0.5,
            progress = false, on_step = function(info) norms[#norms + 1] = info.grad_norm end}
  lu.assertTrue(norms[1] > 10)
  local moved = math.abs(model:parameters()[2]:get(1) - b0)
  lu.assertTrue(moved <= 0.5 + 1e-5 and moved > 0.1, "bias moved " .. moved)
end

function TestTrainFit.test_bad_arguments()
  local model = nn.Linear(2, 1)
  local opt = sgd(model:parameters(), 0.1)
  local ds = data.regression{n = 4, d = 2}
  local base = {model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, progress = false}
  local function with(k, v)
    local a = {}
    for key, val in pairs(base) do a[key] = val end
    a[k] = v
    return a
  end
  local cases = {
    {with("epoch", 3), "fit: unknown option 'epoch'"},
    {with("model", nil), "fit: model must have a forward method"},
    {with("optimizer", {}), "fit: optimizer must have a step method"},
    {with("data", {x = ds.x, y = mo.zeros(3)}), "fit: x {4, 2} and y {3} disagree"},
    {with("schedule_per", "step"), "fit: schedule_per must be \"batch\" or \"epoch\", got string \"step\""},
    {with("clip_grad_norm", -1), "fit: clip_grad_norm must be a positive finite number, got -1"},
    {with("clip_grad_norm", 0 / 0), "fit: clip_grad_norm must be a positive finite number, got nan"},
    {with("batch_size", 0), "fit: batch_size must be a positive integer, got 0"},
    {with("accumulate", 1.5), "fit: accumulate must be a positive integer, got 1.5"},
    {with("epochs", "3"), "fit: epochs must be a non-negative integer, got string \"3\""},
    {with("epochs", -1), "fit: epochs must be a non-negative integer, got -1"},
    {with("eval_batch_size", true), "fit: eval_batch_size must be a positive integer, got true"},
    {with("on_step", 3), "fit: on_step must be a function, got 3"},
    {with("on_epoch", "f"), "fit: on_epoch must be a function, got string \"f\""},
    {with("progress", "yes"), "fit: progress must be a boolean or a table of progress options, got string \"yes\""},
    {with("state", 5), "fit: state must be a table, got 5"},
    {with("scheduler", {}), "fit: scheduler must have a step method"},
    {with("loss", {forward = true}), "fit: loss must have a forward method"},
    {with("data", nil), "fit: data (a data set {x =, y =}) is required"},
    {with("data", {x = 3}), "fit: data set field x must be a tensor, got 3"},
    {with("eval", {x = mo.zeros(2, 2), y = mo.zeros(3)}), "fit (eval): x {2, 2} and y {3} disagree"},
    {with("state", {epoch = 1, version = 7}), "fit: state: unknown version 7"},
  }
  for _, c in ipairs(cases) do
    local ok, msg = pcall(function()
      local h = train.fit(c[1])  -- not a tail call: this line is the caller
      return h
    end)
    lu.assertFalse(ok, c[2])
    lu.assertStrContains(msg, c[2])
    lu.assertStrContains(msg, "test_train.lua:")  -- raised at the caller's line
  end
  lu.assertErrorMsgContains("fit: expected one table of options, got 3", train.fit, 3)
  local ok, msg = pcall(function()
    local h = train.fit{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, progress = false, [1] = 2}
    return h
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "fit: unknown option 1")
end

function TestTrainFit.test_errors_inside_fit_point_at_the_caller()
  local ds = data.regression{n = 4, d = 2}
  local model = nn.Linear(3, 1)   -- the data has 2 features: forward raises inside fit
  local opt = sgd(model:parameters(), 0.1)
  local ok, msg = pcall(function()
    local h = train.fit{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, progress = false}
    return h
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(msg, "Linear")
  lu.assertStrMatches(msg, "^tests/lua/test_train.lua:%d+: .*")
  lu.assertNil(msg:find("train.lua:%d+: .*train.lua"), msg)
  -- an error of the user's own callback keeps its position
  model = nn.Linear(2, 1)
  opt = sgd(model:parameters(), 0.1)
  ok, msg = pcall(train.fit, {model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, progress = false,
                              on_step = function() error("callback failed") end})
  lu.assertFalse(ok)
  lu.assertStrMatches(msg, "^tests/lua/test_train.lua:%d+: callback failed$")
  -- evaluate checks its arguments the same way
  ok, msg = pcall(function()
    local l = train.evaluate(model, nn.MSELoss(), ds, {batch_size = 0})
    return l
  end)
  lu.assertFalse(ok)
  lu.assertStrMatches(msg, "^tests/lua/test_train.lua:%d+: evaluate: batch_size must be a positive integer, got 0$")
  lu.assertErrorMsgContains("evaluate: unknown option 'bs'", train.evaluate, model, nn.MSELoss(), ds, {bs = 1})
end

-- A loss that only works through forward_backward (forward or backward alone raise).
local function one_pass_loss()
  local inner = nn.MSELoss()
  local l = {calls = 0}
  function l.forward_backward(_, out, y)
    l.calls = l.calls + 1
    return inner:forward_backward(out, y)
  end
  function l.forward(_, out, y)
    if not l.evaluating then error("forward called outside evaluation") end
    return inner:forward(out, y)
  end
  function l.backward() error("backward called: fit should use forward_backward") end
  return l
end

function TestTrainFit.test_uses_forward_backward()
  mo.manual_seed(3)
  local ds = data.regression{n = 30, d = 2}
  local model = nn.Linear(2, 1)
  local l = one_pass_loss()
  local h = train.fit{model = model, loss = l, optimizer = sgd(model:parameters(), 0.05), data = ds, epochs = 2,
                      batch_size = 10, progress = false}
  lu.assertEquals(l.calls, 6)
  lu.assertEquals(h.steps, 6)
  -- the same weights as a run with forward and backward called separately
  mo.manual_seed(3)
  ds = data.regression{n = 30, d = 2}
  local model2 = nn.Linear(2, 1)
  local inner = nn.MSELoss()
  local separate = {forward = function(_, o, y) return inner:forward(o, y) end,
                    backward = function(_, o, y) return inner:backward(o, y) end}
  train.fit{model = model2, loss = separate, optimizer = sgd(model2:parameters(), 0.05), data = ds, epochs = 2,
            batch_size = 10, progress = false}
  lu.assertEquals(params_table(model2), params_table(model))
end

function TestTrainFit.test_schedule_free_optimizer_evaluates_in_eval_mode()
  mo.manual_seed(5)
  local ds = data.regression{n = 20, d = 2}
  local model = nn.Linear(2, 1)
  local opt = sgd(model:parameters(), 0.01)
  local events = {}
  opt.mode = "eval"   -- as after a checkpoint saved in on_epoch: fit puts it back in train mode
  function opt.eval() events[#events + 1] = "eval"; opt.mode = "eval" end
  function opt.train() events[#events + 1] = "train"; opt.mode = "train" end
  local step = opt.step
  function opt.step()
    lu.assertEquals(opt.mode, "train")
    events[#events + 1] = "step"
    step()
  end
  local inner = nn.MSELoss()
  local loss = {forward = function(_, o, y)
                  if not model.training then events[#events + 1] = "evaluate:" .. opt.mode end
                  return inner:forward(o, y)
                end,
                backward = function(_, o, y) return inner:backward(o, y) end}
  train.fit{model = model, loss = loss, optimizer = opt, data = ds, eval = ds, eval_batch_size = 20, epochs = 2,
            batch_size = 10, progress = false,
            on_epoch = function() events[#events + 1] = "on_epoch:" .. opt.mode end}
  lu.assertEquals(events, {"train", "step", "step", "eval", "evaluate:eval", "on_epoch:eval", "train",
                           "step", "step", "eval", "evaluate:eval", "on_epoch:eval", "train"})
end

-- ---------------------------------------------------------------------------

local TestTrainProgress = {}

local function capture()
  local out = {}
  return out, function(s) out[#out + 1] = s end
end

function TestTrainProgress.test_plain_lines_when_not_a_terminal()
  mo.manual_seed(9)
  local ds = data.moons{n = 50}
  local model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
  local out, write = capture()
  train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = sgd(model:parameters(), 0.1), data = ds,
            eval = ds, epochs = 3, batch_size = 10, progress = {live = false, write = write}}
  local text = table.concat(out)
  lu.assertNil(text:find("\r", 1, true))
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  lu.assertEquals(#lines, 3)   -- one per epoch
  for e, line in ipairs(lines) do
    lu.assertStrMatches(line, ("epoch %d/3  loss %%d%%.%%d+  acc %%d%%.%%d+  eval_loss %%d%%.%%d+  "
      .. "eval_acc %%d%%.%%d+  lr 1%%.00e%%-01  %%d+%%.%%d s"):format(e))
  end
  -- every N batches too
  out, write = capture()
  train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = sgd(model:parameters(), 0.1), data = ds,
            epochs = 1, batch_size = 10, progress = {live = false, write = write}, progress_every = 2}
  text = table.concat(out)
  lu.assertStrContains(text, "epoch 1/1  batch 2/5")
  lu.assertStrContains(text, "epoch 1/1  batch 4/5")
  lu.assertNil(text:find("batch 3/5", 1, true))
end

function TestTrainProgress.test_live_line_on_a_terminal()
  local out, write = capture()
  local t = 0
  local bar = mo.progress.new{total = 4, epoch = 2, epochs = 5, live = true, write = write, interval = 0,
                              columns = 200, clock = function() return t end}
  t = 1
  bar:update(1, {loss = 0.5, lr = 1e-3})
  t = 2
  bar:update(2, {loss = 0.25, lr = 1e-3})
  bar:finish("loss 0.2500")
  lu.assertEquals(out[1], "\repoch 2/5 [#####...............]  25%  1/4  1.0 batch/s  ETA 0:00:03  "
    .. "loss 0.5000  lr 1.00e-03")
  lu.assertStrContains(out[2], "\repoch 2/5 [##########..........]  50%  2/4  1.0 batch/s  ETA 0:00:02")
  lu.assertStrMatches(out[3], "\repoch 2/5  loss 0%.2500  2%.0 s *\n")
  -- redraws are throttled to `interval`
  out, write = capture()
  bar = mo.progress.new{total = 100, live = true, write = write, interval = 10, clock = function() return t end}
  for i = 1, 50 do bar:update(i) end
  lu.assertEquals(#out, 1)
  lu.assertEquals(mo.progress.clock_str(3725), "1:02:05")
end

function TestTrainProgress.test_live_line_fits_the_terminal()
  local t = 0
  local function bar_for(columns, width)
    t = 0   -- started at 0, drawn at 0.5 s
    local bar = mo.progress.new{total = 469, epoch = 3, epochs = 10, live = true, write = function() end,
                                interval = 0, columns = columns, width = width, clock = function() return t end}
    t = 0.5
    return bar
  end
  local stats = {loss = 0.4321, lr = 9.8e-4}
  local full = bar_for(200):line(211, stats)
  lu.assertEquals(#full, 101)   -- a 20-character bar and everything else: wider than 80
  for _, columns in ipairs{80, 60, 40, 10, 1} do
    local s = bar_for(columns):line(211, stats)
    lu.assertTrue(#s <= columns - 1, columns .. " columns: " .. #s .. " characters: " .. s)
  end
  -- the bar shrinks first: at 100 columns the line is 99 characters with an 18-character bar
  local s = bar_for(100):line(211, stats)
  lu.assertEquals(#s, 99)
  lu.assertStrContains(s, "[########..........]")
  lu.assertStrContains(s, "loss 0.4321  lr 9.80e-04")
  -- then the end of the line is cut
  s = bar_for(60):line(211, stats)
  lu.assertEquals(s, "epoch 3/10 []  45%  211/469  422.0 batch/s  ETA 0:00:01  lo")
  -- the drawn text too ("\r" + line + padding, never more than columns - 1 visible characters)
  local out, write = capture()
  local bar = bar_for(80)
  bar.write = write
  bar:update(211, stats)
  bar:update(212, {loss = 0.5})
  for _, chunk in ipairs(out) do lu.assertTrue(#chunk - 1 <= 79, chunk) end
end

function TestTrainProgress.test_terminal_width()
  local W = mo.progress.terminal_width
  local function env(v) return function(k) if k == "COLUMNS" then return v end end end
  local function tput(v) return function() return v end end
  lu.assertEquals(W(env("132"), tput("100\n")), 132)
  lu.assertEquals(W(env(nil), tput("100\n")), 100)
  lu.assertEquals(W(env("abc"), tput(nil)), 80)
  lu.assertEquals(W(env("0"), tput("0\n")), 80)
  lu.assertEquals(W(env(""), tput("tput: unknown terminal")), 80)
  lu.assertEquals(type(W()), "number")
  -- progress.new's own checks
  local function err(opts) local ok, m = pcall(mo.progress.new, opts) lu.assertFalse(ok) return m end
  lu.assertStrContains(err{total = 2, columns = 0}, "progress.new: columns must be a positive integer, got 0")
  lu.assertStrContains(err{total = "2"}, "progress.new: total must be a non-negative integer, got string \"2\"")
  lu.assertStrContains(err{total = 2, colums = 80}, "progress.new: unknown option 'colums'")
  local bar = mo.progress.new{total = 2, live = false, write = function() end}
  lu.assertErrorMsgContains("bar:update: done must be a number, got nil", bar.update, bar)
end

function TestTrainProgress.test_terminal_detection_answers_a_boolean()
  lu.assertEquals(type(mo.progress.is_terminal()), "boolean")
  lu.assertEquals(type(core.isatty(1)), "boolean")
  lu.assertFalse(core.isatty(99))
end

-- ---------------------------------------------------------------------------

local TestTrainWithOptim = {}

-- The real optimizer and schedule, when mo.optim is there.
function TestTrainWithOptim.test_adamw_warmup_cosine_on_spirals()
  local ok, optim = pcall(function() return mo.optim end)
  if not ok or type(optim) ~= "table" or not optim.AdamW then lu.skip("mo.optim not available yet") end
  mo.manual_seed(12)
  local ds = data.spirals{n = 600, classes = 3, noise = 0.1}
  local model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
  local opt = optim.AdamW(model:parameters(), {lr = 1e-2, weight_decay = 1e-4})
  local epochs, bs = 25, 32
  local sched = mo.sched.WarmupCosine(opt, {warmup = 20, total = epochs * math.ceil(600 / bs)})
  -- (no time limit here: under ASan on a loaded machine this took over 2 s; speed is bench/'s)
  local h = train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched, data = ds,
                      eval = ds, epochs = epochs, batch_size = bs, progress = quiet()}
  lu.assertTrue(h.eval_acc[epochs] >= 0.95, "accuracy " .. h.eval_acc[epochs])
  lu.assertTrue(h.lr[epochs] < 1e-3)  -- annealed
end

return {
  TestTrainFit = TestTrainFit,
  TestTrainProgress = TestTrainProgress,
  TestTrainWithOptim = TestTrainWithOptim,
}
