-- examples/schedules.lua - draw every learning-rate schedule of mo.sched into SVG figures.
--
--   lua5.4 examples/schedules.lua [outdir]      (from the repository root; default out/)
--
-- Writes out/schedules_decay.svg, out/schedules_warmup.svg, out/schedules_cyclic.svg,
-- out/schedules_plateau.svg and out/schedules_log.svg, and prints one line per file.
-- Schedules are pure Lua: this example needs neither the C module nor a real optimizer;
-- a plain table with param_groups stands in for one.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path

local ok, mo = pcall(require, "moonopt")
if not ok or type(mo) ~= "table" then mo = {} end
mo.sched = mo.sched or require "moonopt.sched"
mo.plot = mo.plot or require "moonopt.plot"
local sched, plot = mo.sched, mo.plot

local outdir = arg and arg[1] or "out"
-- create the output directory (POSIX mkdir -p; the name is quoted for the shell)
if not os.rename(outdir, outdir) then
  local quoted = "'" .. outdir:gsub("'", "'\\''") .. "'"
  assert(os.execute("mkdir -p " .. quoted), "cannot create " .. outdir)
end

local BASE_LR = 0.1
local STEPS = 200

local function optimizer() return {param_groups = {{lr = BASE_LR}}} end

-- the lr curve of a schedule over steps 0..n: lr_at when the schedule is pure, else by stepping
local function curve(s, n, metric_at)
  local x, y = {}, {}
  for t = 0, n do
    x[#x + 1] = t
    if metric_at then
      if t > 0 then s:step(metric_at(t)) end
      y[#y + 1] = s:get_last_lr()[1]
    else
      y[#y + 1] = s:lr_at(t)[1]
    end
  end
  return x, y
end

local function series(name, s, n, metric_at)
  local x, y = curve(s, n or STEPS, metric_at)
  return {name = name, x = x, y = y}
end

local function figure(file, spec)
  local path = outdir .. "/" .. file
  spec.width = 820             -- room for a legend beside the plot when no corner is free
  plot.line(spec):save(path)
  print("wrote " .. path)
end

local function make(name, opts) return sched[name](optimizer(), opts) end

figure("schedules_decay.svg", {
  title = "Decay schedules (base lr 0.1)", xlabel = "step", ylabel = "learning rate",
  series = {
    series("Step(step_size=50, gamma=0.5)", make("Step", {step_size = 50, gamma = 0.5})),
    series("MultiStep({60, 120, 160}, 0.3)", make("MultiStep", {milestones = {60, 120, 160}, gamma = 0.3})),
    series("Exponential(0.985)", make("Exponential", {gamma = 0.985})),
    series("Polynomial(200, power=2)", make("Polynomial", {total_iters = 200, power = 2})),
    series("CosineAnnealing(T_max=200)", make("CosineAnnealing", {T_max = 200})),
    series("Linear(1 \u{2192} 0.1, 150 steps)", make("Linear", {start_factor = 1, end_factor = 0.1,
                                                                 total_iters = 150})),
    series("Constant(0.5, 40 steps)", make("Constant", {factor = 0.5, total_iters = 40})),
  },
})

local function lambda_warmup(t) return math.min(1, (t + 1) / 20) * 0.99 ^ t end

figure("schedules_warmup.svg", {
  title = "Warmup schedules (base lr 0.1)", xlabel = "step", ylabel = "learning rate",
  series = {
    series("WarmupCosine(warmup=20, total=200)", make("WarmupCosine", {warmup = 20, total = 200})),
    series("WarmupCosine(..., min_lr=0.01)", make("WarmupCosine", {warmup = 20, total = 200, min_lr = 0.01})),
    series("WarmupLinear(warmup=20, total=200)", make("WarmupLinear", {warmup = 20, total = 200})),
    series("Lambda(min(1, (t+1)/20) \u{00b7} 0.99^t)", make("Lambda", {lr_lambda = lambda_warmup})),
    (function()
      local opt = optimizer()
      local s = sched.Sequential(opt, {sched.Linear(opt, {start_factor = 0.01, total_iters = 30}),
                                       sched.Exponential(opt, {gamma = 0.98})}, {30})
      return series("Sequential(Linear, Exponential; milestone 30)", s)
    end)(),
  },
})

figure("schedules_cyclic.svg", {
  title = "Cyclic and restart schedules", xlabel = "step", ylabel = "learning rate",
  series = {
    series("OneCycle(max_lr=0.1, cos)", make("OneCycle", {max_lr = 0.1, total_steps = STEPS})),
    series("OneCycle(linear, three_phase)", make("OneCycle", {max_lr = 0.1, total_steps = STEPS,
                                                              anneal_strategy = "linear", three_phase = true})),
    series("Cyclic(triangular2, 25 up)", make("Cyclic", {base_lr = 0.005, max_lr = 0.1, step_size_up = 25,
                                                         mode = "triangular2"})),
    series("Cyclic(exp_range, gamma=0.99)", make("Cyclic", {base_lr = 0.005, max_lr = 0.1, step_size_up = 25,
                                                            mode = "exp_range", gamma = 0.99})),
    series("SGDR(T_0=20, T_mult=2)", make("CosineAnnealingWarmRestarts", {T_0 = 20, T_mult = 2, eta_min = 0.001})),
  },
})

-- ReduceLROnPlateau reacts to a metric: a loss that improves, then stalls with noise
local function loss_at(t)
  local trend = t < 60 and math.exp(-t / 20) or math.exp(-3) * (1 + 0.002 * math.sin(t))
  return trend
end

local plateau_series = {}
do
  local opt = optimizer()
  plateau_series[1] = series("ReduceLROnPlateau(patience=10, factor=0.5)",
    sched.ReduceLROnPlateau(opt, {patience = 10, factor = 0.5}), STEPS, loss_at)
  local opt2 = optimizer()
  local chained = sched.Chained(opt2, {sched.WarmupCosine(opt2, {warmup = 20, total = 200}),
                                       sched.ReduceLROnPlateau(opt2, {patience = 10, factor = 0.5})})
  plateau_series[2] = series("Chained(WarmupCosine, ReduceLROnPlateau)", chained, STEPS, loss_at)
  local loss = {name = "metric (a loss, \u{00d7}0.1)", x = {}, y = {}, dash = "dotted", color = "#7f7f7f"}
  for t = 1, STEPS do loss.x[t], loss.y[t] = t, loss_at(t) * 0.1 end
  plateau_series[3] = loss
end

figure("schedules_plateau.svg", {
  title = "Metric-driven: ReduceLROnPlateau alone and chained", xlabel = "step", ylabel = "learning rate",
  series = plateau_series,
})

figure("schedules_log.svg", {
  title = "The same schedules on a log scale", xlabel = "step", ylabel = "learning rate", logy = true,
  series = {
    series("Exponential(0.96)", make("Exponential", {gamma = 0.96})),
    series("Step(40, 0.1)", make("Step", {step_size = 40, gamma = 0.1})),
    series("OneCycle(max_lr=0.1)", make("OneCycle", {max_lr = 0.1, total_steps = STEPS})),
    series("WarmupLinear(20, 200)", make("WarmupLinear", {warmup = 20, total = 200})),
  },
})
