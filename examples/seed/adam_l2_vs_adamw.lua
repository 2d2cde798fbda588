--- examples/seed/adam_l2_vs_adamw.lua - the seed's claim 4: under Adam, L2 regularization decays
-- weights with large gradient magnitude less than the others; decoupled weight decay (AdamW)
-- decays every weight at the same rate.
--
--   lua5.4 examples/seed/adam_l2_vs_adamw.lua [--out out/seed] [--steps 3000] [--n 2000] [--quick]
--
-- Four groups of n weights, all starting at 1. The loss gradient of group k is pure noise,
-- N(0, s_k^2) with s = 0.01, 0.1, 1, 10 (the loss pulls nowhere; the second half of a group sees
-- the first half's noise negated, so the group mean moves only by the regularizer). The same
-- noise goes to mo.optim.Adam(weight_decay = wd) (L2 in the gradient) and to
-- mo.optim.AdamW(weight_decay = wd) (w *= 1 - lr wd); lr 1e-2, wd 1e-2.
-- Measured: the group mean over the steps, and its average relative decay per step,
-- -ln(mean(t*)) / t*, with t* the step where the mean first reaches 1/2 (else the last step).
-- Expected (the AdamW paper's argument): Adam normalizes the L2 gradient wd*w by sqrt(v) ~ s,
-- so the L2 rate is about lr*wd/s while wd*w << s; AdamW's is lr*wd for every group.
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local o = common.args("adam_l2_vs_adamw", arg, {
  steps = {"int", 3000, "Adam steps"},
  n = {"int", 2000, "weights per group (even)"},
  lr = {"number", 1e-2, "learning rate"},
  wd = {"number", 1e-2, "weight decay, used as L2 (Adam) and decoupled (AdamW)"},
})
if o.quick then o.steps, o.n = 500, 200 end
if o.n < 2 or o.n % 2 ~= 0 then common.die("adam_l2_vs_adamw", "--n must be even and >= 2") end
if o.steps < 1 then common.die("adam_l2_vs_adamw", "--steps must be at least 1") end

local SCALES = {0.01, 0.1, 1, 10}
local COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"}
local run = {}
for _, mode in ipairs{"l2", "adamw"} do
  run[mode] = claims.adam_decay{scales = SCALES, n = o.n, steps = o.steps, lr = o.lr, wd = o.wd,
                                mode = mode, seed = o.seed}
end

print(("Adam+L2 vs AdamW, lr %g, wd %g, betas (0.9, 0.999); %d weights per group start at 1;"
       .. " %d steps"):format(o.lr, o.wd, o.n, o.steps))
print("gradient noise N(0, s^2); relative decay per step of the group mean:")
local rows = {}
for k, s in ipairs(SCALES) do
  local l2, w = run.l2.rate[k], run.adamw.rate[k]
  rows[#rows + 1] = {
    ("%g"):format(s), ("%.3e"):format(l2), ("%.3e"):format(o.lr * o.wd / s), ("%.3e"):format(w),
    ("%.3e"):format(o.lr * o.wd), ("%.3g"):format(l2 / w),
    ("%.4f"):format(run.l2.mean[k][o.steps + 1]), ("%.4f"):format(run.adamw.mean[k][o.steps + 1]),
  }
end
common.print_table({"s", "L2 rate", "lr*wd/s", "AdamW rate", "lr*wd", "L2/AdamW",
                    "L2 mean at end", "AdamW mean at end"}, rows)
local hi, lo = run.l2.rate[#SCALES], run.l2.rate[1]
print(("L2: the s = %g group decays %.0fx slower than the s = %g group; AdamW: all groups within"
       .. " %.2f%% of lr*wd"):format(SCALES[#SCALES], lo / hi, SCALES[1], 100 * (function()
         local m = 0
         for k = 1, #SCALES do m = math.max(m, math.abs(run.adamw.rate[k] / (o.lr * o.wd) - 1)) end
         return m
       end)()))
print("(the L2 rate follows lr*wd/s while wd*w << s; at s = 0.01 the L2 gradient is as large as the"
      .. " noise, Adam's step saturates near lr, and the rate is below lr*wd/s)")

-- figures
local x = {}
for t = 0, o.steps do x[t + 1] = t end
local series = {}
for k, s in ipairs(SCALES) do
  series[#series + 1] = {name = ("s=%g, Adam+L2"):format(s), x = x, y = run.l2.mean[k],
                         color = COLORS[k]}
end
for k, s in ipairs(SCALES) do
  series[#series + 1] = {name = ("s=%g, AdamW"):format(s), x = x, y = run.adamw.mean[k],
                         color = COLORS[k], dash = "dashed"}
end
common.save(mo.plot.line{
  title = ("Mean weight under gradient noise of size s (lr=%g, wd=%g)"):format(o.lr, o.wd),
  xlabel = "step", ylabel = "group mean of w", ylim = {0, 1.02},
  series = series, legend = "outside", width = 820,
}, o.out, "adam_l2_vs_adamw.svg")

local l2r, wr, th = {}, {}, {}
for k = 1, #SCALES do l2r[k], wr[k], th[k] = run.l2.rate[k], run.adamw.rate[k], o.lr * o.wd / SCALES[k] end
common.save(mo.plot.line{
  title = "Relative decay per step against gradient scale",
  xlabel = "gradient noise scale s", ylabel = "decay per step", logx = true, logy = true,
  series = {
    {name = "Adam+L2 (measured)", x = SCALES, y = l2r, marker = true},
    {name = "AdamW (measured)", x = SCALES, y = wr, marker = true},
    {name = "lr*wd/s", x = SCALES, y = th, dash = "dotted", color = "#888888"},
  },
  legend = "upper right",
}, o.out, "adam_l2_vs_adamw_rates.svg")
