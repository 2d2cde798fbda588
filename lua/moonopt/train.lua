--- mo.train: the training loop.
--
--   local history = mo.train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt,
--                                scheduler = sched, data = train, eval = test,
--                                epochs = 10, batch_size = 128}
--   print(history.eval_acc[#history.eval_acc])
--
-- One step: out = model:forward(xb); loss = loss:forward(out, yb);
-- model:backward(xb, loss:backward(out, yb)) accumulates gradients; every
-- `accumulate` batches: clip, optimizer:step(), optimizer:zero_grad(), and the
-- scheduler steps (schedule_per = "batch": after every optimizer step;
-- "epoch": once per epoch). See docs/training.md for every option.
--
-- Resuming: with `state = tbl`, fit keeps its position in tbl (plain values: epoch,
-- batch, step, running sums, the generator state at the start of the epoch, the
-- history so far) after every batch and every epoch. mo.save(path, {..., fit = tbl})
-- stores it and mo.load(path, {..., fit = tbl}) restores it; fit{..., state = tbl}
-- then continues from that point (the same epoch order, the same batches) and the run
-- is bit-identical to one that was never interrupted. See docs/checkpoints.md.
local core = require "moonopt.core"
local data = require "moonopt.data"
local progress = require "moonopt.progress"

local train = {}

local known = {
  model = true, loss = true, optimizer = true, scheduler = true, data = true, epochs = true,
  batch_size = true, accumulate = true, clip_grad_norm = true, schedule_per = true, eval = true,
  eval_batch_size = true, on_step = true, on_epoch = true, progress = true, progress_every = true,
  skip_nonfinite = true, shuffle = true, drop_last = true, accuracy = true, state = true,
}

-- Errors of the argument checks: fail <- check_args/check_int <- fit <- the caller (level 4).
local function fail(fmt, ...)
  error(string.format(fmt, ...), 4)
end

local function check_int(name, v, lo)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v) and v == v
                                        and math.abs(v) < 2^53) then
    fail("fit: %s must be an integer, got %s", name, tostring(v))
  end
  v = math.tointeger(v)
  if v < lo then fail("fit: %s must be an integer >= %d, got %d", name, lo, v) end
  return v
end

local function has_method(obj, name)
  local ok, f = pcall(function() return obj[name] end)
  return ok and type(f) == "function"
end

local function check_args(a)
  if type(a) ~= "table" then fail("fit: expected one table of options, got %s", type(a)) end
  for k in pairs(a) do
    if not known[k] then fail("fit: unknown option '%s'", tostring(k)) end
  end
  for _, m in ipairs{"forward", "backward", "parameters"} do
    if a.model == nil or not has_method(a.model, m) then fail("fit: model must have a %s method", m) end
  end
  for _, m in ipairs{"forward", "backward"} do
    if a.loss == nil or not has_method(a.loss, m) then fail("fit: loss must have a %s method", m) end
  end
  for _, m in ipairs{"step", "zero_grad"} do
    if a.optimizer == nil or not has_method(a.optimizer, m) then fail("fit: optimizer must have a %s method", m) end
  end
  if a.scheduler ~= nil and not has_method(a.scheduler, "step") then fail("fit: scheduler must have a step method") end
  if a.data == nil then fail("fit: data (a data set {x =, y =}) is required") end
  for _, field in ipairs{"data", "eval"} do
    if a[field] ~= nil then
      local ok, msg = pcall(data.check, a[field], field == "data" and "fit" or "fit (eval)")
      if not ok then fail("%s", (tostring(msg):gsub("^[%w_%./%-]+%.lua:%d+: ", "", 1))) end
    end
  end
  local per = a.schedule_per or "batch"
  if per ~= "batch" and per ~= "epoch" then
    fail("fit: schedule_per must be \"batch\" or \"epoch\", got %s", tostring(a.schedule_per))
  end
  local c = a.clip_grad_norm
  if c ~= nil and (type(c) ~= "number" or c ~= c or c <= 0 or c == math.huge) then
    fail("fit: clip_grad_norm must be a positive finite number, got %s", tostring(a.clip_grad_norm))
  end
  for _, f in ipairs{"on_step", "on_epoch"} do
    if a[f] ~= nil and type(a[f]) ~= "function" then fail("fit: %s must be a function, got %s", f, type(a[f])) end
  end
  local p = a.progress
  if p ~= nil and type(p) ~= "boolean" and type(p) ~= "table" then
    fail("fit: progress must be a boolean or a table of progress options, got %s", type(p))
  end
  if a.state ~= nil and type(a.state) ~= "table" then
    fail("fit: state must be a table, got %s", type(a.state))
  end
