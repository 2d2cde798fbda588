--- examples/seed/sgd_l2_vs_wd.lua - the seed's claim 3: under plain SGD, L2 regularization and
-- weight decay are the same thing; with momentum they are not, and no constant makes them
-- equal for all t.
--
--   lua5.4 examples/seed/sgd_l2_vs_wd.lua [--out out/seed] [--steps 300] [--quick]
--
-- The problem: f(w) = 1/2 sum_i h_i (w_i - c_i)^2 with h = {0.05, 0.01}, c = {1, -1},
-- w0 = {1.5, 1.5}; lr 0.05 and momentum 0.9 keep the heavy ball overdamped (lr h < (1 - sqrt mu)^2)
-- so the curves are smooth.
-- Conventions, stated exactly:
--   L2 (coupled):        g <- g + wd * w, then the optimizer (mo.optim.SGD weight_decay = wd)
--   decoupled, moonopt:  w <- w * (1 - lr * wd')   (PyTorch's AdamW convention)
--   decoupled, paper:    w <- w * (1 - lambda)     (Loshchilov & Hutter, and the seed)
-- Plain SGD: w <- w - lr (g + wd w) = (1 - lr wd) w - lr g, so L2 with wd equals decoupled
-- decay with wd' = wd (moonopt) or lambda = lr * wd (paper), i.e. wd = lambda / lr: the seed's
-- "wd' = wd / lr" is this second convention. The runs use mo.optim.SGD in float32; the
-- best-fit search (below) uses the same algorithm in doubles (claims.sgd_sim), checked against
-- mo.optim first.
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local o = common.args("sgd_l2_vs_wd", arg, {
  steps = {"int", 1000, "SGD steps"},
  lr = {"number", 0.05, "learning rate"},
  wd = {"number", 0.01, "L2 coefficient"},
  momentum = {"number", 0.9, "momentum of the second experiment"},
})
if o.quick then o.steps = 200 end
if o.steps < 5 then common.die("sgd_l2_vs_wd", "--steps must be at least 5") end
if not (o.momentum > 0 and o.momentum < 1) then
  common.die("sgd_l2_vs_wd", "--momentum must be in (0, 1), got " .. o.momentum)
end

local function problem(extra)
  local p = {h = {0.05, 0.01}, c = {1, -1}, w0 = {1.5, 1.5}, lr = o.lr, steps = o.steps}
  for k, v in pairs(extra) do p[k] = v end
  return p
end

-- 1. plain SGD, at several learning rates
print(("f(w) = 1/2 sum h_i (w_i - c_i)^2, h = {0.05, 0.01}, c = {1, -1}, w0 = {1.5, 1.5}; "
       .. "L2 wd = %g; %d steps"):format(o.wd, o.steps))
print()
print("Plain SGD (mo.optim.SGD, float32): max |w_L2 - w_decoupled| over the whole trajectory")
local lam = o.lr * o.wd -- the paper's lambda that matches at the default lr
local rows = {}
for _, lr in ipairs{o.lr, o.lr / 2, o.lr / 10} do
  local l2 = claims.sgd_run(problem{lr = lr, l2 = o.wd})
  local dec = claims.sgd_run(problem{lr = lr, decay = lr * o.wd})       -- wd' = wd
  local paper = claims.sgd_run(problem{lr = lr, decay = lam})             -- lambda fixed
  local exact = claims.max_traj_diff(claims.sgd_sim(problem{lr = lr, l2 = o.wd}),
                                     claims.sgd_sim(problem{lr = lr, decay = lr * o.wd}))
  rows[#rows + 1] = {("%g"):format(lr), ("%.2e"):format(claims.max_traj_diff(l2, dec)),
                     ("%.2e"):format(exact), ("%.2e"):format(claims.max_traj_diff(l2, paper))}
end
common.print_table({"lr", "wd' = wd (w *= 1-lr*wd')", "same, in doubles",
                    ("lambda = %g (w *= 1-lambda)"):format(lam)}, rows)
print(("=> the same trajectory (to float32 rounding) with wd' = wd in moonopt's convention, or"
       .. " with lambda = lr * wd,\n   i.e. wd = lambda / lr, in the paper's: a fixed lambda"
       .. " matches L2 at one lr only."))

-- 2. with momentum
local mu = o.momentum
print()
print(("SGD with momentum %g (mo.optim.SGD), lr %g:"):format(mu, o.lr))
local l2m = claims.sgd_run(problem{l2 = o.wd, momentum = mu})
local dec1 = claims.sgd_run(problem{decay = o.lr * o.wd, momentum = mu})
local decinf = claims.sgd_run(problem{decay = o.lr * o.wd / (1 - mu), momentum = mu})
local sim_gap = math.max(
  claims.max_traj_diff(l2m, claims.sgd_sim(problem{l2 = o.wd, momentum = mu})),
  claims.max_traj_diff(dec1, claims.sgd_sim(problem{decay = o.lr * o.wd, momentum = mu})))
