-- bench/autograd_mlp.lua - the autograd numbers of issue 12, moonopt's side (bench/autograd_mlp.sh
-- runs it and bench/nn_torch.py in the same run and prints the ratios):
--
--   epoch MODE [epochs = 3]: the Fashion-MNIST MLP 784-256-128-10 (ReLU), batch 128, AdamW
--        (lr 1e-3), cross-entropy, on synthetic data of Fashion-MNIST's shape (60,000 x 784),
--        one shuffled pass through mo.data.loader per epoch: bench/nn_mlp.lua's loop.
--        MODE "fused": the torch7 path (model:forward, loss_fn:forward_backward,
--        model:backward); "autograd": the same MLP written with F.linear, F.relu and
--        F.cross_entropy, loss:backward(); "module": model(x) recorded as one node,
--        F.cross_entropy, loss:backward(). Prints "autograd_epoch_<MODE> <median seconds>".
--   rss [steps = 10000]: that many autograd training steps (the F MLP, batch 128) with the
--        resident set size sampled every 1000 steps; prints the samples and
--        "autograd_rss_kb start <kB> end <kB> max <kB>".
-- usage: lua5.4 bench/autograd_mlp.lua epoch fused|autograd|module [epochs] | rss [steps]
local mo = require "moonopt"
local nn, F = mo.nn, mo.nn.functional

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function random_labels(n, classes)
  local y = mo.rand(n):mul_(classes)
  local t = {}
  for i = 1, n do t[i] = math.floor(y:get(i)) + 1 end
  return mo.tensor(t)
end

local function setup(n)
  mo.manual_seed(1)
  local ds = {x = mo.randn(n, 784), y = random_labels(n, 10)}
  local model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 10))
  local opt = mo.optim.AdamW(model:parameters(), {lr = 1e-3})
  return ds, model, opt
end

-- One training step of each mode on batch (xb, yb); returns the loss as a number.
local function stepper(mode, model, opt)
  if mode == "fused" then
    local loss_fn = nn.CrossEntropyLoss()
    return function(xb, yb)
      local out = model:forward(xb)
      local loss, g = loss_fn:forward_backward(out, yb)
      opt:zero_grad()
      model:backward(xb, g, false)
      opt:step()
      return loss
    end
  end
  model:requires_grad_()
  local l1, l2, l3 = model.modules[1], model.modules[3], model.modules[5]
  local forward = mode == "module" and function(xb) return model(xb) end or function(xb)
    local h = F.relu(F.linear(xb, l1.weight, l1.bias))
    h = F.relu(F.linear(h, l2.weight, l2.bias))
    return F.linear(h, l3.weight, l3.bias)
  end
  return function(xb, yb)
    local loss = F.cross_entropy(forward(xb), yb)
    opt:zero_grad()
    loss:backward()
    opt:step()
    return loss:item()
  end
end

local function epoch(mode, epochs)
  local ds, model, opt = setup(60000)
  local step = stepper(mode, model, opt)
  local loader = mo.data.loader(ds, {batch_size = 128, shuffle = true})
  local times, sink = {}, 0
  for e = 1, epochs do
    local t0 = mo.clock()
    for xb, yb in loader:epoch() do sink = sink + step(xb, yb) end
    times[e] = mo.clock() - t0
  end
  assert(sink == sink, "the loss became NaN")
  print(string.format("autograd_epoch_%s %.6f", mode, median(times)))
end

local function rss_kb()
  local f = assert(io.open("/proc/self/statm"))
  local pages = f:read("n") and f:read("n")
  f:close()
  return pages * 4
end

local function rss(steps)
  local ds, model, opt = setup(128 * 50)
  local step = stepper("autograd", model, opt)
  local loader = mo.data.loader(ds, {batch_size = 128, shuffle = true})
  local s, start, maxkb = 0, nil, 0
  while s < steps do
    for xb, yb in loader:epoch() do
      step(xb, yb)
      s = s + 1
      if s == 100 then start = rss_kb() end   -- after the first steps' buffers and state
      if s % 1000 == 0 then
        local kb = rss_kb()
        if kb > maxkb then maxkb = kb end
        print(string.format("step %d rss %d kB", s, kb))
      end
      if s == steps then break end
    end
  end
  print(string.format("autograd_rss_kb start %d end %d max %d", start, rss_kb(), maxkb))
end

local what = arg[1]
if what == "epoch" and (arg[2] == "fused" or arg[2] == "autograd" or arg[2] == "module") then
  epoch(arg[2], math.tointeger(tonumber(arg[3])) or 3)
elseif what == "rss" then
  rss(math.tointeger(tonumber(arg[2])) or 10000)
else
  error("usage: lua5.4 bench/autograd_mlp.lua epoch fused|autograd|module [epochs] | rss [steps]")
end
