--- examples/fashion_mnist.lua - the main job: an MLP 784-256-128-10 (ReLU) on Fashion-MNIST,
-- trained with AdamW and a warmup-cosine learning-rate schedule.
--
--   lua5.4 examples/fashion_mnist.lua [--epochs 10] [--batch 128] [--lr 2e-3] [--wd 1e-2]
--                                     [--threads N] [--seed 42] [--data DIR] [--out out]
--                                     [--autograd]
--   (from a checkout: LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;"; `make demo` sets them)
--
-- Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist; `make deps`).
-- Shows a progress bar (plain lines when stdout is not a terminal), writes
-- out/fashion_mnist_loss.svg and out/fashion_mnist_accuracy.svg, and its last line is
--   final test_acc=<accuracy> median_epoch_s=<seconds>
-- (median over epochs of the training time of one epoch, evaluation excluded).
--
-- --autograd trains the same MLP written with mo.nn.functional (F.linear, F.relu,
-- F.cross_entropy) on the autograd tape instead of the modules' fused forward/backward:
-- the same initial weights (nn.Linear's, same seed), the same steps.
--
-- --threads N sets OpenBLAS's thread count (openblas_set_num_threads through the
-- binding). With another BLAS the flag has no effect: set that library's own variable
-- (OMP_NUM_THREADS, ...) before starting. OPENBLAS_NUM_THREADS=N in the environment
-- works for OpenBLAS too.
local mo = require "moonopt"

local nn = mo.nn

local usage = [[
usage: lua5.4 examples/fashion_mnist.lua [options]
  --epochs N    training epochs (default 10)
  --batch N     batch size (default 128)
  --lr X        peak learning rate of AdamW (default 2e-3)
  --wd X        AdamW weight decay (default 1e-2)
  --warmup N    warmup steps of the schedule (default: one epoch)
  --threads N   threads of moonopt's pool (default: the cores; same results at any N)
  --seed N      seed of initialization and shuffling (default 42)
  --data DIR    Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)
  --out DIR     where the SVG curves go (default out)
  --quiet       no progress display
  --autograd    the same MLP written with mo.nn.functional, gradients by autograd
]]

local cli = dofile((arg[0]:match("^(.*[/\\])") or "") .. "cli.lua")

local spec = {epochs = "int", batch = "int", lr = "number", wd = "number", warmup = "int", threads = "int",
              seed = "int", data = "string", out = "string", quiet = "flag", help = "flag",
              autograd = "flag"}
local defaults = {epochs = 10, batch = 128, lr = 2e-3, wd = 1e-2, seed = 42, out = "out"}
local opts = cli.parse("fashion_mnist", arg, spec, defaults, usage)
local function die(msg) cli.die("fashion_mnist", msg) end

-- the data: images flattened to 784 floats, standardized with the training set's mean and std
local ok, train_set, test_set = pcall(mo.data.fashion_mnist, {dir = opts.data, normalize = true})
if not ok then die(tostring(train_set)) end

mo.manual_seed(opts.seed)
local model = nn.Sequential(
  nn.Linear(784, 256), nn.ReLU(),
  nn.Linear(256, 128), nn.ReLU(),
  nn.Linear(128, 10))
local loss_fn = nn.CrossEntropyLoss()
if opts.autograd then
  -- the same parameters (the Linear layers above hold them), the forward written with F:
  -- fit sees a loss function of (model, xb, yb) and runs backward on its result
  local F = nn.functional
  local l1, l2, l3 = model.modules[1], model.modules[3], model.modules[5]
  loss_fn = function(_, xb, yb)
    local h = F.relu(F.linear(xb, l1.weight, l1.bias))
    h = F.relu(F.linear(h, l2.weight, l2.bias))
    local out = F.linear(h, l3.weight, l3.bias)
    return F.cross_entropy(out, yb), out
  end
end
local opt = mo.optim.AdamW(model:parameters(), {lr = opts.lr, weight_decay = opts.wd})
local steps_per_epoch = math.ceil(mo.data.size(train_set) / opts.batch)
local total = opts.epochs * steps_per_epoch
local sched = mo.sched.WarmupCosine(opt, {warmup = math.min(opts.warmup or steps_per_epoch, total), total = total})

print(("Fashion-MNIST: %d training and %d test images; MLP 784-256-128-10, %d parameters"):format(
  mo.data.size(train_set), mo.data.size(test_set), model:num_parameters()))
print(("AdamW lr=%g weight_decay=%g, WarmupCosine over %d steps, batch %d, %d epochs, BLAS %s%s"):format(
  opts.lr, opts.wd, total, opts.batch, opts.epochs, mo.blas_backend,
  ", " .. mo.get_num_threads() .. " threads"))

-- the per-batch loss too, for the loss figure (x in epochs)
local step_x, step_loss = {}, {}
local history = mo.train.fit{
  model = model, loss = loss_fn, optimizer = opt, scheduler = sched, schedule_per = "batch",
  data = train_set, eval = test_set, epochs = opts.epochs, batch_size = opts.batch,
  progress = not opts.quiet,
  on_step = function(info)
    step_x[#step_x + 1] = (info.epoch - 1) + info.batch / steps_per_epoch
    step_loss[#step_loss + 1] = info.loss
  end,
}

-- figures
os.execute("mkdir -p '" .. opts.out:gsub("'", "'\\''") .. "'")
-- epoch means describe the whole epoch: drawn at its middle; test points at its end
local epochs_x, mid_x = {}, {}
for e = 1, #history do epochs_x[e], mid_x[e] = e, e - 0.5 end
local ok_plot, err = pcall(function()
  -- smooth the per-batch loss over ~1/10 epoch so the figure stays readable
  local window = math.max(1, steps_per_epoch // 10)
  local sx, sy, acc = {}, {}, 0
  for i = 1, #step_loss do
    acc = acc + step_loss[i]
    if i > window then acc = acc - step_loss[i - window] end
    if i >= window and (i - window) % window == 0 then
      sx[#sx + 1] = step_x[i]
      sy[#sy + 1] = acc / window
    end
  end
  mo.plot.line{
    title = "Fashion-MNIST, MLP 784-256-128-10, AdamW + warmup-cosine",
    xlabel = "epoch", ylabel = "cross-entropy loss",
    series = {
      {name = "train (per batch, smoothed)", x = sx, y = sy},
      {name = "train (epoch mean)", x = mid_x, y = history.train_loss},
      {name = "test", x = epochs_x, y = history.eval_loss},
    },
  }:save(opts.out .. "/fashion_mnist_loss.svg")
  mo.plot.line{
    title = "Fashion-MNIST, MLP 784-256-128-10: accuracy",
    xlabel = "epoch", ylabel = "accuracy",
    series = {
      {name = "train (epoch mean)", x = mid_x, y = history.train_acc},
      {name = "test", x = epochs_x, y = history.eval_acc},
    },
  }:save(opts.out .. "/fashion_mnist_accuracy.svg")
end)
if ok_plot then
  print(("wrote %s/fashion_mnist_loss.svg and %s/fashion_mnist_accuracy.svg"):format(opts.out, opts.out))
else
  io.stderr:write("fashion_mnist: could not write the figures: ", tostring(err), "\n")
end

print(("final test_acc=%.4f median_epoch_s=%.3f"):format(history.eval_acc[#history], cli.median(history.seconds)))
