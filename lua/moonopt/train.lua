--- mo.train: the training loop.
--
--   local history = mo.train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt,
--                                scheduler = sched, data = train, eval = test,
--                                epochs = 10, batch_size = 128}
--   print(history.eval_acc[#history.eval_acc])
--
-- One training step (Run:train_batch, then Run:optimizer_step every `accumulate` batches):
--   out = model:forward(xb)
--   loss, g = loss_fn:forward_backward(out, yb)     -- a non-finite loss: the NaN policy
--   model:backward(xb, g / accumulate)              -- adds into every parameter's .grad
--   norm = clip (mo.optim.clip_grad_norm) or measure the gradient norm
--   optimizer:step(); optimizer:zero_grad(); scheduler:step()   (schedule_per = "batch")
-- At the end of an epoch (Run:finish_epoch): evaluation, the per-epoch schedule, the
-- history entry, the progress summary and on_epoch. See docs/training.md for every option.
-- The autograd path: `loss` a function (model, xb, yb) -> 0-d tensor [, out]; fit runs
-- backward on it (Run:train_batch_autograd; docs/training.md "The autograd path").
--
-- Resuming: with `state = tbl`, fit keeps its position in tbl (plain values: epoch,
-- batch, step, running sums, the generator state at the start of the epoch, the
-- history so far) after every batch and every epoch. mo.save(path, {..., fit = tbl})
-- stores it and mo.load(path, {..., fit = tbl}) restores it; fit{..., state = tbl}
-- then continues from that point (the same epoch order, the same batches) and the run
-- is bit-identical to one that was never interrupted. See docs/checkpoints.md. A state
-- saved by moonopt.dist at another world size resumes at the same place in the epoch's
-- permutation (Run:rest_of_epoch; docs/distributed.md "Checkpoints").
local core = require "moonopt.core"
local data = require "moonopt.data"
local optim = require "moonopt.optim"
local progress = require "moonopt.progress"
local apierror = require "moonopt.apierror"

local fail, show, check_int = apierror.fail, apierror.show, apierror.check_int
local check_data = apierror.unwrap(data.check)

local train = {}

-------------------------------------------------------------------------------------------
-- Small helpers

local function has_method(obj, name)
  local ok, f = pcall(function() return obj[name] end)
  return ok and type(f) == "function"
end

local function is_bad(x)
  return x ~= x or x == math.huge or x == -math.huge
end

--- The first group's learning rate (what the schedule sets), or nil.
local function current_lr(opt)
  local g = opt.param_groups
  return type(g) == "table" and type(g[1]) == "table" and g[1].lr or nil
end

-- Gradients of the parameters that have one.
local function grads_of(params)
  local gs = {}
  for _, p in ipairs(params) do
    local g = p.grad
    if g ~= nil then gs[#gs + 1] = g end
  end
  return gs
end

-- Whether out/y look like classification with class numbers: out {B, C>1}, y {B}.
local function looks_classification(out, y)
  return y ~= nil and out:dim() == 2 and out:size(2) > 1 and y:dim() == 1
end

-- loss, dloss/dout: one pass when the loss has forward_backward. The gradient is nil
-- when the loss is not finite (the batch is dropped or training stops).
local function loss_and_grad(loss_fn, out, y)
  if loss_fn.forward_backward then
    local loss, g = loss_fn:forward_backward(out, y)
    return loss, not is_bad(loss) and g or nil
  end
  local loss = loss_fn:forward(out, y)
  if is_bad(loss) then return loss, nil end
  return loss, loss_fn:backward(out, y)
end

-- Calls opt:eval() / opt:train() when the optimizer has both (schedule-free optimizers
-- evaluate at other weights than they train at).
local function optimizer_mode(opt, mode)
  if has_method(opt, "eval") and has_method(opt, "train") then opt[mode](opt) end
end

-------------------------------------------------------------------------------------------
-- Arguments

local known = {
  model = true, loss = true, optimizer = true, scheduler = true, data = true, epochs = true,
  batch_size = true, accumulate = true, clip_grad_norm = true, schedule_per = true, eval = true,
  eval_batch_size = true, on_step = true, on_epoch = true, progress = true, progress_every = true,
  skip_nonfinite = true, shuffle = true, drop_last = true, accuracy = true, state = true, dist = true,
  augment = true,
}

-- The objects fit calls must have these methods. The autograd path (a loss function of
-- (model, xb, yb)) needs only the model's parameters.
local function check_objects(a)
  local ag = type(a.loss) == "function"
  for _, m in ipairs(ag and {"parameters"} or {"forward", "backward", "parameters"}) do
    if a.model == nil or not has_method(a.model, m) then fail("fit: model must have a %s method", m) end
  end
  for _, m in ipairs(ag and {} or {"forward", "backward"}) do
    if a.loss == nil or not has_method(a.loss, m) then
      fail("fit: loss must have a %s method (or be a function(model, xb, yb) returning a 0-d tensor)", m)
    end
  end
  for _, m in ipairs{"step", "zero_grad"} do
    if a.optimizer == nil or not has_method(a.optimizer, m) then fail("fit: optimizer must have a %s method", m) end
  end
  if a.scheduler ~= nil and not has_method(a.scheduler, "step") then fail("fit: scheduler must have a step method") end
end

local function check_args(a)
  if type(a) ~= "table" then fail("fit: expected one table of options, got %s", show(a)) end
  for k in pairs(a) do
    if not known[k] then fail("fit: unknown option %s", type(k) == "string" and ("'" .. k .. "'") or show(k)) end
  end
  check_objects(a)
  if a.data == nil then fail("fit: data (a data set {x =, y =}) is required") end
  check_data(a.data, "fit")
  if a.eval ~= nil then check_data(a.eval, "fit (eval)") end
  local per = a.schedule_per
  if per ~= nil and per ~= "batch" and per ~= "epoch" then
    fail("fit: schedule_per must be \"batch\" or \"epoch\", got %s", show(per))
  end
  local c = a.clip_grad_norm
  if c ~= nil and (type(c) ~= "number" or c ~= c or c <= 0 or c == math.huge) then
    fail("fit: clip_grad_norm must be a positive finite number, got %s", show(c))
  end
  for _, f in ipairs{"on_step", "on_epoch"} do
    if a[f] ~= nil and type(a[f]) ~= "function" then fail("fit: %s must be a function, got %s", f, show(a[f])) end
  end
  if a.dist ~= nil and not (type(a.dist) == "table" and type(a.dist.rank) == "function"
                           and type(a.dist.all_reduce_) == "function") then
    fail("fit: dist must be the moonopt.dist module, got %s", show(a.dist))
  end
  if c ~= nil and type(a.optimizer) == "table" and rawget(a.optimizer, "_zero") then
    fail("fit: clip_grad_norm is not supported with an optimizer with shard_state = true yet")
  end
  local p = a.progress
  if p ~= nil and type(p) ~= "boolean" and type(p) ~= "table" then
    fail("fit: progress must be a boolean or a table of progress options, got %s", show(p))
  end
  if a.state ~= nil and type(a.state) ~= "table" then fail("fit: state must be a table, got %s", show(a.state)) end
end

-------------------------------------------------------------------------------------------
-- The resumable state

local STATE_VERSION = 1

-- A resume state must describe a run of the same data layout; errors name the field.
local function check_state(st, n, nb, bs, k, world)
  local function bad(f, ...) fail("fit: state: " .. f, ...) end
  local relayout = (st.world_size or 1) ~= world
  if st.version ~= STATE_VERSION then bad("unknown version %s", show(st.version)) end
  for _, key in ipairs{"epoch", "batch", "step", "pending", "seen", "correct", "skipped_batches"} do
    local v = st[key]
    if math.type(v) ~= "integer" or v < 0 then bad("%s must be a non-negative integer, got %s", key, show(v)) end
  end
  if st.epoch < 1 then bad("epoch must be >= 1, got %d", st.epoch) end
  if type(st.loss_sum) ~= "number" then bad("loss_sum must be a number, got %s", show(st.loss_sum)) end
  if st.batch_size ~= bs or st.accumulate ~= k then
    bad("the run used batch_size %s and accumulate %s, this call %d and %d", show(st.batch_size),
        show(st.accumulate), bs, k)
  end
  if relayout and st.batch > 0 and (math.type(st.sample) ~= "integer" or st.sample < 0 or st.sample > n) then
    bad("resuming at another world size needs the epoch's sample position, got %s", show(st.sample))
  end
  if st.n ~= n or (st.num_batches ~= nb and not relayout) then
    bad("the run had %s examples in %s batches per epoch, this data gives %d in %d", show(st.n),
        show(st.num_batches), n, nb)
  end
  if st.batch > nb and not relayout then bad("batch %d is past the %d batches of an epoch", st.batch, nb) end
  if st.pending >= k then bad("pending %d must be below accumulate %d", st.pending, k) end
  if st.batch > 0 and type(st.epoch_rng) ~= "string" then bad("epoch_rng is missing") end
  if type(st.entries) ~= "table" then bad("entries must be a list of epoch entries") end
  for i, e in ipairs(st.entries) do
    if type(e) ~= "table" then bad("entries[%d] is not a table", i) end
  end
end

local function copy_entry(e)
  local c = {}
  for key, v in pairs(e) do c[key] = v end
  return c
end

-------------------------------------------------------------------------------------------
-- One fit call: a Run holds the options, the counters and the history.

local Run = {}
Run.__index = Run

-- Columns of the history: one list per field, one value per epoch.
local columns = {"train_loss", "train_acc", "eval_loss", "eval_acc", "lr", "seconds", "eval_seconds"}

local function new_history()
  local history = {steps = 0, skipped_batches = 0, stopped_early = false}
  for _, c in ipairs(columns) do history[c] = {} end
  return history
end

function Run:add_entry(entry)
  local history = self.history
  history[#history + 1] = entry
  for _, c in ipairs(columns) do
    local col = history[c]
    col[#col + 1] = entry[c] == nil and (0 / 0) or entry[c]
  end
end

-- With dist (docs/distributed.md "fit"): this rank and the number of ranks, else 1, 1.
local function rank_and_size(d)
  if d == nil then return 1, 1 end
  return d.rank(), d.size()
end

local function new_run(a)
  check_args(a)
  local bs = check_int("fit", "batch_size", a.batch_size or 32, 1)
  local rank, world = rank_and_size(a.dist)
  local sched = a.scheduler
  local r = setmetatable({
    a = a, model = a.model, loss_fn = a.loss, opt = a.optimizer, sched = sched,
    epochs = check_int("fit", "epochs", a.epochs or 1, 0),
    k = check_int("fit", "accumulate", a.accumulate or 1, 1),
    eval_bs = check_int("fit", "eval_batch_size", a.eval_batch_size or math.max(bs, 1000), 1),
    max_norm = a.clip_grad_norm, skip = a.skip_nonfinite,
    per_batch = (a.schedule_per or "batch") == "batch" and not (sched and sched.needs_metric),
    params = a.model:parameters(),
    loader = data.loader(a.data, {batch_size = bs, shuffle = a.shuffle ~= false, drop_last = a.drop_last,
                                  rank = rank, world_size = world, augment = a.augment}),
    rank = rank, world = world,
    history = new_history(), info = {},   -- one info table for every on_step call
    step = 0,                              -- optimizer steps taken
    pending = 0,                           -- batches accumulated since the last optimizer step
    want_acc = a.accuracy, last_lr = current_lr(a.optimizer),
    st = a.state or {},
  }, Run)
  r.inv_k, r.nb = 1 / r.k, r.loader:num_batches()
  r.resume = r.st.epoch ~= nil
  if r.resume then check_state(r.st, r.loader.n, r.nb, bs, r.k, world) end
  return r
end

-- Restores the counters and history of a resumed run, or starts a fresh state.
function Run:restore()
  local st, history = self.st, self.history
  if self.resume then
    self.step, self.pending, self.last_lr = st.step, st.pending, st.last_lr
    -- sums over all ranks (dist.save adds them up; a one-process run's are): rank 1 carries
    -- them on, the others restart from 0, so the epoch's all-reduced sums count each example once
    local global = st.sums_over_ranks or (st.world_size or 1) == 1
    if global and self.rank ~= 1 then st.loss_sum, st.seen, st.correct = 0, 0, 0 end
    st.sums_over_ranks = nil
    if self.want_acc == nil then self.want_acc = st.want_acc end
    history.skipped_batches = st.skipped_batches
    for _, e in ipairs(st.entries) do self:add_entry(copy_entry(e)) end
  else
    st.version, st.n, st.num_batches, st.batch_size, st.accumulate = STATE_VERSION, self.loader.n, self.nb,
      self.loader.batch_size, self.k
    st.world_size, st.sample = self.world, 0
    st.epoch, st.batch, st.step, st.pending, st.skipped_batches = 1, 0, 0, 0, 0
    st.loss_sum, st.seen, st.correct, st.entries, st.epoch_rng = 0, 0, 0, {}, nil
  end
  history.steps = self.step
end

-- The resumable position after batch bi of the current epoch.
function Run:save_position(bi, sums)
  local st = self.st
  st.batch, st.step, st.pending, st.skipped_batches = bi, self.step, self.pending, self.history.skipped_batches
  st.loss_sum, st.seen, st.correct = sums.loss_sum, sums.seen, sums.correct
  st.want_acc, st.last_lr = self.want_acc, self.last_lr
  st.sample, st.world_size = self.sample, self.world
end

-- The batches of an epoch, and the running sums it starts from (not zero when resuming
-- inside the epoch: its order then comes from the generator state it started with, and
-- the generator goes on from where the save left it, which mo.load restored).
function Run:epoch_batches(epoch)
  local st = self.st
  local sums = {loss_sum = 0, seen = 0, correct = 0, batches = 0}
  local batches
  self.eloader, self.ebase, self.enb, self.sample = self.loader, 0, self.nb, 0
  if self.resume and st.batch > 0 then
    sums.loss_sum, sums.seen, sums.correct, sums.batches = st.loss_sum, st.seen, st.correct, st.batch
    local now = core.rng_get_state()
    core.rng_set_state(st.epoch_rng)
    if (st.world_size or 1) == self.world then
      batches = self.loader:epoch(st.batch + 1)
      self.sample = st.sample or 0
    else
      batches = self:rest_of_epoch(st)
    end
    core.rng_set_state(now)
  else
    st.epoch, st.batch, st.epoch_rng = epoch, 0, core.rng_get_state()
    batches = self.loader:epoch()
  end
  self.resume = false
  return batches, sums
end

-- Resuming inside an epoch saved at another world size: "the same position"
-- is the same place in the epoch's permutation. The examples after the first st.sample of
-- it (the same permutation, drawn from the saved generator state) are cut into global
-- batches of this run's size, each rank taking its part; their batch numbers go on from
-- st.batch. The rest is gathered once into a data set of its own (a copy of the examples
-- left in this epoch; unshuffled runs use a view).
function Run:rest_of_epoch(st)
  local l, ds = self.loader, self.a.data
  local s, left = st.sample, self.loader.n - st.sample
  local base = st.batch   -- (st.batch moves on as the batches run)
  self.ebase, self.enb, self.sample = base, base, s
  if left == 0 then return function() return nil end end
  local perm = l.shuffle and core.randperm(l.n) or nil
  local rest = {}
  for _, f in ipairs{"x", "y"} do
    local t = ds[f]
    if t ~= nil and perm then
      local shape = t:shape()
      shape[1] = left
      rest[f] = core.empty(shape, {dtype = t.dtype})
      core.gather_rows(rest[f], t, perm, s + 1, left)
    elseif t ~= nil then
      rest[f] = t:narrow(1, s + 1, left)
    end
  end
  self.eloader = data.loader(rest, {batch_size = l.batch_size, shuffle = false, drop_last = l.drop_last,
                                    rank = self.rank, world_size = self.world})
  self.enb = base + self.eloader:num_batches()
  local it = self.eloader:epoch()
  return function()
    local xb, yb, i = it()
    if i then return xb, yb, i + base end
  end
end

-------------------------------------------------------------------------------------------
-- The step

-- A non-finite loss or gradient: raise (naming the step), or with skip_nonfinite drop the
-- `dropped` batches accumulated for this step.
function Run:nonfinite(what, value, epoch, bi, dropped)
  if not self.skip then
    fail("fit: non-finite %s (%s) at epoch %d, batch %d, step %d", what, show(value), epoch, bi, self.step + 1)
  end
  self.opt:zero_grad()
  self.history.skipped_batches = self.history.skipped_batches + dropped
  self.pending = 0
end

-- The autograd path: loss_fn(model, xb, yb) -> a 0-d tensor [, the model's output, for
-- accuracy]; backward of it (seeded with 1/accumulate, and the rank's share) adds into .grad.
local function autograd_loss(fname, lf, model, xb, yb)
  local lt, out = lf(model, xb, yb)
  if not core.is_tensor(lt) or lt:numel() ~= 1 then
    fail("%s: the loss function must return a one-element tensor, got %s", fname, show(lt))
  end
  return lt, out
end

function Run:train_batch_autograd(xb, yb, epoch, bi, sums)
  local lt, out = autograd_loss("fit", self.loss_fn, self.model, xb, yb)
  local loss = lt:item()
  if is_bad(loss) then
    self:nonfinite("loss", loss, epoch, bi, 1)
    return loss
  end
  local g = core.ones_like(lt) * self.inv_k
  if self.world > 1 then self:dist_weight(xb:size(1), g, bi) end
  lt:backward(g)
  self.pending = self.pending + 1
  local b = xb:size(1)
  sums.loss_sum, sums.seen = sums.loss_sum + loss * b, sums.seen + b
  if out ~= nil and self.want_acc == nil then self.want_acc = looks_classification(out, yb) end
  if out ~= nil and self.want_acc then sums.correct = sums.correct + core.count_correct(out:detach(), yb) end
  return loss
end

-- Forward, loss and backward of one batch; returns the loss. The gradient (scaled by
-- 1/accumulate) is added into the parameters' .grad.
function Run:train_batch(xb, yb, epoch, bi, sums)
  if type(self.loss_fn) == "function" then return self:train_batch_autograd(xb, yb, epoch, bi, sums) end
  local out = self.model:forward(xb)
  local loss, g = loss_and_grad(self.loss_fn, out, yb)
  if self.skip and self.world > 1 then loss, g = self:agree_finite(loss, g) end
  if not g then
    self:nonfinite("loss", loss, epoch, bi, 1)
    return loss
  end
  if self.k > 1 then g:mul_(self.inv_k) end
  if self.world > 1 then self:dist_weight(xb:size(1), g, bi) end
  self.model:backward(xb, g, false)  -- false: the input gradient is not needed
  self.pending = self.pending + 1
  local b = xb:size(1)
  sums.loss_sum, sums.seen = sums.loss_sum + loss * b, sums.seen + b
  if self.want_acc == nil then self.want_acc = looks_classification(out, yb) end
  if self.want_acc then sums.correct = sums.correct + core.count_correct(out, yb) end
  return loss
end

-- With skip_nonfinite across ranks: when some rank's loss is not finite every rank skips
-- the batch (a rank alone skipping its backward would leave the others waiting in the
-- gradient reduction). One 1-element all-reduce per batch; a rank whose own loss was finite
-- reports NaN, so every rank's on_step sees the batch skipped.
function Run:agree_finite(loss, g)
  local flag = core.tensor{g and 0 or 1}
  self.a.dist.all_reduce_(flag, "max")
  if flag:get(1) == 0 then return loss, g end
  return g and 0 / 0 or loss, nil
end

-- Across ranks: the loss gradient weighted by this rank's share of the global batch (the
-- model averages over ranks, so an uneven last batch still gives the global mean), and
-- the model told whether this backward ends an accumulated step (only that one
-- communicates).
function Run:dist_weight(b, g, bi)
  local w = b * self.world / self.eloader:global_count(bi - self.ebase)
  if w ~= 1 then g:mul_(w) end
  if has_method(self.model, "set_sync") then self.model:set_sync(self.pending + 1 == self.k or bi == self.enb) end
end

-- The epoch's sums over all ranks (each rank saw its own shard).
function Run:global_sums(sums)
  if self.world == 1 then return sums end
  local t = core.tensor{sums.loss_sum, sums.seen, sums.correct}
  self.a.dist.all_reduce_(t)
  return {loss_sum = t:get(1), seen = math.tointeger(t:get(2)) or t:get(2), correct = t:get(3),
          batches = sums.batches}
end

-- The global gradient norm before clipping; clips when clip_grad_norm is set.
function Run:grad_norm(gs)
  if self.max_norm then return optim.clip_grad_norm(self.params, self.max_norm) end
  return core.norm_many(gs)
end

-- Clips, steps, schedules (when batches are pending). Returns the norm before clipping
-- when clip_grad_norm is set and a step was taken.
function Run:optimizer_step(epoch, bi)
  if self.pending == 0 then return nil end
  local gs = grads_of(self.params)
  if self.pending < self.k then
    -- a short last group: make the gradient the mean over the batches it has
    local fix = self.k / self.pending
    for _, g in ipairs(gs) do g:mul_(fix) end
  end
  -- a sharded optimizer (ZeRO-1) holds local gradients here: it checks the reduced ones
  -- itself, on every rank alike
  local norm = (#gs > 0 and not rawget(self.opt, "_zero")) and self:grad_norm(gs) or 0
  if is_bad(norm) then return self:nonfinite("gradient", norm, epoch, bi, self.pending) end
  self.last_lr = current_lr(self.opt)
  self.opt:step()
  self.opt:zero_grad()
  self.pending, self.step = 0, self.step + 1
  self.history.steps = self.step
  if self.sched and self.per_batch then self.sched:step() end
  return self.max_norm and norm or nil
end

-- on_step(info); false when it asks to stop.
function Run:report_step(epoch, bi, loss, norm, b)
  local on_step = self.a.on_step
  if not on_step then return true end
  local info = self.info
  info.epoch, info.batch, info.step, info.loss, info.lr = epoch, bi, self.step, loss, self.last_lr
  info.grad_norm, info.batch_size, info.skipped, info.state = norm, b, is_bad(loss), self.st
  return on_step(info) ~= false
end

-------------------------------------------------------------------------------------------
-- The epoch

function Run:progress_bar(epoch)
  local show_bar = self.a.progress
  if show_bar == false or self.rank ~= 1 then return nil end  -- with dist: rank 1 only
  local popts = type(show_bar) == "table" and show_bar or {}
  return progress.new{total = self.nb, epoch = epoch, epochs = self.epochs, live = popts.live,
                      every = self.a.progress_every or popts.every, write = popts.write,
                      interval = popts.interval, columns = popts.columns}
end

-- "loss 0.3012  acc 0.8890  eval_loss 0.3311  eval_acc 0.8801  lr 8.54e-04"
local function summary(entry)
  local parts = {string.format("loss %.4f", entry.train_loss)}
  if entry.train_acc then parts[#parts + 1] = string.format("acc %.4f", entry.train_acc) end
  if entry.eval_loss then parts[#parts + 1] = string.format("eval_loss %.4f", entry.eval_loss) end
  if entry.eval_acc then parts[#parts + 1] = string.format("eval_acc %.4f", entry.eval_acc) end
  if entry.lr then parts[#parts + 1] = string.format("lr %.2e", entry.lr) end
  return table.concat(parts, "  ")
end

-- The history entry of a finished epoch, with the evaluation (optimizer in eval mode).
function Run:epoch_entry(epoch, sums, seconds)
  sums = self:global_sums(sums)
  local seen = sums.seen
  local entry = {epoch = epoch, train_loss = seen > 0 and sums.loss_sum / seen or 0 / 0,
                 train_acc = (self.want_acc and seen > 0) and sums.correct / seen or nil,
                 lr = self.last_lr, seconds = seconds, batches = sums.batches, steps = self.step}
  if self.a.eval then
    local e0 = core.clock()
    entry.eval_loss, entry.eval_acc = train.evaluate(self.model, self.loss_fn, self.a.eval,
      {batch_size = self.eval_bs, accuracy = self.a.accuracy})
    entry.eval_seconds = core.clock() - e0
  end
  return entry
end

-- After the last batch: evaluation, the per-epoch schedule, the history, the resumable
-- position, the summary line and on_epoch. A schedule-free optimizer is in eval mode
-- from the evaluation to the end of on_epoch (a checkpoint saved there holds the weights
-- that were evaluated), then back in train mode.
function Run:finish_epoch(epoch, sums, seconds, bar)
  local stopped = self.history.stopped_early
  optimizer_mode(self.opt, "eval")
  local entry = self:epoch_entry(epoch, sums, seconds)
  if self.sched and not self.per_batch then
    if self.sched.needs_metric then self.sched:step(entry.eval_loss or entry.train_loss) else self.sched:step() end
  end
  self:add_entry(entry)
  if not stopped then
    local st = self.st
    st.entries[#st.entries + 1] = copy_entry(entry)
    st.epoch, st.batch, st.epoch_rng = epoch + 1, 0, nil
    self.sample = 0
    self:save_position(0, {loss_sum = 0, seen = 0, correct = 0})
  end
  if bar then bar:finish(summary(entry)) end
  local on_epoch = self.a.on_epoch
  if on_epoch and on_epoch(entry) == false then self.history.stopped_early = true end
  optimizer_mode(self.opt, "train")
end

-- One pass over the data; false when a callback stopped training.
function Run:run_epoch(epoch)
  local bar = self:progress_bar(epoch)
  local t0 = core.clock()
  local batches, sums = self:epoch_batches(epoch)
  for xb, yb, bi in batches do
    local loss = self:train_batch(xb, yb, epoch, bi, sums)
    sums.batches = bi
    self.sample = self.sample + self.eloader:global_count(bi - self.ebase)
    local norm = self.pending == self.k and self:optimizer_step(epoch, bi) or nil
    self:save_position(bi, sums)
    if not self:report_step(epoch, bi, loss, norm, xb:size(1)) then
      self.history.stopped_early = true
      break
    end
    if bar then bar:update(bi, {loss = sums.seen > 0 and sums.loss_sum / sums.seen or loss, lr = self.last_lr}) end
  end
  if not self.history.stopped_early then self:optimizer_step(epoch, sums.batches) end
  self:finish_epoch(epoch, sums, core.clock() - t0, bar)
  return not self.history.stopped_early
end

-------------------------------------------------------------------------------------------
-- Public functions

--- train.fit{...} -> history (see docs/training.md).
local function fit(a)
  local run = new_run(a)
  run:restore()
  if has_method(run.model, "train") then run.model:train() end
  optimizer_mode(run.opt, "train")
  -- a resumed run may hold gradients accumulated before the save (mo.load restores them)
  if run.pending == 0 then run.opt:zero_grad() end
  for epoch = run.resume and run.st.epoch or 1, run.epochs do
    if not run:run_epoch(epoch) then break end
  end
  return run.history
end
train.fit = apierror.api(fit)

--- train.evaluate(model, loss, ds [, {batch_size = 1000, accuracy = auto}]) -> mean loss, accuracy or nil
-- The model runs in evaluation mode (restored to training mode afterwards when it was).
local function evaluate(model, loss_fn, ds, opts)
  opts = apierror.check_options("evaluate", opts, {batch_size = true, accuracy = true})
  local n = check_data(ds, "evaluate")
  local bs = check_int("evaluate", "batch_size", opts.batch_size or 1000, 1)
  local was_training = model.training
  if has_method(model, "evaluate") then model:evaluate() end
  local total, correct, want_acc = 0, 0, opts.accuracy
  local no_grad = require("moonopt.autograd").no_grad
  for xb, yb in data.batches(ds, bs, {shuffle = false}) do
    local out, l
    if type(loss_fn) == "function" then
      local lt
      lt, out = no_grad(autograd_loss, "evaluate", loss_fn, model, xb, yb)
      l = lt:item()
    else
      out = model:forward(xb)
      l = loss_fn:forward(out, yb)
    end
    total = total + l * xb:size(1)
    if out == nil then want_acc = false end
    if want_acc == nil then want_acc = looks_classification(out, yb) end
    if want_acc then correct = correct + core.count_correct(out, yb) end
  end
  if was_training ~= false and has_method(model, "train") then model:train() end
  if n == 0 then return 0 / 0, nil end
  return total / n, want_acc and correct / n or nil
end
train.evaluate = apierror.api(evaluate)

--- train.lr_find{...}: the learning-rate range test (lua/moonopt/lr_find.lua, docs/training.md).
train.lr_find = require "moonopt.lr_find"

return train
