--- examples/seed/variants.lua - the seed's claim 7: its three pseudo-code variants (MXNet's Adam,
-- MXNet's AdamW with the bias correction folded into the learning rate, the BERT AdamW without
-- bias correction) give exactly the updates their pseudo-code says -- in mo.optim's flavors
-- "mxnet" (Adam and AdamW) and "bert" (AdamW).
--
--   lua5.4 examples/seed/variants.lua [--out out/seed] [--steps 20] [--n 16] [--quick]
--
-- claims.variant_step transcribes the seed's pseudo-code line for line in plain Lua (doubles);
-- mo.optim runs the same steps in float32 from the same float32 weights and gradients. The
-- hyperparameters are chosen so that every switch shows: b2 = 0.99 (the correction is far from
-- 1 for many steps), eps = 1e-3 (comparable to sqrt(v), so where eps sits matters),
-- wd = 0.1, rescale_grad = 0.5 and clip_gradient = 0.04 (about a fifth of the gradients are
-- clipped). Next to each comparison, the same variant is compared with the flavor with ONE
-- switch flipped (Adam: eps_mode "raw"; MXNet AdamW: weight_decay_mode "decoupled"; BERT:
-- bias_correction = true), to show the comparison would see a wrong formula.
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local o = common.args("variants", arg, {
  steps = {"int", 20, "steps"},
  n = {"int", 16, "weights"},
})
if o.quick then o.steps = 10 end
if o.steps < 1 or o.n < 1 then common.die("variants", "--steps and --n must be at least 1") end

local hp = {lr = 1e-2, b1 = 0.9, b2 = 0.99, eps = 1e-3, wd = 0.1, rescale_grad = 0.5,
            clip_gradient = 0.04, grad_scale = 0.03}
local LABEL = {
  mxnet_adam = "MXNet Adam (Adam flavor=mxnet)",
  mxnet_adamw = "MXNet AdamW, folded bc (AdamW flavor=mxnet)",
  bert_adamw = "BERT AdamW, no bc (AdamW flavor=bert)",
}
local OTHER = {
  mxnet_adam = "eps_mode=raw",
  mxnet_adamw = "weight_decay_mode=decoupled",
  bert_adamw = "bias_correction=true",
}

print(("lr %g, betas (%g, %g), eps %g, wd %g, rescale_grad %g, clip_gradient %g; %d weights,"
       .. " %d steps"):format(hp.lr, hp.b1, hp.b2, hp.eps, hp.wd, hp.rescale_grad,
                             hp.clip_gradient, o.n, o.steps))
print("max |w_moonopt - w_pseudocode| after each step (float32 kernel vs the literal transcription"
      .. " in doubles)")
local diff, other = {}, {}
for _, k in ipairs(claims.VARIANTS) do
  diff[k], other[k] = claims.variant_compare(k, hp, o.n, o.steps)
end
local header = {"step"}
for _, k in ipairs(claims.VARIANTS) do
  header[#header + 1] = k
  header[#header + 1] = "(" .. OTHER[k] .. ")"
end
local rows = {}
for t = 1, o.steps do
  local r = {tostring(t)}
  for _, k in ipairs(claims.VARIANTS) do
    r[#r + 1] = ("%.2e"):format(diff[k][t])
    r[#r + 1] = ("%.2e"):format(other[k][t])
  end
  rows[#rows + 1] = r
end
common.print_table(header, rows)
print()
for _, k in ipairs(claims.VARIANTS) do
  local worst, closest = 0, math.huge
  for t = 1, o.steps do
    worst = math.max(worst, diff[k][t])
    if t > 1 then closest = math.min(closest, other[k][t]) end
  end
  print(("%-46s largest difference %.1e; with %s: %.1e or more after step 1"):format(
    LABEL[k], worst, OTHER[k], closest))
end
print("(float32 has a relative precision of 6e-8; the weights are of order 1)")

local x = {}
for t = 1, o.steps do x[t] = t end
local COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c"}
local series = {}
for j, k in ipairs(claims.VARIANTS) do
  series[#series + 1] = {name = LABEL[k], x = x, y = diff[k], color = COLORS[j], marker = true}
end
for j, k in ipairs(claims.VARIANTS) do
  series[#series + 1] = {name = k .. " vs " .. OTHER[k], x = x, y = other[k], color = COLORS[j],
                         dash = "dashed"}
end
common.save(mo.plot.line{
  title = "Seed pseudo-code (doubles) vs mo.optim (float32): max |difference|",
  xlabel = "step", ylabel = "max |w_moonopt - w_pseudocode|", logy = true,
  series = series, legend = "outside", width = 900,
}, o.out, "variants.svg")
