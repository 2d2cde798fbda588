--- examples/seed/first_steps.lua - the seed's claim 2 (the Adam paper's argument for bias
-- correction): with sparse gradients, leaving the correction out makes the first steps much
-- larger when b2 is "small" -- which, as measured here, means when 1 - b2 is small (b2 close
-- to 1); with b2 = 0.9 the uncorrected steps are smaller, not larger.
--
--   lua5.4 examples/seed/first_steps.lua [--out out/seed] [--n 5000] [--steps 200]
--                                        [--density 0.05] [--quick]
--
-- mo.optim.Adam (lr 1e-3, b1 0.9) with bias_correction = true and false, b2 in
-- {0.9, 0.99, 0.999}, on n coordinates whose gradient is N(0, 1) with probability `density`
-- at each step and 0 otherwise (the same gradients for every run). Prints the mean and the
-- largest |step| / lr over the first 10 and 100 steps and the ratio uncorrected / corrected;
-- writes first_steps.svg (mean |step| / lr per step) and first_steps_dense.svg (the closed
-- form of the first step's ratio for a dense gradient, (1 - b1) / sqrt(1 - b2), over b2).
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local o = common.args("first_steps", arg, {
  n = {"int", 5000, "coordinates"},
  steps = {"int", 200, "steps"},
  density = {"number", 0.05, "probability that a coordinate has a gradient at a step"},
  lr = {"number", 1e-3, "learning rate"},
  b1 = {"number", 0.9, "beta1"},
})
if o.quick then o.n, o.steps = 500, 100 end
if o.steps < 10 then common.die("first_steps", "--steps must be at least 10") end
if not (o.density > 0 and o.density <= 1) then
  common.die("first_steps", "--density must be in (0, 1], got " .. o.density)
end

local B2 = {0.9, 0.99, 0.999}
local COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c"}

local function mean_of(list, k)
  local s = 0
  for i = 1, k do s = s + list[i] end
  return s / k
end
local function max_of(list, k)
  local s = 0
  for i = 1, k do s = math.max(s, list[i]) end
  return s
end

print(("Adam, lr %g, b1 %g, %d coordinates, sparse N(0,1) gradients (density %g), %d steps")
  :format(o.lr, o.b1, o.n, o.density, o.steps))
print("|step| / lr: mean over coordinates and steps 1..k, and the largest single step")
local rows, series = {}, {}
local k2 = math.min(100, o.steps)
for j, b2 in ipairs(B2) do
  local run = {}
  for _, bc in ipairs{true, false} do
    local mean_step, max_step = claims.first_steps{n = o.n, steps = o.steps, density = o.density,
                                                   lr = o.lr, b1 = o.b1, b2 = b2,
                                                   bias_correction = bc, seed = o.seed}
    run[bc] = {mean = mean_step, max = max_step}
    local x = {}
    for t = 1, o.steps do x[t] = t end
    series[#series + 1] = {name = ("b2=%g, %s"):format(b2, bc and "corrected" or "uncorrected"),
                           x = x, y = mean_step, color = COLORS[j],
                           dash = bc and "solid" or "dashed"}
  end
  local c, u = run[true], run[false]
  rows[#rows + 1] = {
    tostring(b2),
    ("%.4f"):format(mean_of(c.mean, 10)), ("%.4f"):format(mean_of(u.mean, 10)),
    ("%.2f"):format(mean_of(u.mean, 10) / mean_of(c.mean, 10)),
    ("%.4f"):format(mean_of(c.mean, k2)), ("%.4f"):format(mean_of(u.mean, k2)),
    ("%.2f"):format(mean_of(u.mean, k2) / mean_of(c.mean, k2)),
    ("%.2f"):format(max_of(c.max, k2)), ("%.2f"):format(max_of(u.max, k2)),
  }
end
common.print_table({"b2", "corr 1..10", "uncorr 1..10", "ratio",
                    ("corr 1..%d"):format(k2), ("uncorr 1..%d"):format(k2), "ratio",
                    "max corr", "max uncorr"}, rows)
print()
print("dense gradient, step 1: uncorrected / corrected = (1 - b1) / sqrt(1 - b2)")
rows = {}
for _, b2 in ipairs(B2) do
  rows[#rows + 1] = {tostring(b2), ("%.3f"):format(claims.first_step_ratio(o.b1, b2))}
end
common.print_table({"b2", "ratio"}, rows)
print(("the uncorrected first step is larger exactly when 1 - b2 < (1 - b1)^2 = %g")
  :format((1 - o.b1) ^ 2))

common.save(mo.plot.line{
  title = ("Adam with sparse gradients (density %g): mean |step| / lr"):format(o.density),
  xlabel = "step", ylabel = "mean |step| / lr", logy = true,
  series = series, legend = "outside", width = 820,
}, o.out, "first_steps.svg")

-- the closed form over b2, plotted against 1 - b2 (the quantity the paper's "small" is about)
local x, y = {}, {}
for i = 0, 80 do
  local one_minus = 10 ^ (-4 + 3.7 * i / 80) -- 1e-4 .. 0.5
  x[#x + 1], y[#y + 1] = one_minus, claims.first_step_ratio(o.b1, 1 - one_minus)
end
-- the three b2 of the experiment as lone dots: NaN between them breaks the line
local mx, my = {}, {}
for _, b2 in ipairs(B2) do
  if #mx > 0 then mx[#mx + 1], my[#my + 1] = 1 - b2, 0 / 0 end
  mx[#mx + 1], my[#my + 1] = 1 - b2, claims.first_step_ratio(o.b1, b2)
end
common.save(mo.plot.line{
  title = ("First step, dense gradient: uncorrected / corrected, b1 = %g"):format(o.b1),
  xlabel = "1 - b2", ylabel = "(1 - b1) / sqrt(1 - b2)", logx = true, logy = true,
  series = {
    {name = "(1-b1)/sqrt(1-b2)", x = x, y = y},
    {name = "b2 = 0.9, 0.99, 0.999", x = mx, y = my, marker = true},
    {name = "equal steps", x = {x[1], x[#x]}, y = {1, 1}, dash = "dotted", color = "#888888"},
  },
  legend = "upper right",
}, o.out, "first_steps_dense.svg")
