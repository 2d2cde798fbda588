--- moonopt.lr_find: the learning-rate range test (Smith, "Cyclical Learning Rates for
-- Training Neural Networks", 2017), as mo.train.lr_find.
--
--   local r = mo.train.lr_find{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt,
--                              data = train, batch_size = 128, start_lr = 1e-7, end_lr = 10,
--                              num_iter = 100, plot = "out/lr_find.svg"}
--   r.lrs, r.losses (smoothed), r.raw_losses, r.suggested_lr, r.min_loss_lr, r.stopped_early
--
-- One training step per batch while the learning rate grows exponentially from start_lr
-- to end_lr over num_iter steps (every param group gets the same lr). The loss is
-- smoothed by an exponential moving average with bias correction (beta = smooth), and the
-- sweep stops early when the smoothed loss exceeds `diverge` times the best seen so far (or
-- is not finite). Afterwards the model (parameters and buffers), the optimizer (state and
-- learning rates) and the default generator are restored exactly as they were: the sweep
-- leaves no trace (it goes through mo.save / mo.load and a temporary file).
-- suggested_lr is the lr at the middle of the steepest descent of the smoothed loss against
-- log(lr) (slopes over windows of a tenth of the recorded points), min_loss_lr the lr of the
-- minimum smoothed loss divided by 10; both are heuristics, to be read with the figure.
local data = require "moonopt.data"
local apierror = require "moonopt.apierror"
local checkpoint = require "moonopt.checkpoint"

local fail, show, check_int = apierror.fail, apierror.show, apierror.check_int

local known = {model = true, loss = true, optimizer = true, data = true, batch_size = true, start_lr = true,
               end_lr = true, num_iter = true, smooth = true, diverge = true, plot = true, augment = true,
               title = true}

local function positive(name, v, default)
  if v == nil then return default end
  if type(v) ~= "number" or not (v > 0 and v < math.huge) then
    fail("lr_find: %s must be a positive finite number, got %s", name, show(v))
  end
  return v
end

local function check_args(a)
  if type(a) ~= "table" then fail("lr_find: expected one table of options, got %s", show(a)) end
  for k in pairs(a) do
    if not known[k] then fail("lr_find: unknown option %s", apierror.show_key(k)) end
  end
  for _, k in ipairs{"model", "loss", "optimizer", "data"} do
    if a[k] == nil then fail("lr_find: %s is required", k) end
  end
  if type(a.optimizer) ~= "table" or type(a.optimizer.param_groups) ~= "table" then
    fail("lr_find: optimizer must be a moonopt optimizer (with param_groups), got %s", show(a.optimizer))
  end
  local o = {
    bs = check_int("lr_find", "batch_size", a.batch_size or 32, 1),
    start_lr = positive("start_lr", a.start_lr, 1e-7),
    end_lr = positive("end_lr", a.end_lr, 10),
    num_iter = check_int("lr_find", "num_iter", a.num_iter or 100, 2),
    smooth = a.smooth == nil and 0.98 or a.smooth,
    diverge = positive("diverge", a.diverge, 4),
  }
  if type(o.smooth) ~= "number" or not (o.smooth >= 0 and o.smooth < 1) then
    fail("lr_find: smooth must be a number in [0, 1), got %s", show(o.smooth))
  end
  if o.end_lr <= o.start_lr then
    fail("lr_find: end_lr %g must be above start_lr %g", o.end_lr, o.start_lr)
  end
  if a.plot ~= nil and type(a.plot) ~= "string" then
    fail("lr_find: plot must be a file name (string), got %s", show(a.plot))
  end
  return o
end

-- One step at learning rate lr; returns the batch's loss (not finite: no step taken).
local function step(a, xb, yb, lr)
  for _, g in ipairs(a.optimizer.param_groups) do g.lr = lr end
  local out = a.model:forward(xb)
  local loss, g
  if a.loss.forward_backward then
    loss, g = a.loss:forward_backward(out, yb)
  else
    loss = a.loss:forward(out, yb)
    g = loss == loss and a.loss:backward(out, yb)
  end
  if loss ~= loss or loss == math.huge or loss == -math.huge then return loss end
  a.optimizer:zero_grad()
  a.model:backward(xb, g, false)
  a.optimizer:step()
  return loss
end

local function has_method(m, name)
  local ok, f = pcall(function() return m[name] end)
  return ok and type(f) == "function"
end

-- The sweep itself: lrs, smoothed losses, raw losses, whether it stopped early.
local function sweep(a, o)
  local loader = data.loader(a.data, {batch_size = o.bs, augment = a.augment})
  local ratio = o.end_lr / o.start_lr
  local lrs, losses, raw = {}, {}, {}
  local avg, best, beta = 0, math.huge, o.smooth
  local batches = loader:epoch()
  if has_method(a.model, "train") then a.model:train() end
  for i = 1, o.num_iter do
    local xb, yb = batches()
    if xb == nil then
      batches = loader:epoch()
      xb, yb = batches()
    end
    local lr = o.start_lr * ratio ^ ((i - 1) / (o.num_iter - 1))
    local loss = step(a, xb, yb, lr)
    avg = beta * avg + (1 - beta) * loss
    local smoothed = avg / (1 - beta ^ i)
    lrs[i], raw[i], losses[i] = lr, loss, smoothed
    if smoothed ~= smoothed or smoothed == math.huge or (i > 1 and smoothed > o.diverge * best) then
      return lrs, losses, raw, true
    end
    if smoothed < best then best = smoothed end
  end
  return lrs, losses, raw, false
end

-- suggested_lr (steepest descent of the smoothed loss in log lr) and min_loss_lr.
local function suggest(lrs, losses, stopped)
  local n = #lrs
  if stopped then n = n - 1 end           -- the diverged point is not a candidate
  if n < 3 then return nil, nil end
  -- the slope over a window of a tenth of the points (at least 1): single steps are noisy
  local k = math.max(1, n // 10)
  local best_i, best_slope = nil, math.huge
  for i = 1 + k, n do
    local slope = (losses[i] - losses[i - k]) / (math.log(lrs[i]) - math.log(lrs[i - k]))
    if slope < best_slope then best_i, best_slope = i - k // 2, slope end
  end
  local min_i = 1
  for i = 2, n do if losses[i] < losses[min_i] then min_i = i end end
  return best_i and lrs[best_i], lrs[min_i] / 10
end

local function figure(path, r, title)
  local plot = require "moonopt.plot"
  local series = {{name = "smoothed loss", x = r.lrs, y = r.losses},
                  {name = "batch loss", x = r.lrs, y = r.raw_losses, dash = "dotted", linewidth = 0.8}}
  if r.suggested_lr then
    local lo, hi = math.huge, -math.huge
    for _, v in ipairs(r.losses) do
      if v == v and v < lo then lo = v end
      if v == v and v > hi and v < math.huge then hi = v end
    end
    series[#series + 1] = {name = ("suggested lr %.2e"):format(r.suggested_lr), x = {r.suggested_lr,
                           r.suggested_lr}, y = {lo, hi}, marker = true}
  end
  plot.line{title = title or "learning-rate range test", xlabel = "learning rate", ylabel = "loss", logx = true,
            series = series}:save(path)
end

--- lr_find{...} -> {lrs, losses, raw_losses, suggested_lr, min_loss_lr, stopped_early}
local function lr_find(a)
  local o = check_args(a)
  data.check(a.data, "lr_find")
  local tmp = os.tmpname()
  checkpoint.save(tmp, {model = a.model, optimizer = a.optimizer})
  local was_training = a.model.training
  local ok, lrs, losses, raw, stopped = pcall(sweep, a, o)
  if was_training == false and has_method(a.model, "evaluate") then a.model:evaluate() end
  -- restore whatever happened (the file holds the model, the optimizer and the generator)
  local ok2, err2 = pcall(checkpoint.load, tmp, {model = a.model, optimizer = a.optimizer})
  os.remove(tmp)
  if not ok then error(lrs, 0) end
  if not ok2 then error(err2, 0) end
  local r = {lrs = lrs, losses = losses, raw_losses = raw, stopped_early = stopped}
  r.suggested_lr, r.min_loss_lr = suggest(lrs, losses, stopped)
  if a.plot then figure(a.plot, r, a.title) end
  return r
end

return apierror.api(lr_find)