end

local function is_bad(x)
  return x ~= x or x == math.huge or x == -math.huge
end

-- "nan", "inf", "-inf" (tostring gives "-nan" or "nan" depending on the platform).
local function bad_str(x)
  if x ~= x then return "nan" end
  return x > 0 and "inf" or "-inf"
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

--- train.clip_grad_norm(params, max_norm) -> the total norm before clipping.
-- Scales every gradient by max_norm / (norm + 1e-6) when the global L2 norm exceeds
-- max_norm (PyTorch's clip_grad_norm_).
function train.clip_grad_norm(params, max_norm)
  local gs = grads_of(params)
  if #gs == 0 then return 0 end
  local norm = core.norm_many(gs)
  if norm > max_norm then
    local scale = max_norm / (norm + 1e-6)
    for i = 1, #gs do gs[i]:mul_(scale) end
  end
  return norm
end

-- Whether out/y look like classification with class numbers: out {B, C>1}, y {B}.
local function looks_classification(out, y)
  return y ~= nil and out:dim() == 2 and out:size(2) > 1 and y:dim() == 1
end

--- train.evaluate(model, loss, ds [, {batch_size = 1000, accuracy = auto}]) -> mean loss, accuracy or nil
-- The model runs in evaluation mode (restored to training mode afterwards when it was).
function train.evaluate(model, loss_fn, ds, opts)
  opts = opts or {}
  local n = data.check(ds, "evaluate")
  local bs = opts.batch_size or 1000
  local was_training = model.training
  if has_method(model, "evaluate") then model:evaluate() end
  local total, correct, want_acc = 0, 0, opts.accuracy
  for xb, yb in data.batches(ds, bs, {shuffle = false}) do
    local out = model:forward(xb)
    local b = xb:size(1)
    total = total + loss_fn:forward(out, yb) * b
    if want_acc == nil then want_acc = looks_classification(out, yb) end
    if want_acc then correct = correct + core.count_correct(out, yb) end
  end
  if was_training ~= false and has_method(model, "train") then model:train() end
  if n == 0 then return 0 / 0, nil end
  return total / n, want_acc and correct / n or nil
end

-- Columns of the history: one list per field, one value per epoch.
local columns = {"train_loss", "train_acc", "eval_loss", "eval_acc", "lr", "seconds", "eval_seconds"}

local STATE_VERSION = 1

-- A resume state must describe a run of the same data layout; errors name the field.
local function check_state(st, n, nb, bs, k)
  -- errors: bad <- check_state <- fit <- the caller (level 4)
  local function bad(fmt, ...) error(string.format("fit: state: " .. fmt, ...), 4) end
  if st.version ~= STATE_VERSION then bad("unknown version %s", tostring(st.version)) end
  for _, key in ipairs{"epoch", "batch", "step", "pending", "seen", "correct", "skipped_batches"} do
    local v = st[key]
    if math.type(v) ~= "integer" or v < 0 then
      bad("%s must be a non-negative integer, got %s", key, tostring(v))
    end
  end
  if st.epoch < 1 then bad("epoch must be >= 1, got %d", st.epoch) end
  if type(st.loss_sum) ~= "number" then bad("loss_sum must be a number, got %s", type(st.loss_sum)) end
  if st.batch_size ~= bs or st.accumulate ~= k then
    bad("the run used batch_size %s and accumulate %s, this call %d and %d", tostring(st.batch_size),
        tostring(st.accumulate), bs, k)
  end
  if st.n ~= n or st.num_batches ~= nb then
    bad("the run had %s examples in %s batches per epoch, this data gives %d in %d", tostring(st.n),
        tostring(st.num_batches), n, nb)
  end
  if st.batch > nb then bad("batch %d is past the %d batches of an epoch", st.batch, nb) end
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

--- train.fit{...} -> history (see docs/training.md).
function train.fit(a)
  check_args(a)
  local model, loss_fn, opt, sched, ds = a.model, a.loss, a.optimizer, a.scheduler, a.data
  local epochs = check_int("epochs", a.epochs or 1, 0)
  local bs = check_int("batch_size", a.batch_size or 32, 1)
  local k = check_int("accumulate", a.accumulate or 1, 1)
  local eval_bs = check_int("eval_batch_size", a.eval_batch_size or math.max(bs, 1000), 1)
  local max_norm = a.clip_grad_norm
  local per_batch = (a.schedule_per or "batch") == "batch" and not (sched and sched.needs_metric)
  local on_step, on_epoch, skip = a.on_step, a.on_epoch, a.skip_nonfinite
  local inv_k = 1 / k
  local params = model:parameters()
  local loader = data.loader(ds, {batch_size = bs, shuffle = a.shuffle ~= false, drop_last = a.drop_last})
  local nb = loader:num_batches()
  local st = a.state or {}
  local resume = st.epoch ~= nil
  if resume then check_state(st, loader.n, nb, bs, k) end

  local show = a.progress
  if show == nil then show = true end
  local popts = type(show) == "table" and show or {}
  local pevery = a.progress_every

  local history = {steps = 0, skipped_batches = 0, stopped_early = false}
  for _, c in ipairs(columns) do history[c] = {} end
  local function add_entry(entry)
    history[#history + 1] = entry
    for _, c in ipairs(columns) do
      local col = history[c]
      col[#col + 1] = entry[c] == nil and (0 / 0) or entry[c]
    end
  end

  -- one info table for every on_step call: valid during the call only
  local info = {}
  local step = 0            -- optimizer steps taken
  local pending = 0         -- batches accumulated since the last optimizer step
  local want_acc = a.accuracy
  local last_lr = current_lr(opt)  -- the learning rate of the latest optimizer step
  if resume then
    step, pending, last_lr = st.step, st.pending, st.last_lr
    if want_acc == nil then want_acc = st.want_acc end
    history.skipped_batches = st.skipped_batches
    for _, e in ipairs(st.entries) do add_entry(copy_entry(e)) end
  else
    st.version, st.n, st.num_batches, st.batch_size, st.accumulate = STATE_VERSION, loader.n, nb, bs, k
    st.epoch, st.batch, st.step, st.pending, st.skipped_batches = 1, 0, 0, 0, 0
    st.loss_sum, st.seen, st.correct, st.entries, st.epoch_rng = 0, 0, 0, {}, nil
  end
  history.steps = step

  if has_method(model, "train") then model:train() end
  -- a resumed run may hold gradients accumulated before the save (mo.load restores them)
  if pending == 0 then opt:zero_grad() end

  -- Clips, steps, schedules. A non-finite gradient raises (naming the step), or with
  -- skip_nonfinite drops the step and the batches accumulated for it.
  local function optimizer_step(epoch, bi)
    if pending == 0 then return end
    local gs = grads_of(params)
    if pending < k then
      -- a short last group: make the gradient the mean over the batches it has
      local fix = k / pending
      for _, g in ipairs(gs) do g:mul_(fix) end
    end
    local norm
    if #gs > 0 then
      local total = core.norm_many(gs)
      if is_bad(total) then
        if not skip then
          error(string.format("fit: non-finite gradient (%s) at epoch %d, batch %d, step %d", bad_str(total),
            epoch, bi, step + 1), 3)
        end
        opt:zero_grad()
        history.skipped_batches = history.skipped_batches + pending
        pending = 0
        return nil
      end
      if max_norm then
        norm = total
        if total > max_norm then
          local scale = max_norm / (total + 1e-6)
          for i = 1, #gs do gs[i]:mul_(scale) end
        end
      end
    end
    last_lr = current_lr(opt)
    opt:step()
    opt:zero_grad()
    pending = 0
    step = step + 1
    history.steps = step
    if sched and per_batch then sched:step() end
    return norm, epoch
  end

  for epoch = resume and st.epoch or 1, epochs do
    local t0 = core.clock()
    local bar
    if show then
      bar = progress.new{total = nb, epoch = epoch, epochs = epochs, live = popts.live,
                         every = pevery or popts.every, write = popts.write, interval = popts.interval}
    end
    local loss_sum, seen, correct, batches = 0, 0, 0, 0
    local batches_iter
    if resume and st.batch > 0 then
      -- the interrupted epoch: its order comes from the generator state it started
      -- with; the generator then goes on from where the save left it (mo.load set it)
      loss_sum, seen, correct, batches = st.loss_sum, st.seen, st.correct, st.batch
      local now = core.rng_get_state()
      core.rng_set_state(st.epoch_rng)
      batches_iter = loader:epoch(st.batch + 1)
      core.rng_set_state(now)
    else
      st.epoch, st.batch, st.epoch_rng = epoch, 0, core.rng_get_state()
      batches_iter = loader:epoch()
    end
    resume = false
    for xb, yb, bi in batches_iter do
      local out = model:forward(xb)
      local loss = loss_fn:forward(out, yb)
      local b = xb:size(1)
      if is_bad(loss) then
        if not skip then
          error(string.format("fit: non-finite loss (%s) at epoch %d, batch %d, step %d", bad_str(loss), epoch, bi,
            step + 1), 2)
        end
        -- drop this batch and whatever was accumulated with it
        opt:zero_grad()
        pending = 0
        history.skipped_batches = history.skipped_batches + 1
      else
        local g = loss_fn:backward(out, yb)
        if k > 1 then g:mul_(inv_k) end
        model:backward(xb, g, false)  -- false: the input gradient is not needed
        pending = pending + 1
        loss_sum = loss_sum + loss * b
        seen = seen + b
        if want_acc == nil then want_acc = looks_classification(out, yb) end
        if want_acc then correct = correct + core.count_correct(out, yb) end
      end
      batches = bi
      local norm
      if pending == k then norm = optimizer_step(epoch, bi) end
      -- the resumable position: after batch bi
      st.batch, st.step, st.pending, st.skipped_batches = bi, step, pending, history.skipped_batches
      st.loss_sum, st.seen, st.correct, st.want_acc, st.last_lr = loss_sum, seen, correct, want_acc, last_lr
      if on_step then
        info.epoch, info.batch, info.step, info.loss, info.lr = epoch, bi, step, loss, last_lr
        info.grad_norm, info.batch_size, info.skipped, info.state = norm, b, is_bad(loss), st
        if on_step(info) == false then history.stopped_early = true break end
      end
      if bar then bar:update(bi, {loss = seen > 0 and loss_sum / seen or loss, lr = last_lr}) end
    end
    if not history.stopped_early then optimizer_step(epoch, batches) end
    local seconds = core.clock() - t0

    local entry = {epoch = epoch, train_loss = seen > 0 and loss_sum / seen or 0 / 0,
                   train_acc = (want_acc and seen > 0) and correct / seen or nil,
                   lr = last_lr, seconds = seconds, batches = batches, steps = step}
    if a.eval then
      local e0 = core.clock()
      entry.eval_loss, entry.eval_acc = train.evaluate(model, loss_fn, a.eval,
        {batch_size = eval_bs, accuracy = a.accuracy})
      entry.eval_seconds = core.clock() - e0
    end
    if sched and not per_batch then
      if sched.needs_metric then
        sched:step(entry.eval_loss or entry.train_loss)
      else
        sched:step()
      end
    end
    add_entry(entry)
    if not history.stopped_early then
      -- the resumable position: the epoch is complete
      st.entries[#st.entries + 1] = copy_entry(entry)
      st.epoch, st.batch, st.epoch_rng, st.step, st.pending = epoch + 1, 0, nil, step, pending
      st.loss_sum, st.seen, st.correct, st.want_acc, st.last_lr = 0, 0, 0, want_acc, last_lr
      st.skipped_batches = history.skipped_batches
    end
    if bar then
      local parts = {string.format("loss %.4f", entry.train_loss)}
      if entry.train_acc then parts[#parts + 1] = string.format("acc %.4f", entry.train_acc) end
      if entry.eval_loss then parts[#parts + 1] = string.format("eval_loss %.4f", entry.eval_loss) end
      if entry.eval_acc then parts[#parts + 1] = string.format("eval_acc %.4f", entry.eval_acc) end
      if entry.lr then parts[#parts + 1] = string.format("lr %.2e", entry.lr) end
      bar:finish(table.concat(parts, "  "))
    end
    if on_epoch and on_epoch(entry) == false then history.stopped_early = true end
    if history.stopped_early then break end
  end
  return history
end

return train
