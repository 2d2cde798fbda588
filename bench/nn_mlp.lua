-- bench/nn_mlp.lua - the training-stack numbers of issue 4, moonopt's side (bench/nn_torch.py
-- is PyTorch's; bench/nn_bench.sh runs both in the same run and prints the ratios):
--
--   fashion: an MLP 784-256-128-10 (ReLU), batch 128, AdamW (lr 1e-3), CrossEntropyLoss, on
--            synthetic data of Fashion-MNIST's shape (60,000 x 784, classes 1..10; the timing
--            does not depend on the values). One epoch = one shuffled pass through
--            mo.data.loader, every batch: forward, loss + gradient, zero_grad, backward, step.
--            Prints "nn_fashion_epoch_moonopt <median seconds per epoch>".
--   small:   an MLP 2-32-32-1 (ReLU), batch 32, Adam (lr 1e-3), MSELoss, cycling over 32
--            fixed batches. Prints "nn_small_step_moonopt <median seconds per step>" (the
--            median over `reps` runs of `steps` steps; a step is forward, loss + gradient,
--            zero_grad, backward, step).
--
-- The loop is the one docs/nn.md shows: model:backward(x, g, false) skips the input gradient
-- that nothing uses. Run with OPENBLAS_NUM_THREADS=1 (bench/run.sh sets it).
-- usage: lua5.4 bench/nn_mlp.lua fashion [epochs = 3] | small [steps = 2000] [reps = 7]
local mo = require "moonopt"
local nn = mo.nn

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- Labels 1..classes as a float tensor {n}.
local function random_labels(n, classes)
  local y = mo.rand(n):mul_(classes)
  local t = {}
  for i = 1, n do t[i] = math.floor(y:get(i)) + 1 end
  return mo.tensor(t)
end

local function fashion(epochs)
  mo.manual_seed(1)
  local n, batch = 60000, 128
  local ds = {x = mo.randn(n, 784), y = random_labels(n, 10)}
  local model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 10))
  local loss_fn = nn.CrossEntropyLoss()
  local opt = mo.optim.AdamW(model:parameters(), {lr = 1e-3})
  local loader = mo.data.loader(ds, {batch_size = batch, shuffle = true})
  local times, sink = {}, 0
  for e = 1, epochs do
    local t0 = mo.clock()
    for xb, yb in loader:epoch() do
      local out = model:forward(xb)
      local loss, g = loss_fn:forward_backward(out, yb)
      opt:zero_grad()
      model:backward(xb, g, false)
      opt:step()
      sink = sink + loss
    end
    times[e] = mo.clock() - t0
  end
  assert(sink == sink, "the loss became NaN")
  print(string.format("nn_fashion_epoch_moonopt %.6f", median(times)))
end

local function small(steps, reps)
  mo.manual_seed(2)
  local batch, nb = 32, 32
  local x = mo.randn(batch * nb, 2)
  local y = x:sum(2):view(batch * nb, 1):mul_(0.5)       -- any smooth target
  local xs, ys = {}, {}
  for i = 1, nb do
    xs[i] = x:narrow(1, (i - 1) * batch + 1, batch)
    ys[i] = y:narrow(1, (i - 1) * batch + 1, batch)
  end
  local model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                              nn.Linear(32, 1))
  local loss_fn = nn.MSELoss()
  local opt = mo.optim.Adam(model:parameters(), {lr = 1e-3})
  local function run(count)
    local sink = 0
    for s = 1, count do
      local i = (s - 1) % nb + 1
      local xb, yb = xs[i], ys[i]
      local out = model:forward(xb)
      local loss, g = loss_fn:forward_backward(out, yb)
      opt:zero_grad()
      model:backward(xb, g, false)
      opt:step()
      sink = sink + loss
    end
    return sink
  end
  run(200)                                                -- buffers and optimizer state
  local times = {}
  for r = 1, reps do
    local t0 = mo.clock()
    local sink = run(steps)
    times[r] = (mo.clock() - t0) / steps
    assert(sink == sink, "the loss became NaN")
  end
  print(string.format("nn_small_step_moonopt %.9f", median(times)))
end

local what = arg[1] or "small"
if what == "fashion" then
  fashion(math.tointeger(tonumber(arg[2])) or 3)
elseif what == "small" then
  small(math.tointeger(tonumber(arg[2])) or 2000, math.tointeger(tonumber(arg[3])) or 7)
else
  error("usage: lua5.4 bench/nn_mlp.lua fashion [epochs] | small [steps] [reps]")
end
