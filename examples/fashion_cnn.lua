--- examples/fashion_cnn.lua - the CNN main job: a small convolutional network on Fashion-MNIST,
-- trained with AdamW and a one-cycle learning-rate schedule.
--
--   lua5.4 examples/fashion_cnn.lua [--epochs 10] [--batch 128] [--lr 3e-3] [--wd 5e-2]
--                                   [--augment] [--bn] [--lr-find] [--threads N] [--seed 42]
--                                   [--data DIR] [--out out] [--quiet]
--   (from a checkout: LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;"; `make demo-cnn`
--   sets them)
--
-- The model (PyTorch's layers, names and shapes; NCHW):
--   Conv2d(1, 32, 3, padding 1) ReLU MaxPool2d(2) Conv2d(32, 64, 3, padding 1) ReLU MaxPool2d(2)
--   Flatten Linear(3136, 128) ReLU Linear(128, 10)
-- --bn puts a BatchNorm2d after each convolution (the convolutions then have no bias);
-- --augment trains on random crops (zero padding 2) and horizontal flips of each batch;
-- --lr-find runs mo.train.lr_find first (written to out/fashion_cnn_lr_find.svg) and prints
-- its suggestion (the run still uses --lr). Needs Debian's dataset-fashion-mnist
-- (/usr/share/datasets/fashion-mnist; `make deps`). Shows a progress bar (plain lines when
-- stdout is not a terminal), writes out/fashion_cnn_loss.svg and out/fashion_cnn_accuracy.svg
-- (the variant's name in the file names: fashion_cnn_bn_augment_loss.svg), prints the best
-- test accuracy and the epoch it was reached, and its last line is
--   final test_acc=<accuracy> median_epoch_s=<seconds>
-- (median over epochs of the training time of one epoch, evaluation excluded).
local mo = require "moonopt"

local nn = mo.nn

local usage = [[
usage: lua5.4 examples/fashion_cnn.lua [options]
  --epochs N    training epochs (default 10)
  --batch N     batch size (default 128)
  --lr X        peak learning rate of the one-cycle schedule (default 3e-3)
  --wd X        AdamW weight decay (default 5e-2)
  --augment     random crop (padding 2) and horizontal flip of the training batches
  --bn          BatchNorm2d after each convolution
  --lr-find     run the learning-rate range test first and print its suggestion
  --threads N   threads of moonopt's pool (default: the cores; same results at any N)
  --seed N      seed of initialization, shuffling and augmentation (default 42)
  --data DIR    Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)
  --out DIR     where the SVG figures go (default out)
  --quiet       no progress display
]]

local cli = dofile((arg[0]:match("^(.*[/\\])") or "") .. "cli.lua")

local spec = {epochs = "int", batch = "int", lr = "number", wd = "number", threads = "int", seed = "int",
              data = "string", out = "string", quiet = "flag", help = "flag", augment = "flag", bn = "flag",
              ["lr-find"] = "flag"}
local defaults = {epochs = 10, batch = 128, lr = 3e-3, wd = 5e-2, seed = 42, out = "out"}
local opts = cli.parse("fashion_cnn", arg, spec, defaults, usage)
local function die(msg) cli.die("fashion_cnn", msg) end

-- the data: standardized with the training set's mean and std, as images {n, 1, 28, 28}
local ok, train_set, test_set = pcall(mo.data.fashion_mnist, {dir = opts.data, normalize = true})
if not ok then die(tostring(train_set)) end
for _, ds in ipairs{train_set, test_set} do ds.x = ds.x:view(ds.x:size(1), 1, 28, 28) end

-- the model
local function conv_block(cin, cout)
  if opts.bn then
    return nn.Conv2d(cin, cout, 3, {padding = 1, bias = false}), nn.BatchNorm2d(cout)
  end
  return nn.Conv2d(cin, cout, 3, {padding = 1})
end
mo.manual_seed(opts.seed)
local layers = {}
local function add(...) for _, m in ipairs{...} do layers[#layers + 1] = m end end
add(conv_block(1, 32))
add(nn.ReLU(), nn.MaxPool2d(2))
add(conv_block(32, 64))
add(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
local model = nn.Sequential(layers)
local loss_fn = nn.CrossEntropyLoss()
local opt = mo.optim.AdamW(model:parameters(), {lr = opts.lr, weight_decay = opts.wd})
local augment = opts.augment and {crop = 2, flip = true} or nil
local variant = (opts.bn and "_bn" or "") .. (opts.augment and "_augment" or "")
os.execute("mkdir -p '" .. opts.out:gsub("'", "'\\''") .. "'")

if opts["lr-find"] then
  local r = mo.train.lr_find{model = model, loss = loss_fn, optimizer = opt, data = train_set,
                             batch_size = opts.batch, start_lr = 1e-6, end_lr = 1, num_iter = 100, augment = augment,
                             plot = opts.out .. "/fashion_cnn" .. variant .. "_lr_find.svg",
                             title = "Fashion-MNIST CNN: learning-rate range test"}
  print(("lr_find: %d steps%s, suggested lr %.2e (steepest descent), min-loss lr / 10 %.2e; wrote %s"):format(
    #r.lrs, r.stopped_early and " (stopped at divergence)" or "", r.suggested_lr or 0 / 0, r.min_loss_lr or 0 / 0,
    opts.out .. "/fashion_cnn" .. variant .. "_lr_find.svg"))
end

local steps_per_epoch = math.ceil(mo.data.size(train_set) / opts.batch)
local total = opts.epochs * steps_per_epoch
local sched = mo.sched.OneCycle(opt, {max_lr = opts.lr, total_steps = total})

print(("Fashion-MNIST: %d training and %d test images; CNN%s, %d parameters"):format(
  mo.data.size(train_set), mo.data.size(test_set), opts.bn and " with BatchNorm" or "", model:num_parameters()))
print(("AdamW max_lr=%g weight_decay=%g, OneCycle over %d steps, batch %d, %d epochs%s, BLAS %s%s"):format(
  opts.lr, opts.wd, total, opts.batch, opts.epochs, augment and ", augmentation: crop 2 + flip" or "",
  mo.blas_backend, ", " .. mo.get_num_threads() .. " threads"))

-- the per-batch loss too, for the loss figure (x in epochs)
local step_x, step_loss = {}, {}
local history = mo.train.fit{
  model = model, loss = loss_fn, optimizer = opt, scheduler = sched, schedule_per = "batch",
  data = train_set, eval = test_set, epochs = opts.epochs, batch_size = opts.batch, augment = augment,
  progress = not opts.quiet,
  on_step = function(info)
    step_x[#step_x + 1] = (info.epoch - 1) + info.batch / steps_per_epoch
    step_loss[#step_loss + 1] = info.loss
  end,
}

-- figures
local epochs_x, mid_x = {}, {}
for e = 1, #history do epochs_x[e], mid_x[e] = e, e - 0.5 end
local title = "Fashion-MNIST CNN" .. (opts.bn and " + BN" or "") .. (opts.augment and " + augmentation" or "")
  .. ", AdamW + one-cycle"
local prefix = opts.out .. "/fashion_cnn" .. variant
local ok_plot, err = pcall(function()
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
    title = title, xlabel = "epoch", ylabel = "cross-entropy loss",
    series = {
      {name = "train (per batch, smoothed)", x = sx, y = sy},
      {name = "train (epoch mean)", x = mid_x, y = history.train_loss},
      {name = "test", x = epochs_x, y = history.eval_loss},
    },
  }:save(prefix .. "_loss.svg")
  mo.plot.line{
    title = title .. ": accuracy", xlabel = "epoch", ylabel = "accuracy",
    series = {
      {name = "train (epoch mean)", x = mid_x, y = history.train_acc},
      {name = "test", x = epochs_x, y = history.eval_acc},
    },
  }:save(prefix .. "_accuracy.svg")
end)
if ok_plot then
  print(("wrote %s_loss.svg and %s_accuracy.svg"):format(prefix, prefix))
else
  io.stderr:write("fashion_cnn: could not write the figures: ", tostring(err), "\n")
end

local best, best_epoch = -1, 0
for e, a in ipairs(history.eval_acc) do
  if a > best then best, best_epoch = a, e end
end
print(("best test_acc=%.4f at epoch %d"):format(best, best_epoch))
print(("final test_acc=%.4f median_epoch_s=%.3f"):format(history.eval_acc[#history], cli.median(history.seconds)))
