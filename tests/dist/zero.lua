--- tests/dist/zero.lua [optimizer] - run under mpirun by tests/lua/test_dist.lua.
-- ZeRO-1 (shard_state = true) against plain data parallel: the same model, data and
-- seeds, 20 steps of fit each. Every parameter and every element of the gathered state
-- must be bit-identical at any world size: DataParallel's buckets and ZeRO's
-- reduce-scatter both add the ranks' gradients in rank order (lua/dist/dist_core.c).
-- Each rank must hold 1/N of the optimizer state (its dist.shard_range part); LAMB's parts
-- are whole tensors, so the parts must add up to the whole. ScheduleFreeAdamW's eval() and
-- train() (fit calls them at the end of the epoch) run on the shards and gather.
local mo = require "moonopt"
local dist = require "moonopt.dist"
local nn = mo.nn

local r, n = dist.init()
local which = arg[1] or "AdamW"
local opts = ({AdamW = {lr = 1e-2, weight_decay = 1e-2}, SGD = {lr = 0.05, momentum = 0.9, nesterov = true},
               Lion = {lr = 1e-3, weight_decay = 0.1}, RMSprop = {lr = 1e-3, centered = true},
               LAMB = {lr = 1e-2, weight_decay = 1e-2},
               ScheduleFreeAdamW = {lr = 1e-2, warmup_steps = 3, weight_decay = 1e-3}})[which]

mo.manual_seed(3)
local ds = mo.data.spirals{n = 20 * 8 * n}

local function run(shard)
  mo.manual_seed(1)
  local model = nn.Sequential(nn.Linear(2, 31), nn.Tanh(), nn.Linear(31, 17), nn.ReLU(), nn.Linear(17, 3))
  local ddp = dist.DataParallel(model, {bucket_mb = 1 / 4096})   -- 64-element buckets: many
  local o = {shard_state = shard}
  for k, v in pairs(opts) do o[k] = v end
  local opt = mo.optim[which](ddp:parameters(), o)
  mo.manual_seed(11)
  mo.train.fit{model = ddp, loss = nn.CrossEntropyLoss(), optimizer = opt, data = ds, batch_size = 8,
               epochs = 1, progress = false, dist = dist}
  local elems = 0
  for _, st in pairs(opt.state) do
    for _, v in pairs(st) do if mo.is_tensor(v) then elems = elems + v:numel() end end
  end
  -- state_dict gathers a sharded state (a collective): the same layout as the unsharded one
  return ddp:flat_parameters():clone(), elems, model:num_parameters(), opt:state_dict()
end

local plain, full_state, nparams, plain_sd = run(false)
local zero, shard_state, _, zero_sd = run(true)
-- the gathered state: every tensor of every param's state equal, bit for bit
local state_differ, tensors = 0, 0
for idx, st in pairs(plain_sd.state) do
  local zs = assert(zero_sd.state[idx], "no gathered state for param " .. idx)
  for k, v in pairs(st) do
    if mo.is_tensor(v) then
      tensors = tensors + 1
      local x, y = v:view(-1):totable(), zs[k]:view(-1):totable()
      for i = 1, #x do
        if x[i] ~= y[i] then state_differ = state_differ + 1 end
      end
    else
      assert(zs[k] == v, ("state %s: %s vs %s"):format(k, tostring(zs[k]), tostring(v)))
    end
  end
end
assert(tensors > 0, "no state tensors compared")
assert(state_differ == 0, "the gathered state differs in " .. state_differ .. " elements")
local a, b = plain:totable(), zero:totable()
local differ = 0
for i = 1, #a do
  if a[i] ~= b[i] then differ = differ + 1 end
end
local per_elem = full_state / nparams
local ratio = shard_state / full_state
io.write(("rank %d: %s differ %d of %d, state %d of %d floats (%.3fx)\n"):format(r, which, differ, #a,
  shard_state, full_state, ratio))
assert(differ == 0, "ZeRO-1 differs from data parallel in " .. differ .. " elements")
if which == "LAMB" then
  -- whole tensors per rank: the parts add up to the whole state
  local total = dist.all_reduce_(mo.tensor{shard_state}):item()
  assert(total == full_state, ("the parts hold %d of %d state floats"):format(total, full_state))
else
  -- this rank's part: n // N or one more parameter, times the state per parameter
  local _, count = dist.shard_range(nparams)
  assert(shard_state == count * per_elem, "the shard's state is not 1/N of the state")
end
dist.finalize()
io.write(("rank %d: done\n"):format(r))
