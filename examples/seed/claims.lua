--- examples/seed/claims.lua - the computations behind the seed's seven claims, one section
-- per claim, kept apart from the scripts' printing and plotting so that
-- tests/lua/test_seed.lua can run each of them at a tiny size.
--
--   local claims = require "seed.claims"     (or dofile "examples/seed/claims.lua")
--
-- Conventions used throughout (docs/design.md, "The Adam family"): t counts steps from 1,
-- bc1 = 1 - b1^t, bc2 = 1 - b2^t. "L2" adds wd * w to the gradient before the optimizer sees
-- it; "decoupled" multiplies the weights by (1 - lr * wd) with the raw lr (PyTorch's AdamW).
local mo = require "moonopt"

local M = {}

local sqrt, abs, log = math.sqrt, math.abs, math.log

-- Values of a tensor as a flat Lua list (row-major).
local function values(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, x in ipairs(v) do walk(x) end
    else
      out[#out + 1] = v
    end
  end
  walk(t:totable())
  return out
end
M.values = values

local function copy_list(a)
  local b = {}
  for i = 1, #a do b[i] = a[i] end
  return b
end

-- ============================================================================================
-- Claim 1: bias correction
-- ============================================================================================

--- The factor Adam's bias correction puts on the step: sqrt(1 - b2^t) / (1 - b1^t).
-- (m / bc1) / sqrt(v / bc2) = [sqrt(bc2) / bc1] * m / sqrt(v): the seed's folded lr_t / lr.
function M.bias_factor(t, b1, b2)
  return sqrt(1 - b2 ^ t) / (1 - b1 ^ t)
end

--- The factor over t = 1..T. Returns ts, fs (lists) and the integer t where it is smallest
-- with that value.
function M.bias_factor_curve(T, b1, b2)
  local ts, fs = {}, {}
  local tmin, fmin = 1, math.huge
  for t = 1, T do
    local f = M.bias_factor(t, b1, b2)
    ts[t], fs[t] = t, f
    if f < fmin then tmin, fmin = t, f end
  end
  return ts, fs, tmin, fmin
end

--- The bias of the zero-initialised averages, measured with mo.optim.Adam itself: n
-- independent coordinates get gradients drawn from N(mu, sigma^2) every step; after each step
-- the mean over coordinates of Adam's exp_avg (m) and exp_avg_sq (v) is divided by E[g] = mu
-- and E[g^2] = mu^2 + sigma^2. Theory: E[m_t] = (1 - b1^t) E[g], E[v_t] = (1 - b2^t) E[g^2].
-- o: n, steps, b1, b2, mu, sigma, seed. Returns {t =, m =, v =, m_theory =, v_theory =}.
function M.moment_bias(o)
  mo.manual_seed(o.seed or 1)
  local p = mo.zeros(o.n)
  p.grad = mo.zeros(o.n)
  -- lr = 0: the weights stay put; only the moment estimates matter here
  local opt = mo.optim.Adam({p}, {lr = 0, betas = {o.b1, o.b2}})
  local eg, eg2 = o.mu, o.mu * o.mu + o.sigma * o.sigma
  local r = {t = {}, m = {}, v = {}, m_theory = {}, v_theory = {}}
  for t = 1, o.steps do
    p.grad:normal_(o.mu, o.sigma)
    opt:step()
    local st = opt.state[p]
    r.t[t] = t
    r.m[t] = st.exp_avg:mean():item() / eg
    r.v[t] = st.exp_avg_sq:mean():item() / eg2
    r.m_theory[t] = 1 - o.b1 ^ t
    r.v_theory[t] = 1 - o.b2 ^ t
  end
  return r
end

-- ============================================================================================
-- Claim 2: the first steps with and without bias correction
-- ============================================================================================

-- Sparse gradients: each coordinate gets a N(0, 1) gradient with probability `density` at each
-- step, else exactly 0. Lua's own generator, reseeded per run, so every run sees the same
-- gradients. Returns a function step -> Lua list of n gradients.
local function sparse_gradients(n, density, seed)
  local rng_state = {}
  math.randomseed(seed)
  local function normal()
    -- Box-Muller; 1 - random() is in (0, 1]
    local u1, u2 = 1 - math.random(), math.random()
    return sqrt(-2 * log(u1)) * math.cos(2 * math.pi * u2)
  end
  return function()
    for i = 1, n do
      if math.random() < density then rng_state[i] = normal() else rng_state[i] = 0 end
    end
    return rng_state
  end
end

--- Adam (mo.optim.Adam, PyTorch flavor) on n coordinates with sparse N(0, 1) gradients.
-- o: n, steps, density, lr, b1, b2, bias_correction, seed.
-- Returns two lists over the steps: mean |dw| / lr over all coordinates and max |dw| / lr.
function M.first_steps(o)
  local p = mo.zeros(o.n)
  local opt = mo.optim.Adam({p}, {lr = o.lr, betas = {o.b1, o.b2},
                                  bias_correction = o.bias_correction})
  local next_grad = sparse_gradients(o.n, o.density, o.seed or 1)
  local prev = p:clone()
  local mean_step, max_step = {}, {}
  for t = 1, o.steps do
    p.grad = mo.tensor(next_grad())
    opt:step()
    local d = p:sub(prev):abs_()
    mean_step[t] = d:mean():item() / o.lr
    max_step[t] = d:max():item() / o.lr
    prev:copy(p)
  end
  return mean_step, max_step
end

--- The uncorrected / corrected step at the first step of a dense gradient, in closed form:
-- uncorrected m / sqrt(v) = (1 - b1) / sqrt(1 - b2) (times sign g); corrected it is 1.
function M.first_step_ratio(b1, b2)
  return (1 - b1) / sqrt(1 - b2)
end

-- ============================================================================================
-- Claim 3: SGD with L2 versus decoupled weight decay
-- ============================================================================================

-- The problem: f(w) = 1/2 sum_i h_i (w_i - c_i)^2 (sgd_run takes its gradient by autograd;
-- sgd_sim writes df/dw_i = h_i (w_i - c_i) out, as the reference it is).
-- A run is described by o: h, c, w0 (lists), lr, momentum, steps, and
--   l2     the optimizer's weight_decay (coupled: g += l2 * w),
--   decay  a decoupled decay applied before each step: w *= 1 - decay.
-- In moonopt's (and PyTorch's) convention a decoupled coefficient wd' means decay = lr * wd';
-- in the AdamW paper's convention (x *= 1 - lambda) it means decay = lambda.

--- The run with mo.optim.SGD (float32). Returns the trajectory: a list of weight lists,
-- entry 1 = w0, entry t + 1 = the weights after step t.
function M.sgd_run(o)
  local p = mo.tensor(o.w0)
  local opt = mo.optim.SGD({p}, {lr = o.lr, momentum = o.momentum or 0,
                                 weight_decay = o.l2 or 0})
  local traj = {copy_list(values(p))}
  local h = mo.tensor(o.h, {dtype = "float64"})
  local c = mo.tensor(o.c, {dtype = "float64"})
  for t = 1, o.steps do
    -- df/dw by autograd, in double at the current (float32) weights
    local w = mo.tensor(traj[t], {dtype = "float64"}):requires_grad_()
    local f = 0.5 * (h * (w - c) ^ 2):sum()
    f:backward()
    p.grad = w.grad:to("float32")
    -- the gradient was taken at the current w; the decoupled decay does not enter it
    if (o.decay or 0) ~= 0 then p:mul_(1 - o.decay) end
    opt:step()
    traj[t + 1] = values(p)
  end
  return traj
end

--- The same run in double precision, written out (PyTorch's SGD: the momentum buffer starts
-- at the first gradient, then buf = momentum * buf + g; w -= lr * buf).
function M.sgd_sim(o)
  local w, buf = copy_list(o.w0), nil
  local traj = {copy_list(w)}
  local mu, lr, l2, decay = o.momentum or 0, o.lr, o.l2 or 0, o.decay or 0
  for t = 1, o.steps do
    local d = {}
    for i = 1, #w do d[i] = o.h[i] * (w[i] - o.c[i]) + l2 * w[i] end
    if mu ~= 0 then
      if buf == nil then
        buf = d
      else
        for i = 1, #w do buf[i] = mu * buf[i] + d[i] end
      end
      d = buf
    end
    for i = 1, #w do w[i] = w[i] * (1 - decay) - lr * d[i] end
    traj[t + 1] = copy_list(w)
  end
  return traj
end

--- Largest absolute difference between two trajectories (lists of weight lists).
function M.max_traj_diff(a, b)
  local m = 0
  for t = 1, math.min(#a, #b) do
    for i = 1, #a[t] do m = math.max(m, abs(a[t][i] - b[t][i])) end
  end
  return m
end

local function dist2(a, b)
  local s = 0
  for i = 1, #a do s = s + (a[i] - b[i]) ^ 2 end
  return s
end

--- For each T in Ts: the decoupled coefficient wd'(T) (PyTorch convention, decay = lr * wd')
-- that brings SGD with momentum, without L2, closest (least squares) to the weights the L2
-- run with coefficient o.l2 has after T steps. A single constant equivalent to L2 would give a
-- flat list. Search: a grid of `grid` values in [0, cmax] (one simulation each, all T at
-- once), then golden-section refinement around the best grid point. Doubles throughout.
-- Returns wd'(T) and the remaining distance ||w_dec(T) - w_L2(T)|| for each T.
function M.best_fit_decay(o, Ts, cmax, grid)
  grid = grid or 200
  local Tmax = 0
  for _, T in ipairs(Ts) do Tmax = math.max(Tmax, T) end
  local ref = M.sgd_sim{h = o.h, c = o.c, w0 = o.w0, lr = o.lr, momentum = o.momentum,
                        l2 = o.l2, steps = Tmax}
  local function run(c, steps)
    return M.sgd_sim{h = o.h, c = o.c, w0 = o.w0, lr = o.lr, momentum = o.momentum,
                     decay = o.lr * c, steps = steps}
  end
  local best_k, best_d = {}, {}
  for k = 0, grid do
    local tr = run(cmax * k / grid, Tmax)
    for j, T in ipairs(Ts) do
      local d = dist2(tr[T + 1], ref[T + 1])
      if best_d[j] == nil or d < best_d[j] then best_k[j], best_d[j] = k, d end
    end
  end
  local fit, resid = {}, {}
  local phi = (sqrt(5) - 1) / 2
  for j, T in ipairs(Ts) do
    local lo = cmax * math.max(0, best_k[j] - 1) / grid
    local hi = cmax * math.min(grid, best_k[j] + 1) / grid
    local function f(c) return dist2(run(c, T)[T + 1], ref[T + 1]) end
    local a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    local fa, fb = f(a), f(b)
    for _ = 1, 60 do
      if fa < fb then
        hi, b, fb = b, a, fa
        a = hi - phi * (hi - lo)
        fa = f(a)
      else
        lo, a, fa = a, b, fb
        b = lo + phi * (hi - lo)
        fb = f(b)
      end
    end
    fit[j] = (lo + hi) / 2
    resid[j] = sqrt(f(fit[j]))
  end
  return fit, resid
end

-- ============================================================================================
-- Claim 4: per-weight decay under Adam + L2 versus AdamW
-- ============================================================================================

--- Weights with zero-mean gradient noise of different sizes: group k holds n (even) weights, all
-- starting at 1, whose loss gradient is N(0, scales[k]^2) at every step (the loss has no
-- preference, so any drift of the group's mean toward 0 is the regularizer's doing).
-- o: scales, n, steps, lr, wd, mode ("l2": mo.optim.Adam with weight_decay = wd;
-- "adamw": mo.optim.AdamW with weight_decay = wd), seed. Both modes draw the same noise.
-- Returns {mean = {k -> list over steps 0..steps of the group's mean weight},
--          rate = {k -> average relative decay per step}} where the rate is
-- -ln(mean(t*)) / t* at t* = the first step where the mean is <= 1/2 (or the last step).
function M.adam_decay(o)
  mo.manual_seed(o.seed or 1)
  if o.n % 2 ~= 0 then error("adam_decay: n must be even, got " .. tostring(o.n), 2) end
  local ps, halves = {}, {}
  for k = 1, #o.scales do
    ps[k] = mo.full({o.n}, 1)
    ps[k].grad = mo.zeros(o.n)
    halves[k] = {ps[k].grad:narrow(1, 1, o.n // 2), ps[k].grad:narrow(1, o.n // 2 + 1, o.n // 2)}
  end
  local opts = {lr = o.lr, weight_decay = o.wd, betas = o.betas or {0.9, 0.999}}
  local opt = o.mode == "l2" and mo.optim.Adam(ps, opts) or mo.optim.AdamW(ps, opts)
  local mean, rate, half = {}, {}, {}
  for k = 1, #o.scales do mean[k] = {1} end
  for t = 1, o.steps do
    for k, s in ipairs(o.scales) do
      -- antithetic noise: the second half of a group gets the first half's draws negated, so
      -- the noise's first-order effect on the group mean cancels and only the decay is left
      halves[k][1]:normal_(0, s)
      halves[k][2]:copy(halves[k][1]):neg_()
    end
    opt:step()
    for k = 1, #o.scales do
      local m = ps[k]:mean():item()
      mean[k][t + 1] = m
      if half[k] == nil and m <= 0.5 then half[k] = t end
    end
  end
  for k = 1, #o.scales do
    local t = half[k] or o.steps
    rate[k] = -log(mean[k][t + 1]) / t
  end
  return {mean = mean, rate = rate}
end

-- ============================================================================================
-- Claims 5 and 6: training runs on Fashion-MNIST (or any classification set)
-- ============================================================================================

--- An MLP: Linear/ReLU layers of the given sizes (e.g. {784, 128, 10}).
function M.mlp(sizes)
  local nn = mo.nn
  local layers = {}
  for i = 1, #sizes - 1 do
    layers[#layers + 1] = nn.Linear(sizes[i], sizes[i + 1])
    if i < #sizes - 1 then layers[#layers + 1] = nn.ReLU() end
  end
  return nn.Sequential(table.unpack(layers))
end

--- The CNN of the CNN main job (examples/fashion_cnn.lua), for 1x28x28 images:
-- Conv2d(1,32,3,pad 1) ReLU MaxPool2d(2) Conv2d(32,64,3,pad 1) ReLU MaxPool2d(2) Flatten
-- Linear(3136,128) ReLU Linear(128,10).
function M.cnn()
  local nn = mo.nn
  return nn.Sequential(nn.Conv2d(1, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(32, 64, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
end

--- Makes a Fashion-MNIST set's rows {n, 784} into images {n, 1, 28, 28} (a view), for M.cnn.
function M.as_images(ds)
  ds.x = ds.x:view(ds.x:size(1), 1, 28, 28)
  return ds
end

-- The model of a run: o.net() when given (e.g. M.cnn), else the MLP of o.sizes.
local function build(o)
  if o.net then return o.net() end
  return M.mlp(o.sizes)
end

--- The optimizer of one heatmap cell.
-- kind "l2": Adam (PyTorch flavor) with weight_decay = wd, an L2 term in the gradient.
-- kind "adamw": AdamW decaying by lambda per step (times the schedule's factor), the AdamW
-- paper's convention; moonopt/PyTorch decay by lr * weight_decay, so weight_decay = lambda / lr.
function M.make_optimizer(kind, params, lr, wd)
  if kind == "l2" then
    return mo.optim.Adam(params, {lr = lr, weight_decay = wd})
  elseif kind == "adamw" then
    return mo.optim.AdamW(params, {lr = lr, weight_decay = wd / lr})
  end
  error("make_optimizer: kind must be \"l2\" or \"adamw\", got " .. tostring(kind), 2)
end

--- One training run. o: train, test (data sets), sizes (MLP) or net (a function returning the
-- model), kind, lr, wd, epochs, batch, seed, cosine (a CosineAnnealing schedule over the whole
-- run; default true).
-- Returns the final test error and the history of mo.train.fit.
function M.fit_once(o)
  mo.manual_seed(o.seed or 1)
  local model = build(o)
  local opt = M.make_optimizer(o.kind, model:parameters(), o.lr, o.wd)
  local steps = o.epochs * math.ceil(mo.data.size(o.train) / o.batch)
  local sched
  if o.cosine ~= false then sched = mo.sched.CosineAnnealing(opt, {T_max = steps}) end
  local loss_fn = mo.nn.CrossEntropyLoss()
  -- no per-epoch evaluation: only the final test error is used
  local h = mo.train.fit{model = model, loss = loss_fn, optimizer = opt, scheduler = sched,
                         data = o.train, epochs = o.epochs, batch_size = o.batch,
                         progress = false}
  local _, acc = mo.train.evaluate(model, loss_fn, o.test)
  local err = 1 - acc
  if err ~= err then err = 1 end -- a run that diverged (NaN accuracy) counts as all wrong
  return err, h
end

--- Re-indexes a grid measured at (lr_i, lambda_j) into PyTorch's coordinates
-- (lr_i, weight_decay = lambda_j / lr_i). log_lr, log_lam: log10 of the axis values, both
-- with the same spacing, so lambda / lr falls on a grid too. Returns the rows (NaN where no
-- run sits) and the list of log10(weight_decay) of the new columns.
function M.shear(values_, log_lr, log_lam)
  local keys, seen = {}, {}
  local function key(x) return math.floor(x * 1000 + 0.5) end
  for i = 1, #log_lr do
    for j = 1, #log_lam do
      local k = key(log_lam[j] - log_lr[i])
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys)
  local col = {}
  for c, k in ipairs(keys) do col[k] = c end
  local rows = {}
  for i = 1, #log_lr do
    rows[i] = {}
    for c = 1, #keys do rows[i][c] = 0 / 0 end
    for j = 1, #log_lam do rows[i][col[key(log_lam[j] - log_lr[i])]] = values_[i][j] end
  end
  local logs = {}
  for c, k in ipairs(keys) do logs[c] = k / 1000 end
  return rows, logs
end

--- For each row of a grid of errors: {col =, err =}, the column of its smallest (non-NaN)
-- value and that value (the first one on ties). An axis-aligned good region has the same best
-- column in every row; a diagonal one moves.
function M.best_column_per_row(values_)
  local best = {}
  for i, row in ipairs(values_) do
    local bj, bv = nil, math.huge
    for j, v in ipairs(row) do
      if v == v and v < bv then bj, bv = j, v end
    end
    best[i] = {col = bj, err = bv}
  end
  return best
end

--- A training run with AdamW evaluated every `every` steps on the test set.
-- o: train, test, sizes or net (as in fit_once), lr, weight_decay (PyTorch convention), epochs,
-- batch, seed,
-- schedule = function(opt, total_steps) -> a schedule or nil, every.
-- Returns {step =, acc =, loss =} (lists) and the fit history.
function M.train_curve(o)
  mo.manual_seed(o.seed or 1)
  local model = build(o)
  local loss_fn = mo.nn.CrossEntropyLoss()
  local opt = mo.optim.AdamW(model:parameters(), {lr = o.lr, weight_decay = o.weight_decay})
  local total = o.epochs * math.ceil(mo.data.size(o.train) / o.batch)
  local sched = o.schedule and o.schedule(opt, total) or nil
  local curve = {step = {}, acc = {}, loss = {}, lr = {}}
  local function record(step)
    local loss, acc = mo.train.evaluate(model, loss_fn, o.test)
    local n = #curve.step + 1
    curve.step[n], curve.acc[n], curve.loss[n] = step, acc, loss
    curve.lr[n] = opt.param_groups[1].lr
  end
  record(0)
  local h = mo.train.fit{
    model = model, loss = loss_fn, optimizer = opt, scheduler = sched, data = o.train,
    epochs = o.epochs, batch_size = o.batch, progress = false,
    on_step = function(info)
      if info.step % o.every == 0 or info.step == total then record(info.step) end
    end,
  }
  return curve, h
end

--- The mean of curves (train_curve's) run with different seeds: they evaluate at the same
-- steps. Returns {step =, lr =, acc =} (step and lr those of the first curve).
function M.mean_curve(list)
  local c = {step = list[1].step, lr = list[1].lr, acc = {}}
  for i = 1, #c.step do
    local s = 0
    for _, one in ipairs(list) do s = s + one.acc[i] end
    c.acc[i] = s / #list
  end
  return c
end

--- The first step at which a curve's accuracy reaches `target`, or nil.
function M.steps_to_target(curve, target)
  for i, acc in ipairs(curve.acc) do
    if acc >= target then return curve.step[i] end
  end
  return nil
end

-- ============================================================================================
-- Claim 7: the seed's three pseudo-code variants, transcribed literally
-- ============================================================================================

local function clip(x, c)
  if not c then return x end
  if x > c then return c elseif x < -c then return -c end
  return x
end

--- One step of a seed variant on Lua lists w, m, v (changed in place), in doubles, exactly
-- as the seed writes it:
--   "mxnet_adam":  rescaled_grad = clip(grad * rescale_grad, clip_gradient) + wd * weight
--                  m = beta1 * m + (1 - beta1) * rescaled_grad
--                  v = beta2 * v + (1 - beta2) * (rescaled_grad**2)
--                  lr = learning_rate * sqrt(1 - beta2**t) / (1 - beta1**t)
--                  w = w - lr * m / (sqrt(v) + epsilon)
--   "mxnet_adamw": grad = clip(grad * rescale_grad, clip_gradient); m, v as above;
--                  lr as above; w = w - lr * (m / (sqrt(v) + epsilon) + wd * w)
--   "bert_adamw":  the same with lr = learning_rate (no bias correction)
-- hp: lr, b1, b2, eps, wd, rescale_grad, clip_gradient (false: none).
function M.variant_step(kind, w, m, v, g, t, hp)
  local b1, b2, eps, wd = hp.b1, hp.b2, hp.eps, hp.wd
  local lr
  if kind == "bert_adamw" then
    lr = hp.lr
  else
    lr = hp.lr * sqrt(1 - b2 ^ t) / (1 - b1 ^ t)
  end
  for i = 1, #w do
    local grad = clip(g[i] * hp.rescale_grad, hp.clip_gradient)
    if kind == "mxnet_adam" then grad = grad + wd * w[i] end
    m[i] = b1 * m[i] + (1 - b1) * grad
    v[i] = b2 * v[i] + (1 - b2) * grad ^ 2
    if kind == "mxnet_adam" then
      w[i] = w[i] - lr * m[i] / (sqrt(v[i]) + eps)
    else
      w[i] = w[i] - lr * (m[i] / (sqrt(v[i]) + eps) + wd * w[i])
    end
  end
end

M.VARIANTS = {"mxnet_adam", "mxnet_adamw", "bert_adamw"}

-- The mo.optim object a variant should match, and one that differs from it in one switch
-- (so that agreement with the first and not the second shows the comparison can tell).
local function variant_optimizer(kind, p, hp, other)
  local o = {lr = hp.lr, betas = {hp.b1, hp.b2}, eps = hp.eps, weight_decay = hp.wd,
             rescale_grad = hp.rescale_grad, clip_gradient = hp.clip_gradient}
  if kind == "mxnet_adam" then
    o.flavor = "mxnet"
    if other then o.eps_mode = "raw" end                      -- eps added after the correction
    return mo.optim.Adam({p}, o)
  elseif kind == "mxnet_adamw" then
    o.flavor = "mxnet"
    if other then o.weight_decay_mode = "decoupled" end       -- decay with the raw lr
    return mo.optim.AdamW({p}, o)
  else
    o.flavor = "bert"
    if other then o.bias_correction = true end                -- correction switched on
    return mo.optim.AdamW({p}, o)
  end
end

-- Deterministic gradients: mixed signs and sizes; about a fifth exceed the clip.
local function variant_grads(n, t, scale)
  local g = {}
  for i = 1, n do
    g[i] = scale * math.sin(1.3 * i + 0.7 * t * t) * (1 + (i * t) % 4)
  end
  return g
end

--- Runs variant `kind` for `steps` steps on n weights: the literal transcription in doubles
-- and mo.optim in float32 (the same float32 gradients and initial weights go to both).
-- Returns two lists over the steps: max |w_mo - w_ref| for the matching flavor, and for the
-- flavor with one switch changed.
function M.variant_compare(kind, hp, n, steps)
  local w0 = {}
  for i = 1, n do w0[i] = 0.5 * math.cos(0.9 * i) + (i % 3 == 0 and 1 or 0) end
  local p, q = mo.tensor(w0), mo.tensor(w0)
  local opt, other = variant_optimizer(kind, p, hp, false), variant_optimizer(kind, q, hp, true)
  local w = values(p) -- the float32 starting weights, as doubles
  local m, v = {}, {}
  for i = 1, n do m[i], v[i] = 0, 0 end
  local diff, diff_other = {}, {}
  for t = 1, steps do
    p.grad = mo.tensor(variant_grads(n, t, hp.grad_scale or 0.03))
    q.grad = p.grad:clone()
    local g = values(p.grad)
    opt:step()
    other:step()
    M.variant_step(kind, w, m, v, g, t, hp)
    local a, b = values(p), values(q)
    local d1, d2 = 0, 0
    for i = 1, n do
      d1 = math.max(d1, abs(a[i] - w[i]))
      d2 = math.max(d2, abs(b[i] - w[i]))
    end
    diff[t], diff_other[t] = d1, d2
  end
  return diff, diff_other
end

return M
