-- examples/small_train.lua - a complete small training run in a second: the spirals
-- data set, an MLP with LayerNorm and Dropout, AdamW with a warmup-cosine schedule,
-- mo.train.fit with evaluation, a checkpoint saved mid-run and a resumed run that
-- ends bit-identical to the uninterrupted one.
--
--   lua5.4 examples/small_train.lua [epochs]        (default 8)
--
-- It is also the memory check of a full training run: `make check` runs it under
-- valgrind --leak-check=full (see docs/checkpoints.md, "Memory"), so it touches the
-- whole stack (tensors, nn, optim, sched, data, train, checkpoints) and frees it all.
local mo = require "moonopt"
local nn = mo.nn
local ck = require "moonopt.checkpoint"
local save, load = mo.save or ck.save, mo.load or ck.load

local epochs = tonumber(arg and arg[1]) or 8

local function setup(seed)
  mo.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(2, 64), nn.LayerNorm(64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 3))
  local opt = mo.optim.AdamW(model:parameters(), {lr = 0.05, weight_decay = 1e-2})
  local sched = mo.sched.WarmupCosine(opt, {warmup = 10, total = epochs * 19})
  return model, opt, sched
end

mo.manual_seed(7)
local train, test = mo.data.split(mo.data.spirals{n = 360, classes = 3, noise = 0.15}, 0.8)

local function fit(model, opt, sched, state, on_step)
  return mo.train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched,
                      data = train, eval = test, epochs = epochs, batch_size = 16, progress = false,
                      state = state, on_step = on_step}
end

-- 1. the whole run
local m1, o1, s1 = setup(1)
local h1 = fit(m1, o1, s1, {})

-- 2. the same run, "killed" after epoch 2, batch 5 (the checkpoint is all that survives)
local path = os.tmpname()
local m2, o2, s2 = setup(1)
local state = {}
fit(m2, o2, s2, state, function(info)
  if info.epoch == math.min(2, epochs) and info.batch == 5 then
    save(path, {model = m2, optimizer = o2, scheduler = s2, fit = state, extra = {note = "small_train"}})
    return false
  end
end)

-- 3. a fresh process: other weights, then the checkpoint, then the rest of the run
local m3, o3, s3 = setup(99)
local resumed = {}
local extra = load(path, {model = m3, optimizer = o3, scheduler = s3, fit = resumed})
os.remove(path)
local from = string.format("epoch %d batch %d", resumed.epoch, resumed.batch)
local h3 = fit(m3, o3, s3, resumed)

local same = true
local p1, p3 = m1:parameters(), m3:parameters()
for i = 1, #p1 do
  local a, b = p1[i]:view(-1):totable(), p3[i]:view(-1):totable()
  for j = 1, #a do
    if a[j] ~= b[j] then same = false end
  end
end
for e = 1, #h1 do
  print(string.format("epoch %d  train_loss %.4f  eval_acc %.3f  lr %.2e", e, h1[e].train_loss, h1[e].eval_acc,
                      h1[e].lr))
end
print(string.format("resumed after %s (%s): final eval_acc %.3f, weights %s", from, extra.note,
                    h3[#h3].eval_acc, same and "bit-identical to the uninterrupted run" or "DIFFERENT"))
if not same then os.exit(1) end
