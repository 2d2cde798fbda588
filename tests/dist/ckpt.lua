--- tests/dist/ckpt.lua save|resume DIR - run under mpirun by tests/lua/test_dist.lua.
-- Collective checkpoints of a ZeRO-1 run, resumed at another world size:
--   save   (2 ranks): 10 steps, dist.save(DIR/a.ckpt), 10 more steps; rank 1 writes the
--          final parameters to DIR/final.st;
--   resume (1 or 3 ranks): dist.load(DIR/a.ckpt) re-shards the state, dist.save(DIR/b.ckpt)
--          gathers it again: every tensor of b.ckpt must equal a.ckpt's bit for bit; then
--          the same 10 steps must reach final.st's parameters (rtol 1e-5, atol 1e-6: the
--          ranks' gradients are added in another order at another world size).
-- Each step's global batch is the same 24 examples at any world size (rank r takes part r).
local mo = require "moonopt"
local dist = require "moonopt.dist"
local nn = mo.nn

local r, n = dist.init()
local mode, dir = arg[1], arg[2]
assert((mode == "save" or mode == "resume") and dir, "usage: ckpt.lua save|resume DIR")

mo.manual_seed(5)
local ds = mo.data.spirals{n = 24 * 20}
local model = nn.Sequential(nn.Linear(2, 31), nn.Tanh(), nn.Linear(31, 3))
local ddp = dist.DataParallel(model)
local opt = mo.optim.AdamW(ddp:parameters(), {lr = 1e-2, weight_decay = 1e-2, shard_state = true})
local loss_fn = nn.CrossEntropyLoss()

local function steps(from, to)
  local first, count = dist.shard_range(24)
  for i = from, to do
    local row = (i - 1) * 24 + first
    local xb, yb = ds.x:narrow(1, row, count), ds.y:narrow(1, row, count)
    local out = ddp:forward(xb)
    loss_fn:forward(out, yb)
    local g = loss_fn:backward(out, yb):mul_(count * n / 24)   -- this rank's share of the batch
    ddp:backward(xb, g, false)
    opt:step()
    opt:zero_grad()
  end
end

local function same_files(a, b)
  local ta, tb = mo.load_tensors(a), mo.load_tensors(b)
  local count = 0
  for k, t in pairs(ta) do
    assert(tb[k], "missing " .. k)
    local x, y = t:view(-1):totable(), tb[k]:view(-1):totable()
    for i = 1, #x do assert(x[i] == y[i], ("%s element %d: %s vs %s"):format(k, i, x[i], y[i])) end
    count = count + 1
  end
  for k in pairs(tb) do assert(ta[k], "extra " .. k) end
  return count
end

if mode == "save" then
  steps(1, 10)
  dist.save(dir .. "/a.ckpt", {model = model, optimizer = opt})
  steps(11, 20)
  if r == 1 then mo.save_tensors(dir .. "/final.st", {p = ddp:flat_parameters()}) end
else
  mo.manual_seed(99)   -- other initial weights: the checkpoint must replace them
  for _, p in ipairs(model:parameters()) do p:uniform_(-1, 1) end
  dist.load(dir .. "/a.ckpt", {model = model, optimizer = opt})
  local b = dir .. "/b" .. n .. ".ckpt"
  dist.save(b, {model = model, optimizer = opt})
  if r == 1 then
    local k = same_files(dir .. "/a.ckpt", b)
    io.write(("rank 1: %d tensors gathered again bit for bit at %d ranks\n"):format(k, n))
  end
  steps(11, 20)
  local want = mo.load_tensors(dir .. "/final.st").p:totable()
  local got = ddp:flat_parameters():totable()
  local bits = 0
  for i = 1, #want do
    assert(math.abs(want[i] - got[i]) <= 1e-6 + 1e-5 * math.abs(want[i]),
           ("parameter %d: %s vs %s"):format(i, got[i], want[i]))
    if want[i] ~= got[i] then bits = bits + 1 end
  end
  io.write(("rank %d: resumed at %d ranks, %d of %d parameters differ in the last bits\n"):format(
    r, n, bits, #want))
end
dist.finalize()
io.write(("rank %d: done\n"):format(r))
