--- tests/dist/skip.lua - run under mpirun (-np 2 or 3) by tests/lua/test_dist.lua.
-- fit{skip_nonfinite = true, dist = dist} when ONE rank's loss is NaN: every rank must skip
-- that global batch together (no rank waiting in the gradient reduction of a backward
-- another rank skipped), count it once, and end equal to one process at the global batch
-- whose loss is NaN at the same batch (rtol 1e-5, atol 1e-6: the sums run in another
-- order). The last rank injects the NaN at its 6th batch; with accumulate = 2, the 5th
-- batch's local gradient, accumulated for the same step, is dropped with it on every rank.
local mo = require "moonopt"
local dist = require "moonopt.dist"
local nn = mo.nn

local r, n = dist.init()
local k = math.tointeger(tonumber(arg[1] or "1"))
local B, bad_batch = 8, 6

-- CrossEntropyLoss whose forward gives NaN at call `at` (never when at is nil)
local function nan_loss(at)
  local inner, calls = nn.CrossEntropyLoss(), 0
  return {
    forward = function(_, out, y)
      calls = calls + 1
      if calls == at then return 0 / 0 end
      return inner:forward(out, y)
    end,
    backward = function(_, out, y) return inner:backward(out, y) end,
  }
end

mo.manual_seed(7)
local ds = mo.data.spirals{n = 12 * B * n}
local function model_and_opt()
  mo.manual_seed(1)
  local model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
  return model, mo.optim.AdamW(model:parameters(), {lr = 1e-2})
end

local ref, ref_opt = model_and_opt()
mo.manual_seed(11)
local h1 = mo.train.fit{model = ref, loss = nan_loss(bad_batch), optimizer = ref_opt, data = ds,
                        batch_size = n * B, accumulate = k, epochs = 1, progress = false,
                        skip_nonfinite = true}

local model, opt = model_and_opt()
local ddp = dist.DataParallel(model)
local skipped_seen = 0
mo.manual_seed(11)
local h2 = mo.train.fit{model = ddp, loss = nan_loss(r == n and bad_batch or nil), optimizer = opt,
                        data = ds, batch_size = B, accumulate = k, epochs = 1, progress = false,
                        skip_nonfinite = true, dist = dist,
                        on_step = function(info) if info.skipped then skipped_seen = skipped_seen + 1 end end}
assert(h1.skipped_batches == 1, "reference skipped " .. h1.skipped_batches)
assert(h2.skipped_batches == h1.skipped_batches,
       ("skipped %d batches, the reference %d"):format(h2.skipped_batches, h1.skipped_batches))
assert(skipped_seen == 1, "on_step saw " .. skipped_seen .. " skipped batches")
assert(h2.steps == h1.steps, ("steps %d vs %d"):format(h2.steps, h1.steps))

local a, b = ref:flat_parameters():totable(), ddp:flat_parameters():totable()
for i = 1, #a do
  assert(math.abs(a[i] - b[i]) <= 1e-6 + 1e-5 * math.abs(a[i]),
         ("parameter %d: %s vs %s"):format(i, b[i], a[i]))
end
local fp = ddp:flat_parameters()
local mx, mn = dist.all_reduce_(fp:clone(), "max"), dist.all_reduce_(fp:clone(), "min")
assert(mx:sub(mn):abs():max():item() == 0, "ranks differ")
io.write(("rank %d: skipped %d batch(es) with the others, %d steps\n"):format(r, h2.skipped_batches, h2.steps))
dist.finalize()
io.write(("rank %d: done\n"):format(r))
