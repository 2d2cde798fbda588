--- examples/seed/bias_correction.lua - the seed's claim 1: Adam's zero-initialised moving
-- averages are biased toward 0 by the factor 1 - b^t, and the bias correction multiplies the
-- step by sqrt(1 - b2^t) / (1 - b1^t), which over the first 10,000 steps first falls, then
-- rises, then tends to 1 (the seed's figure).
--
--   lua5.4 examples/seed/bias_correction.lua [--out out/seed] [--steps 10000] [--quick]
--   (from a checkout: LUA_PATH="lua/?.lua;lua/?/init.lua;examples/?.lua;;"
--    LUA_CPATH="build/?.so;;"; `make seed-figures` sets them)
--
-- Writes bias_correction.svg (the factor, log-x) and bias_correction_moments.svg (mean of
-- Adam's exp_avg / exp_avg_sq over 20,000 coordinates with random gradients, against
-- 1 - b^t). Prints the minimum of the factor and a table of both.
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local o = common.args("bias_correction", arg, {
  steps = {"int", 10000, "steps of the factor curve"},
  b1 = {"number", 0.9, "beta1"},
  b2 = {"number", 0.999, "beta2"},
  n = {"int", 20000, "coordinates of the moment experiment"},
  moment_steps = {"int", 5000, "steps of the moment experiment"},
})
if o.quick then o.n, o.moment_steps = 2000, 500 end
if o.steps < 2 then common.die("bias_correction", "--steps must be at least 2") end

-- 1. the correction factor
local ts, fs, tmin, fmin = claims.bias_factor_curve(o.steps, o.b1, o.b2)
print(("Adam bias-correction factor sqrt(1 - b2^t) / (1 - b1^t), b1 = %g, b2 = %g, t = 1..%d")
  :format(o.b1, o.b2, o.steps))
local rows = {}
for _, t in ipairs{1, 2, 5, tmin, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000} do
  if t <= o.steps then
    rows[#rows + 1] = {tostring(t), ("%.4f"):format(fs[t]), ("%.4f"):format(1 - o.b1 ^ t),
                       ("%.4f"):format(1 - o.b2 ^ t)}
  end
end
common.print_table({"t", "factor", "1-b1^t", "1-b2^t"}, rows)
print(("minimum: factor %.4f at t = %d; factor(1) = %.4f; factor(%d) = %.6f"):format(
  fmin, tmin, fs[1], o.steps, fs[o.steps]))
local t99
for t = tmin, o.steps do
  if fs[t] >= 0.99 then t99 = t; break end
end
print(("falls from t = 1 to %d, then rises; first within 1%% of 1 at t = %s"):format(
  tmin, t99 and tostring(t99) or "(never)"))

common.save(mo.plot.line{
  title = ("Bias-correction factor sqrt(1-b2^t)/(1-b1^t), b1=%g, b2=%g"):format(o.b1, o.b2),
  xlabel = "step t", ylabel = "factor on the step", logx = true, ylim = {0, 1.05},
  series = {
    {name = "sqrt(1-b2^t)/(1-b1^t)", x = ts, y = fs},
    {name = ("minimum %.3f at t=%d"):format(fmin, tmin), x = {tmin}, y = {fmin}, marker = true},
    {name = "1", x = {1, o.steps}, y = {1, 1}, dash = "dotted", color = "#888888"},
  },
  legend = "upper left",
}, o.out, "bias_correction.svg")

-- 2. the bias itself, measured on mo.optim.Adam's state
local mu, sigma = 0.5, 1
local r = claims.moment_bias{n = o.n, steps = o.moment_steps, b1 = o.b1, b2 = o.b2,
                             mu = mu, sigma = sigma, seed = o.seed}
print()
print(("Zero-initialised averages, measured: %d coordinates, g ~ N(%g, %g^2) every step;"):format(
  o.n, mu, sigma))
print("mean of Adam's exp_avg / E[g] and exp_avg_sq / E[g^2] against 1 - b^t")
rows = {}
local worst = 0
for _, t in ipairs{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000} do
  if t <= o.moment_steps then
    rows[#rows + 1] = {tostring(t), ("%.4f"):format(r.m[t]), ("%.4f"):format(r.m_theory[t]),
                       ("%.4f"):format(r.v[t]), ("%.4f"):format(r.v_theory[t])}
  end
end
for t = 1, o.moment_steps do
  worst = math.max(worst, math.abs(r.v[t] / r.v_theory[t] - 1))
end
common.print_table({"t", "E[m]/E[g]", "1-b1^t", "E[v]/E[g^2]", "1-b2^t"}, rows)
print(("largest relative gap between measured E[v_t] and (1 - b2^t) E[g^2]: %.2f%%"):format(
  100 * worst))

-- corrected estimates, v / (1 - b2^t): flat at 1
local vhat = {}
for t = 1, o.moment_steps do vhat[t] = r.v[t] / r.v_theory[t] end
common.save(mo.plot.line{
  title = "Zero-initialised averages are biased toward 0 by 1 - b^t",
  xlabel = "step t", ylabel = "mean estimate / true moment", logx = true, ylim = {0, 1.1},
  series = {
    {name = "m_t / E[g] (measured)", x = r.t, y = r.m},
    {name = "1 - b1^t", x = r.t, y = r.m_theory, dash = "dashed"},
    {name = "v_t / E[g^2] (measured)", x = r.t, y = r.v},
    {name = "1 - b2^t", x = r.t, y = r.v_theory, dash = "dashed"},
    {name = "v_t / (1 - b2^t) / E[g^2]", x = r.t, y = vhat, dash = "dotted"},
  },
  legend = "outside", width = 820,
}, o.out, "bias_correction_moments.svg")
