--- tests/dist/resume.lua save|resume DIR SAVED_AT [ACCUMULATE] - run under mpirun by
-- tests/lua/test_dist.lua.
-- fit's mid-epoch position at another world size (docs/distributed.md "Checkpoints").
--   save   (N ranks): fit{state = st} with ZeRO-1 AdamW, batch 8 per rank; at epoch 1,
--          batch 5, dist.save(DIR/mid.ckpt, {model, optimizer, fit = st}) and stop.
--   resume (M ranks; SAVED_AT = N): dist.load it and fit on to the end of epoch 2.
-- "The same position" is the same place in the epoch's permutation: the save came after
-- s = 5 * 8N examples of it, so the resumed run takes examples s+1..n of the SAME
-- permutation in global batches of 8M (a last one smaller than M dropped), then epoch 2
-- draws a new permutation from the restored generator. Every rank checks this against a
-- single-process reference built from that definition by hand: fit over the permutation's
-- first s examples at batch 8N and over the rest at batch 8M (both unshuffled), then a
-- shuffled epoch at 8M. Parameters agree to rtol 1e-5 (atol 1e-6: the ranks' sums run in
-- another order), and so do epoch 1's loss (the sums of the save are added over ranks)
-- and the number of optimizer steps. With ACCUMULATE = 2 the save falls inside a step
-- (batch 5 of a pair): its local gradients go into the checkpoint as their mean over
-- ranks, and the step is finished at the new world size by the first batch after the
-- position (the reference does that step by hand).
local mo = require "moonopt"
local dist = require "moonopt.dist"
local nn = mo.nn
local core = require "moonopt.core"

local r, m = dist.init()
local mode, dir, saved_at = arg[1], arg[2], math.tointeger(tonumber(arg[3] or "0"))
local k = math.tointeger(tonumber(arg[4] or "1"))
assert((mode == "save" or mode == "resume") and dir, "usage: resume.lua save|resume DIR [N]")
local B, at_batch, n_ex = 8, 5, 200

mo.manual_seed(7)
local ds = mo.data.spirals{n = n_ex}   -- 200 examples (spirals rounds to a multiple of 3)
local n = ds.x:size(1)

local function model_and_opt(shard)
  mo.manual_seed(1)
  local model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
  local o = {lr = 1e-2, weight_decay = 1e-2, shard_state = shard}
  return model, mo.optim.AdamW(model:parameters(), o)
end

local function fit(model, opt, data, bs, extra)
  local a = {model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, data = data, batch_size = bs,
             epochs = 1, progress = false, accumulate = k}
  for key, v in pairs(extra or {}) do a[key] = v end
  return mo.train.fit(a)
end

if mode == "save" then
  local model, opt = model_and_opt(true)
  local ddp = dist.DataParallel(model)
  local st = {}
  mo.manual_seed(11)
  fit(ddp, opt, ds, B, {epochs = 2, dist = dist, state = st, on_step = function(info)
    assert(info.batch ~= at_batch or st.pending == k - 1, "the save must fall inside a step")
    if info.epoch == 1 and info.batch == at_batch then
      dist.save(dir .. "/mid.ckpt", {model = model, optimizer = opt, fit = info.state})
      return false
    end
  end})
  io.write(("rank %d: saved at %d ranks after %d examples\n"):format(r, m, st.sample))
  dist.finalize()
  io.write(("rank %d: done\n"):format(r))
  return
end

-- resume at m ranks
local model, opt = model_and_opt(true)
mo.manual_seed(99)
for _, p in ipairs(model:parameters()) do p:uniform_(-1, 1) end   -- the checkpoint must replace these
local ddp = dist.DataParallel(model)
local st = {}
dist.load(dir .. "/mid.ckpt", {model = model, optimizer = opt, fit = st})
local s = st.sample
assert(s == at_batch * B * saved_at, "the saved position is " .. tostring(s))
local h = fit(ddp, opt, ds, B, {epochs = 2, dist = dist, state = st})

-- the reference, one process, from the definition above
local ref, ref_opt = model_and_opt(false)
mo.manual_seed(11)
local perm = core.randperm(n)          -- epoch 1's permutation (fit draws it at the epoch start)
local function rows(from, count)
  local x, y = mo.empty({count, 2}), mo.empty({count}, {dtype = ds.y.dtype})
  core.gather_rows(x, ds.x, perm, from, count)
  core.gather_rows(y, ds.y, perm, from, count)
  return {x = x, y = y}
end
local rest = n - s
if rest % (B * m) > 0 and rest % (B * m) < m then rest = rest - rest % (B * m) end   -- the dropped tail
local G, G2 = B * saved_at, B * m
local want_steps, loss1
if k == 1 then
  local h_a = fit(ref, ref_opt, rows(1, s), G, {shuffle = false})
  local h_b = fit(ref, ref_opt, rows(s + 1, rest), G2, {shuffle = false})
  want_steps = h_a.steps + h_b.steps
  loss1 = (h_a.train_loss[1] * s + h_b.train_loss[1] * rest) / (s + rest)
else  -- k == 2: batches 1-4 are two steps, batch 5 and the first batch after it the third
  local h_a = fit(ref, ref_opt, rows(1, s - G), G, {shuffle = false})
  local loss_fn, sum = nn.CrossEntropyLoss(), 0
  for _, part in ipairs{rows(s - G + 1, G), rows(s + 1, G2)} do
    local out = ref:forward(part.x)
    sum = sum + loss_fn:forward(out, part.y) * part.x:size(1)
    ref:backward(part.x, loss_fn:backward(out, part.y):mul_(0.5), false)
  end
  ref_opt:step()
  ref_opt:zero_grad()
  local h_b = fit(ref, ref_opt, rows(s + G2 + 1, rest - G2), G2, {shuffle = false})
  want_steps = h_a.steps + 1 + h_b.steps
  loss1 = (h_a.train_loss[1] * (s - G) + sum + h_b.train_loss[1] * (rest - G2)) / (s + rest)
end
local h_c = fit(ref, ref_opt, ds, G2)    -- epoch 2 draws from the generator as the resumed run did
want_steps = want_steps + h_c.steps
assert(h.steps == want_steps, ("steps %d, want %d"):format(h.steps, want_steps))
assert(math.abs(h.train_loss[1] - loss1) <= 1e-5 * math.abs(loss1),
       ("epoch 1 loss %.7f, want %.7f"):format(h.train_loss[1], loss1))
local a, b = ref:flat_parameters():totable(), model:flat_parameters():totable()
local worst = 0
for i = 1, #a do
  worst = math.max(worst, math.abs(a[i] - b[i]) / (1e-6 + 1e-5 * math.abs(a[i])))
end
assert(worst <= 1, "the resumed run differs from the reference: " .. worst)
io.write(("rank %d: resumed at %d ranks from %d after %d examples, %d steps, allclose_ratio %.3g\n"):format(
  r, m, saved_at, s, h.steps, worst))
dist.finalize()
io.write(("rank %d: done\n"):format(r))
