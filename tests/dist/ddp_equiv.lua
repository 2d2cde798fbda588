--- tests/dist/ddp_equiv.lua [accumulate [unordered]] - run under mpirun by tests/lua/test_dist.lua.
-- Data parallel at N ranks x batch B must equal one process at batch N * B: every rank
-- first trains the single-process reference itself (no communication), then the same
-- model with dist.DataParallel and fit{dist = dist}, 30 optimizer steps each, and compares
-- every parameter (rtol 1e-5). With an accumulate argument, both runs accumulate that
-- many micro-batches per step (the reference at micro-batch N * B). With "unordered",
-- DataParallel uses MPI_Iallreduce (ordered = false) instead of the rank-order sum.
local mo = require "moonopt"
local dist = require "moonopt.dist"
local nn = mo.nn

local r, n = dist.init()
local k = math.tointeger(tonumber(arg[1] or "1"))
local B, steps = 8, 30

mo.manual_seed(7)
-- 30 steps of N * B * k examples, and 3 more: a last, unevenly split batch
local ds = mo.data.spirals{n = steps * k * B * n + 3}
local function model_and_opt(seed)
  mo.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
  return model, mo.optim.AdamW(model:parameters(), {lr = 1e-2, weight_decay = 1e-2})
end

-- the reference: one process, batch N * B, the same seed for the shuffle
local ref, ref_opt = model_and_opt(1)
mo.manual_seed(11)
local h1 = mo.train.fit{model = ref, loss = nn.CrossEntropyLoss(), optimizer = ref_opt, data = ds,
                        batch_size = n * B, accumulate = k, epochs = 1, progress = false}

-- data parallel: every rank starts from its own weights (seed r); rank 1's, which are the
-- reference's, must reach every rank
local model = model_and_opt(r)
local ddp = dist.DataParallel(model, {bucket_mb = 1 / 1024,     -- 256-element buckets: several
                                     ordered = arg[2] ~= "unordered"})
local opt = mo.optim.AdamW(ddp:parameters(), {lr = 1e-2, weight_decay = 1e-2})
mo.manual_seed(11)
local h2 = mo.train.fit{model = ddp, loss = nn.CrossEntropyLoss(), optimizer = opt, data = ds,
                        batch_size = B, accumulate = k, epochs = 1, progress = false, dist = dist}
assert(h1.steps == h2.steps, ("steps %d vs %d"):format(h1.steps, h2.steps))
assert(h2.steps >= steps, "fewer than 30 steps: " .. h2.steps)
-- accumulation communicates once per optimizer step, after the last micro-batch
assert(ddp.reductions == h2.steps, ("%d reductions for %d steps"):format(ddp.reductions, h2.steps))

local fp1 = ref:flat_parameters()
local fp2 = ddp:flat_parameters()
local a, b = fp1:totable(), fp2:totable()
-- allclose(rtol 1e-5, atol 1e-6): the sums run in another order (a mean of N means of B
-- instead of one mean of N * B), so float32 rounding differs in the last bits; measured
-- worst difference after 31 AdamW steps: 1.3e-7 on weights of size about 0.1 to 1
local worst = 0
for i = 1, #a do
  local excess = math.abs(a[i] - b[i]) / (1e-6 + 1e-5 * math.abs(a[i]))
  if excess > worst then worst = excess end
end
-- the ranks hold the same weights
local mx = fp2:clone()
dist.all_reduce_(mx, "max")
local mn = fp2:clone()
dist.all_reduce_(mn, "min")
local spread = mx:sub(mn):abs():max():item()
local loss_gap = math.abs(h1.train_loss[1] - h2.train_loss[1])
io.write(("rank %d: steps %d overlaps %s allclose_ratio %.3g spread %g loss %.6f vs %.6f\n"):format(
  r, h2.steps, tostring(ddp.overlaps), worst, spread, h1.train_loss[1], h2.train_loss[1]))
assert(worst <= 1, "data parallel differs from the single-process run: " .. worst)
assert(spread == 0, "ranks differ")
assert(loss_gap <= 1e-5 * math.abs(h1.train_loss[1]), "epoch loss differs")
dist.finalize()
io.write(("rank %d: done\n"):format(r))
