--- examples/seed/one_cycle_cnn.lua - the seed's claim 6 on the CNN, as Smith & Topin test
-- super-convergence: a learning-rate range test, then a one-cycle schedule whose peak is several
-- times the best constant lr, against tuned constant and cosine schedules at the same budget.
--
--   lua5.4 examples/seed/one_cycle_cnn.lua [--out out/seed] [--epochs 3] [--lrs 5e-4,1e-3,2e-3]
--                                          [--peaks 3,10] [--target 0.91] [--seeds 3] [--quick]
--
-- Fashion-MNIST (the first --train training images, all 60,000 by default; the first --test test
-- images, all 10,000), the CNN of the CNN main job (claims.cnn), AdamW (weight_decay 5e-2, PyTorch
-- convention, as examples/fashion_cnn.lua), batch 128, a budget of --epochs epochs; every run
-- is evaluated on the test set every --every steps. Every run is repeated with --seeds seeds from
-- --seed on (initialization and batch order) and reported as mean ± std.
--   1. the range test (mo.train.lr_find, 1e-6 to 1 over 100 steps) for each seed; its
--      suggestions (steepest descent, and the min-loss lr / 10) are printed (--finder_steps);
--   2. a constant lr for each of --lrs; c* is the one with the best mean final accuracy
--      (--constants_only stops here);
--   3. the tuned baseline: a cosine decay to 0 over the budget from c* and from each one-cycle
--      peak (the best of these is "tuned cosine");
--   4. OneCycle (cosine, pct_start 0.3, from peak/25) with the peak k * c* for each k of --peaks.
-- Prints the final accuracy of every run, the first evaluation at which each run's mean accuracy
-- reaches --target (and in how many seeds each run reaches it at all), and writes
-- one_cycle_cnn.svg (mean test accuracy over the steps), one_cycle_cnn_lr.svg (the lrs) and
-- one_cycle_cnn_lr_find.svg (the range test of the first seed).
-- Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist; `make deps`).
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local NAME = "one_cycle_cnn"
local o, given = common.args(NAME, arg, {
  train = {"int", 60000, "training images used"},
  test = {"int", 10000, "test images used"},
  epochs = {"int", 3, "the budget, in epochs"},
  batch = {"int", 128, "batch size"},
  lrs = {"string", "5e-4,1e-3,2e-3", "the constant lrs tried (comma-separated)"},
  peaks = {"string", "3,10", "OneCycle's peaks, as multiples of the best constant lr"},
  wd = {"number", 5e-2, "AdamW weight_decay (PyTorch convention: w *= 1 - lr*wd)"},
  target = {"number", 0.91, "test accuracy whose first arrival is reported"},
  every = {"int", 235, "evaluate every N steps"},
  finder_steps = {"int", 100, "steps of the range test"},
  constants_only = {"flag", false, "stop after the constant lrs (each printed as mean ± std)"},
  seeds = {"int", 3, "seeds per run (mean ± std)"},
  threads = {"int", 1, "threads of moonopt's pool (BLAS runs on it)"},
  data = {"string", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST directory"},
})
if o.quick then
  o.train, o.test, o.epochs, o.every = math.min(o.train, 1000), math.min(o.test, 500), 1, 4
  if not given.finder_steps then o.finder_steps = 20 end
  if not given.seeds then o.seeds = 1 end
end
if o.train < o.batch then common.die(NAME, "--train must be at least --batch") end
if o.epochs < 1 or o.every < 1 or o.batch < 1 or o.seeds < 1 or o.test < 1 or o.finder_steps < 2 then
  common.die(NAME, "--epochs, --every, --batch, --seeds and --test must be at least 1, --finder_steps 2")
end

local function number_list(name, s)
  local out = {}
  for item in s:gmatch("[^,]+") do
    local v = tonumber(item)
    if v == nil or v ~= v or v <= 0 or v == math.huge then
      common.die(NAME, ("--%s must be positive numbers separated by commas, got '%s'"):format(name, s))
    end
    out[#out + 1] = v
  end
  if #out == 0 then common.die(NAME, ("--%s is empty"):format(name)) end
  return out
end
local LRS, PEAKS = number_list("lrs", o.lrs), number_list("peaks", o.peaks)
mo.set_num_threads(o.threads)

local ok, train, test = pcall(mo.data.fashion_mnist, {dir = o.data, normalize = true,
                                                       n_train = o.train})
if not ok then common.die(NAME, tostring(train)) end
if o.test < mo.data.size(test) then test = mo.data.subset(test, 1, o.test) end
claims.as_images(train)
claims.as_images(test)

local SEEDS = common.seed_list(o)
local steps_per_epoch = math.ceil(mo.data.size(train) / o.batch)
local total = o.epochs * steps_per_epoch
print(("Fashion-MNIST: %d training images, %d test; the CNN main job's network; AdamW wd %g;"
       .. " batch %d, %d epochs (%d steps); seeds %s; %s"):format(
  mo.data.size(train), mo.data.size(test), o.wd, o.batch, o.epochs, total,
  table.concat(SEEDS, ", "), common.blas_line()))
local t0 = mo.clock()

-- 1. the range test, one per seed (each from its seed's fresh initialization)
local finder = {steepest = {}, min10 = {}}
local FINDER_STEPS = o.finder_steps
common.ensure_dir(o.out)
for k, seed in ipairs(SEEDS) do
  mo.manual_seed(seed)
  local model = claims.cnn()
  local opt = mo.optim.AdamW(model:parameters(), {lr = 1e-3, weight_decay = o.wd})
  local r = mo.train.lr_find{
    model = model, loss = mo.nn.CrossEntropyLoss(), optimizer = opt, data = train,
    batch_size = o.batch, start_lr = 1e-6, end_lr = 1, num_iter = FINDER_STEPS,
    plot = k == 1 and o.out .. "/one_cycle_cnn_lr_find.svg" or nil,
    title = "CNN on Fashion-MNIST: learning-rate range test, AdamW"}
  finder.steepest[k], finder.min10[k] = r.suggested_lr or 0 / 0, r.min_loss_lr or 0 / 0
end
print()
print(("range test (%d steps from 1e-6 to 1): steepest descent at lr %s; min-loss lr / 10 %s"
       .. " (mean ± std over %d seeds)"):format(FINDER_STEPS, common.pm(finder.steepest, "%.2e"),
                                                common.pm(finder.min10, "%.2e"), #SEEDS))

-- A run over every seed: the mean curve and each seed's curve.
local function run_all(r)
  local curves = {}
  for k, seed in ipairs(SEEDS) do
    curves[k] = claims.train_curve{train = train, test = test, net = claims.cnn, lr = r.lr,
                                   weight_decay = o.wd, epochs = o.epochs, batch = o.batch,
                                   seed = seed, schedule = r.schedule, every = o.every}
  end
  r.curves = curves
  r.final = {}
  for k, c in ipairs(curves) do r.final[k] = c.acc[#c.acc] end
  io.stderr:write(("  %s done, %.0f s\n"):format(r.name, mo.clock() - t0))
  return r
end

local function cosine(opt, n) return mo.sched.CosineAnnealing(opt, {T_max = n}) end

-- 2. constant lrs; c* is the best mean final accuracy
local runs, best_const = {}, nil
for _, lr in ipairs(LRS) do
  local r = run_all{kind = "constant", name = ("constant %g"):format(lr), lr = lr}
  runs[#runs + 1] = r
  if best_const == nil or common.mean_std(r.final) > common.mean_std(best_const.final) then
    best_const = r
  end
end
local cstar = best_const.lr
for _, r in ipairs(runs) do
  print(("%s: final test accuracy %s"):format(r.name, common.pm(r.final)))
end
print(("best constant lr c* = %g"):format(cstar))
if o.constants_only then return end

-- 3 and 4: cosine from c* and from every peak; OneCycle at every peak
local cosine_lrs = {cstar}
for _, k in ipairs(PEAKS) do cosine_lrs[#cosine_lrs + 1] = k * cstar end
for _, lr in ipairs(cosine_lrs) do
  runs[#runs + 1] = run_all{kind = "cosine", name = ("cosine from %g"):format(lr), lr = lr,
                            schedule = cosine}
end
for _, k in ipairs(PEAKS) do
  local peak = k * cstar
  runs[#runs + 1] = run_all{
    kind = "onecycle", name = ("OneCycle peak %g (%g c*)"):format(peak, k), lr = peak,
    schedule = function(opt, n) return mo.sched.OneCycle(opt, {max_lr = peak, total_steps = n}) end}
end

print()
print(("after %d epochs (%d steps), mean ± std over %d seed(s); steps to %.3f: the first"
       .. " evaluation (every %d steps) where the mean accuracy reaches it, and in how many seeds"
       .. " the run reaches it at all"):format(o.epochs, total, #SEEDS, o.target, o.every))
local rows = {}
local best = {}
for _, r in ipairs(runs) do
  r.mean = claims.mean_curve(r.curves)
  local reached = 0
  for _, c in ipairs(r.curves) do
    if claims.steps_to_target(c, o.target) then reached = reached + 1 end
  end
  local s = claims.steps_to_target(r.mean, o.target)
  rows[#rows + 1] = {r.name, common.pm(r.final),
                     s and ("%d (%.2f epochs)"):format(s, s / steps_per_epoch) or "never",
                     ("%d of %d"):format(reached, #SEEDS)}
  local m = common.mean_std(r.final)
  if best[r.kind] == nil or m > common.mean_std(best[r.kind].final) then best[r.kind] = r end
end
common.print_table({"run", "final test accuracy", ("steps to %.3f"):format(o.target), "seeds"}, rows)
print()
for _, kind in ipairs{"constant", "cosine", "onecycle"} do
  local r = best[kind]
  print(("best %-8s  %-28s %s"):format(kind, r.name, common.pm(r.final)))
end
-- the difference of the best OneCycle and the best cosine, seed by seed (same init and order)
local diff = {}
for k = 1, #SEEDS do diff[k] = best.onecycle.final[k] - best.cosine.final[k] end
print(("best OneCycle - best cosine, paired by seed: %s"):format(common.pm(diff)))
print(("%d training runs in %.0f s"):format(#runs * #SEEDS, mo.clock() - t0))

-- figures: the mean curves and their lrs
local COLORS = {constant = {"#9ecae1", "#4292c6", "#08519c", "#08306b"},
                cosine = {"#bcbddc", "#807dba", "#54278f", "#3f007d"},
                onecycle = {"#fc9272", "#de2d26", "#a50f15", "#67000d"}}
local used, acc_series, lr_series = {}, {}, {}
for _, r in ipairs(runs) do
  used[r.kind] = (used[r.kind] or 0) + 1
  local color = COLORS[r.kind][math.min(used[r.kind], 4)]
  acc_series[#acc_series + 1] = {name = r.name, x = r.mean.step, y = r.mean.acc, color = color}
  lr_series[#lr_series + 1] = {name = r.name, x = r.mean.step, y = r.mean.lr, color = color}
end
acc_series[#acc_series + 1] = {name = ("target %.3f"):format(o.target), x = {0, total},
                               y = {o.target, o.target}, dash = "dotted", color = "#888888"}
local lo = math.huge
for _, s in ipairs(acc_series) do
  for i = 2, #s.y do lo = math.min(lo, s.y[i]) end
end
common.save(mo.plot.line{
  title = ("CNN on Fashion-MNIST, %d epochs: test accuracy, mean of %d seed(s)"):format(
    o.epochs, #SEEDS),
  xlabel = "step", ylabel = "test accuracy", ylim = {math.max(lo, 0.8), nil},
  series = acc_series, legend = "lower right",
}, o.out, "one_cycle_cnn.svg")
common.save(mo.plot.line{
  title = "Learning rates", xlabel = "step", ylabel = "lr", logy = true,
  series = lr_series, legend = "lower left",
}, o.out, "one_cycle_cnn_lr.svg")