rows = {}
for _, t in ipairs{1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000} do
  if t <= o.steps then
    rows[#rows + 1] = {tostring(t), ("%.4f"):format(l2m[t + 1][2]), ("%.4f"):format(dec1[t + 1][2]),
                       ("%.4f"):format(decinf[t + 1][2])}
  end
end
common.print_table({"t", "w2 L2", "w2 decoupled wd'=wd", ("w2 decoupled wd'=wd/(1-%g)"):format(mu)},
                   rows)
print(("max |w_L2 - w_decoupled(wd'=wd)| = %.3f, max |w_L2 - w_decoupled(wd'=wd/(1-mu))| = %.3f")
  :format(claims.max_traj_diff(l2m, dec1), claims.max_traj_diff(l2m, decinf)))
print(("(the double-precision transcription used below follows mo.optim.SGD to %.1e)"):format(sim_gap))

-- 3. the constant that would have to replace L2: fitted per horizon T
local Ts = {}
for _, T in ipairs{1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 40, 50, 70, 100, 150, 200, 300, 400, 500,
                   700, 1000, 1500, 2000} do
  if T <= o.steps then Ts[#Ts + 1] = T end
end
local fit, resid = claims.best_fit_decay(problem{l2 = o.wd, momentum = mu}, Ts,
                                         3 * o.wd / (1 - mu), o.quick and 60 or 300)
print()
print("The decoupled coefficient wd'(T) that best reproduces the L2 weights after T steps")
print("(least squares over both weights; a constant equivalent would give one value for all T):")
rows = {}
local ratio = {}
for j, T in ipairs(Ts) do
  ratio[j] = fit[j] / o.wd
  rows[#rows + 1] = {tostring(T), ("%.4f"):format(fit[j]), ("%.3f"):format(ratio[j]),
                     ("%.1e"):format(resid[j])}
end
common.print_table({"T", "wd'(T)", "wd'(T)/wd", "remaining distance"}, rows)
print(("wd'(T)/wd goes from %.3f (T = %d) to %.3f (T = %d); the limit 1/(1-mu) = %g is where the"
       .. " fixed points agree."):format(ratio[1], Ts[1], ratio[#Ts], Ts[#Ts], 1 / (1 - mu)))

-- figures
local t_axis = {}
for t = 0, o.steps do t_axis[t + 1] = t end
local function coord(traj, i)
  local y = {}
  for t = 1, #traj do y[t] = traj[t][i] end
  return y
end
local l2p = claims.sgd_run(problem{l2 = o.wd})
local decp = claims.sgd_run(problem{decay = o.lr * o.wd})
common.save(mo.plot.line{
  title = ("SGD on a quadratic: L2 (wd=%g) vs decoupled decay, weight w2"):format(o.wd),
  xlabel = "step", ylabel = "w2", width = 860,
  series = {
    {name = "plain SGD, L2", x = t_axis, y = coord(l2p, 2), color = "#1f77b4", linewidth = 4},
    {name = "plain SGD, decoupled wd'=wd", x = t_axis, y = coord(decp, 2), color = "#aec7e8",
     dash = "dashed"},
    {name = ("momentum %g, L2"):format(mu), x = t_axis, y = coord(l2m, 2), color = "#d62728"},
    {name = "momentum, decoupled wd'=wd", x = t_axis, y = coord(dec1, 2), color = "#ff7f0e",
     dash = "dashed"},
    {name = "momentum, decoupled wd'=wd/(1-mu)", x = t_axis, y = coord(decinf, 2),
     color = "#2ca02c", dash = "dashdot"},
  },
  legend = "outside",
}, o.out, "sgd_l2_vs_wd.svg")

common.save(mo.plot.line{
  title = ("SGD momentum %g: the decoupled wd' matching L2 after T steps"):format(mu),
  xlabel = "horizon T (steps)", ylabel = "best-fit wd'(T) / wd", logx = true,
  series = {
    {name = "best fit", x = Ts, y = ratio, marker = true},
    {name = "1 (plain SGD's answer)", x = {Ts[1], Ts[#Ts]}, y = {1, 1}, dash = "dotted",
     color = "#888888"},
    {name = "1/(1-mu)", x = {Ts[1], Ts[#Ts]}, y = {1 / (1 - mu), 1 / (1 - mu)}, dash = "dashed",
     color = "#888888"},
  },
  legend = "lower right",
}, o.out, "sgd_l2_vs_wd_fit.svg")
