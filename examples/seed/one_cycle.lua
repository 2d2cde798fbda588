--- examples/seed/one_cycle.lua - the seed's claim 6 (from the fast.ai post it cites, "AdamW and
-- super-convergence is now the fastest way to train neural nets"): AdamW with a one-cycle
-- learning-rate schedule trains fastest.
--
--   lua5.4 examples/seed/one_cycle.lua [--out out/seed] [--train 20000] [--epochs 8]
--                                      [--max_lr 5e-3] [--lr 1e-3] [--target 0.85] [--seeds 3]
--                                      [--quick]
--
-- Fashion-MNIST (the first --train training images; the full 10,000-image test set), the MLP
-- 784-256-128-10 of the main example, AdamW (weight_decay 1e-2, PyTorch convention), batch 128.
-- For each budget of 1, 2, 4, ... up to --epochs epochs, four runs with the same initialization and
-- batch order: OneCycle (max_lr, cosine, pct_start 0.3, starting at max_lr/25) over exactly the
-- budget; a cosine decay from max_lr to 0 over the budget without warmup (is it the one-cycle
-- shape or just the annealing?); a constant lr (--lr, Adam's usual 1e-3); a constant max_lr. Each run is
-- evaluated on the test set every --every steps. Every run is repeated with --seeds consecutive
-- seeds from --seed on (initialization and batch order change with the seed); accuracies are
-- reported as mean ± std over the seeds, and the curves are their means. Prints the final
-- test accuracy per budget, the
-- smallest budget whose final accuracy reaches --target (the super-convergence question: how
-- short a run does each need?), and the first step at which each run of the longest budget
-- passes --target on the way (a different question: a one-cycle run starts slowly); writes
-- one_cycle.svg (test accuracy over the steps, longest budget), one_cycle_lr.svg (the lrs) and
-- one_cycle_budget.svg (final accuracy against budget).
-- Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist; `make deps`).
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local NAME = "one_cycle"
local o, given = common.args(NAME, arg, {
  train = {"int", 20000, "training images used"},
  epochs = {"int", 8, "the longest budget, in epochs"},
  batch = {"int", 128, "batch size"},
  max_lr = {"number", 5e-3, "OneCycle's peak lr"},
  lr = {"number", 1e-3, "the constant-lr baseline"},
  wd = {"number", 1e-2, "AdamW weight_decay (PyTorch convention: w *= 1 - lr*wd)"},
  target = {"number", 0.85, "test accuracy whose first arrival is reported"},
  every = {"int", 40, "evaluate every N steps"},
  seeds = {"int", 3, "seeds per run (mean ± std)"},
  threads = {"int", 1, "threads of moonopt's pool (BLAS runs on it)"},
  data = {"string", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST directory"},
})
if o.quick then
  o.train, o.epochs, o.every = 2000, 2, 8
  if not given.seeds then o.seeds = 1 end
end
if o.train < o.batch then common.die(NAME, "--train must be at least --batch") end
if o.epochs < 1 or o.every < 1 or o.batch < 1 or o.seeds < 1 then
  common.die(NAME, "--epochs, --every, --batch and --seeds must be at least 1")
end
mo.set_num_threads(o.threads)

local ok, train, test = pcall(mo.data.fashion_mnist, {dir = o.data, normalize = true,
                                                       n_train = o.train})
if not ok then common.die(NAME, tostring(train)) end
if o.quick then test = mo.data.subset(test, 1, 2000) end

local steps_per_epoch = math.ceil(mo.data.size(train) / o.batch)
local SIZES = {784, 256, 128, 10}
local RUNS = {
  {key = "onecycle", name = ("OneCycle max_lr=%g"):format(o.max_lr), color = "#d62728",
   schedule = function(opt, total)
     return mo.sched.OneCycle(opt, {max_lr = o.max_lr, total_steps = total})
   end, lr = o.max_lr},
  {key = "cosine", name = ("cosine from lr=%g"):format(o.max_lr), color = "#9467bd",
   schedule = function(opt, total) return mo.sched.CosineAnnealing(opt, {T_max = total}) end,
   lr = o.max_lr},
  {key = "const", name = ("constant lr=%g"):format(o.lr), color = "#1f77b4", lr = o.lr},
  {key = "const_max", name = ("constant lr=%g"):format(o.max_lr), color = "#2ca02c", lr = o.max_lr},
}

local budgets = {}
do
  local b = 1
  while b < o.epochs do
    budgets[#budgets + 1] = b
    b = b * 2
  end
  budgets[#budgets + 1] = o.epochs
end

local SEEDS = common.seed_list(o)

print(("Fashion-MNIST: %d training images, %d test; MLP 784-256-128-10; AdamW wd %g; batch %d"
       .. " (%d steps per epoch); seeds %s"):format(mo.data.size(train), mo.data.size(test), o.wd,
                                                   o.batch, steps_per_epoch,
                                                   table.concat(SEEDS, ", ")))
-- curves[b][key]: the mean curve over the seeds; final[b][key]: the final accuracy of each seed
local curves, final = {}, {}
local t0 = mo.clock()
for _, b in ipairs(budgets) do
  curves[b], final[b] = {}, {}
  for _, r in ipairs(RUNS) do
    local list, finals = {}, {}
    for k, seed in ipairs(SEEDS) do
      list[k] = claims.train_curve{train = train, test = test, sizes = SIZES, lr = r.lr,
                                   weight_decay = o.wd, epochs = b, batch = o.batch,
                                   seed = seed, schedule = r.schedule, every = o.every}
      finals[k] = list[k].acc[#list[k].acc]
    end
    curves[b][r.key] = claims.mean_curve(list)
    final[b][r.key] = finals
  end
  io.stderr:write(("  budget %d epoch(s) done, %.0f s\n"):format(b, mo.clock() - t0))
end

print()
print(("final test accuracy for each budget, mean ± std over %d seed(s) (the schedule spans the"
       .. " whole budget):"):format(#SEEDS))
local header, rows = {"budget (epochs)", "steps"}, {}
for _, r in ipairs(RUNS) do header[#header + 1] = r.name end
for _, b in ipairs(budgets) do
  local row = {tostring(b), tostring(b * steps_per_epoch)}
  for _, r in ipairs(RUNS) do row[#row + 1] = common.pm(final[b][r.key]) end
  rows[#rows + 1] = row
end
common.print_table(header, rows)
print()
print(("smallest budget whose mean final test accuracy reaches %.3f:"):format(o.target))
for _, r in ipairs(RUNS) do
  local found
  for _, b in ipairs(budgets) do
    if (common.mean_std(final[b][r.key])) >= o.target then found = b; break end
  end
  print(("  %-24s %s"):format(r.name, found and (found .. " epoch(s)") or ("none up to " .. o.epochs)))
end

local longest = budgets[#budgets]
print()
print(("budget %d epochs: first step at which the mean test accuracy reaches %.3f (evaluated"
       .. " every %d steps), and the best mean accuracy seen:"):format(longest, o.target, o.every))
rows = {}
local first, first_at = nil, math.huge
for _, r in ipairs(RUNS) do
  local c = curves[longest][r.key]
  local s = claims.steps_to_target(c, o.target)
  local best = 0
  for _, a in ipairs(c.acc) do best = math.max(best, a) end
  rows[#rows + 1] = {r.name, s and tostring(s) or "never", ("%.4f"):format(best)}
  if s and s < first_at then first, first_at = r.name, s end
end
common.print_table({"run", ("steps to %.3f"):format(o.target), "best"}, rows)
print(first and ("first to reach %.3f: %s (step %d)"):format(o.target, first, first_at)
      or ("no run reached %.3f"):format(o.target))
local best_final, best_run = -1, RUNS[1]
for _, r in ipairs(RUNS) do
  local m = common.mean_std(final[longest][r.key])
  if m > best_final then best_final, best_run = m, r end
end
print(("best mean final accuracy after %d epochs: %s (%s)"):format(
  longest, best_run.name, common.pm(final[longest][best_run.key])))

-- figures
local acc_series, lr_series = {}, {}
for _, r in ipairs(RUNS) do
  local c = curves[longest][r.key]
  acc_series[#acc_series + 1] = {name = r.name, x = c.step, y = c.acc, color = r.color}
  lr_series[#lr_series + 1] = {name = r.name, x = c.step, y = c.lr, color = r.color}
end
acc_series[#acc_series + 1] = {name = ("target %.3f"):format(o.target),
                               x = {0, longest * steps_per_epoch}, y = {o.target, o.target},
                               dash = "dotted", color = "#888888"}
local lo = math.huge
for _, s in ipairs(acc_series) do
  for i = 2, #s.y do lo = math.min(lo, s.y[i]) end
end
common.save(mo.plot.line{
  title = ("AdamW on Fashion-MNIST (%d images), %d epochs: test accuracy, mean of %d seed(s)"):format(
    mo.data.size(train), longest, #SEEDS),
  xlabel = "step", ylabel = "test accuracy", ylim = {math.max(lo, 0.6), nil},
  series = acc_series, legend = "lower right",
}, o.out, "one_cycle.svg")
common.save(mo.plot.line{
  title = "Learning rates", xlabel = "step", ylabel = "lr", logy = true,
  series = lr_series, legend = "lower left",
}, o.out, "one_cycle_lr.svg")
local budget_series = {}
for _, r in ipairs(RUNS) do
  local y = {}
  for i, b in ipairs(budgets) do y[i] = (common.mean_std(final[b][r.key])) end
  budget_series[#budget_series + 1] = {name = r.name, x = budgets, y = y, color = r.color,
                                       marker = true}
end
common.save(mo.plot.line{
  title = ("Final test accuracy against the training budget, mean of %d seed(s)"):format(#SEEDS),
  xlabel = "budget (epochs)", ylabel = "test accuracy", series = budget_series, logx = true,
  legend = "lower right",
}, o.out, "one_cycle_budget.svg")
