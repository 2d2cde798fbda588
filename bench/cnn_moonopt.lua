--- bench/cnn_moonopt.lua - moonopt's side of bench/cnn_bench.sh: the issue's CNN
-- (Conv2d(1,32,3,p1) ReLU MaxPool2d(2) Conv2d(32,64,3,p1) ReLU MaxPool2d(2) Flatten
-- Linear(3136,128) ReLU Linear(128,10)), batch 128, AdamW (lr 1e-3), CrossEntropyLoss, on
-- synthetic data of Fashion-MNIST's shape; per rep, `batches` training steps (shuffled
-- gather, forward, loss, backward without the input gradient, step, zero_grad).
-- Prints "cnn_batch_moonopt <median seconds per batch over reps>".
--
-- usage: lua5.4 bench/cnn_moonopt.lua [batches = 40] [reps = 3]
local mo = require "moonopt"
local nn = mo.nn

local batches = math.tointeger(tonumber(arg[1] or "40"))
local reps = math.tointeger(tonumber(arg[2] or "3"))

mo.manual_seed(1)
local n, batch = batches * 128, 128
local ds = {x = mo.randn(n, 1, 28, 28), y = mo.randint(1, 10, {n})}
local model = nn.Sequential(
  nn.Conv2d(1, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Conv2d(32, 64, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
  nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
local loss_fn = nn.CrossEntropyLoss()
local opt = mo.optim.AdamW(model:parameters(), {lr = 1e-3})
local loader = mo.data.loader(ds, {batch_size = batch})

local times, sink = {}, 0
for r = 0, reps do                       -- rep 0 warms up (buffers, pages) and is not timed
  local t0 = mo.clock()
  for xb, yb in loader:epoch() do
    local out = model:forward(xb)
    local loss, g = loss_fn:forward_backward(out, yb)
    model:backward(xb, g, false)
    opt:step()
    opt:zero_grad()
    sink = sink + loss
  end
  if r > 0 then times[#times + 1] = (mo.clock() - t0) / batches end
end
assert(sink == sink, "the loss became NaN")
table.sort(times)
print(("cnn_batch_moonopt %.6f"):format(times[(#times + 1) // 2]))
