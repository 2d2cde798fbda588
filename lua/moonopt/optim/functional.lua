--- moonopt.optim.functional: torch7's optim package, for ported scripts.
--
--   x, fs = mo.optim.sgd(opfunc, x, config, state)
--
-- opfunc(x) returns f(x) (a number) and df/dx (a tensor of x's shape; it may be the same
-- tensor every call). x is updated in place and returned with {f(x)} (lbfgs and cg return
-- the list of f values seen and the evaluation count, as torch7). config uses torch7's
-- names (learningRate, learningRateDecay, weightDecay, momentum, dampening (default:
-- momentum), nesterov, beta1, beta2, epsilon, ...); state defaults to config, as in torch7,
-- and keeps the counters and buffers between calls (evalCounter, t, m, v, dfdx, ...).
-- Where torch7's math is one of the class kernels (sgd, adam, adamax, adagrad, adadelta,
-- rmsprop) the same C kernel runs; nag, lbfgs and cg are Lua over tensor operations. x may
-- be float32 or float64; df/dx and the state tensors have x's dtype.
local core = require "moonopt.core"
local two_loop = require "moonopt.optim.lbfgs_two_loop"

local zeros = core.zeros
local axpy = core.axpy_
local is_tensor = core.is_tensor
local optim_step = core.optim_step

-- One step of x by the core's kernel `kind` (the same kernels and option names as the
-- classes; options not given keep the kernel's defaults). st is the kernel's state for x
-- ({step = n, <buffer name> = tensor}): missing buffers are created in it, step advanced.
local function kernel_step(kind, fname, x, dfdx, opts, st)
  opts.params = {x}
  optim_step(kind, fname, {opts}, {[x] = st}, false, nil, {{dfdx}})
  return st
end

local M = {}

local function shape_str(t) return "{" .. table.concat(t:shape(), ", ") .. "}" end

-- Calls opfunc and checks what it returned. Errors point at the caller of the
-- torch7-style function: `level` is 3 (evaluate <- that function <- caller), one
-- more from a helper closure inside it.
local function evaluate(fname, opfunc, x, level)
  level = level or 3
  local fx, dfdx = opfunc(x)
  if type(fx) ~= "number" then
    error(fname .. ": opfunc must return f(x) as a number, got " .. type(fx), level)
  end
  if not is_tensor(dfdx) then
    error(fname .. ": opfunc must return df/dx as a tensor, got " .. type(dfdx), level)
  end
  local a, b = x:shape(), dfdx:shape()
  local same = #a == #b
  for i = 1, #a do same = same and a[i] == b[i] end
  if not same then
    error(fname .. ": df/dx has shape " .. shape_str(dfdx) .. ", x has shape " .. shape_str(x), level)
  end
  if dfdx.dtype ~= x.dtype then
    error(fname .. ": df/dx is " .. dfdx.dtype .. ", x is " .. x.dtype .. " (convert one with "
          .. ":double() or :float())", level)
  end
  return fx, dfdx
end

-- Checks the arguments every function takes. Returns state (a table; config when nil),
-- num(key, default), which reads config[key] as a number (default when nil), and config (a
-- table; {} when nil). Errors name fname and point at the caller of the public function.
local function start(fname, opfunc, x, config, state)
  if type(opfunc) ~= "function" then
    error(fname .. ": opfunc must be a function, got " .. type(opfunc), 3)
  end
  if not is_tensor(x) then error(fname .. ": x must be a tensor, got " .. type(x), 3) end
  config = config or {}
  if type(config) ~= "table" then error(fname .. ": config must be a table", 3) end
  state = state or config
  if type(state) ~= "table" then error(fname .. ": state must be a table", 3) end
  if config.learningRates ~= nil or config.weightDecays ~= nil then
    error(fname .. ": per-element learningRates/weightDecays are not supported", 3)
  end
  local function num(key, default)
    local v = config[key]
    if v == nil then return default end
    if type(v) ~= "number" or v ~= v then
      error(fname .. ": config." .. key .. " must be a number, got " .. tostring(v), 3)
    end
    return v
  end
  return state, num, config
end

--- SGD: learningRate 1e-3, learningRateDecay 0, weightDecay 0, momentum 0, dampening
-- (default: momentum), nesterov false. state: evalCounter, dfdx (the momentum buffer).
function M.sgd(opfunc, x, config, state)
  local num
  state, num, config = start("sgd", opfunc, x, config, state)
  local lr = num("learningRate", 1e-3)
  local lrd = num("learningRateDecay", 0)
  local wd = num("weightDecay", 0)
  local mom = num("momentum", 0)
  local damp = num("dampening", mom)
  local nesterov = config.nesterov or false
  if nesterov and (mom <= 0 or damp ~= 0) then
    error("sgd: Nesterov momentum requires a momentum and zero dampening", 2)
  end
  state.evalCounter = state.evalCounter or 0
  local fx, dfdx = evaluate("sgd", opfunc, x)
  local clr = lr / (1 + state.evalCounter * lrd)
  if mom ~= 0 then
    -- a new buffer starts at the (decayed) gradient, as the kernel does for the class
    local st = kernel_step("sgd", "sgd", x, dfdx, {lr = clr, momentum = mom, dampening = damp,
                           weight_decay = wd, nesterov = nesterov}, {momentum_buffer = state.dfdx})
    state.dfdx = st.momentum_buffer
  else
    kernel_step("sgd", "sgd", x, dfdx, {lr = clr, weight_decay = wd}, {})
  end
  state.evalCounter = state.evalCounter + 1
  return x, {fx}
end

--- Adam as torch7 (moonopt's flavor "torch7"): learningRate 1e-3, learningRateDecay 0,
-- beta1 0.9, beta2 0.999, epsilon 1e-8, weightDecay 0 (L2). state: t, m, v.
function M.adam(opfunc, x, config, state)
  local num
  state, num = start("adam", opfunc, x, config, state)
  local lr = num("learningRate", 1e-3)
  local lrd = num("learningRateDecay", 0)
  local b1 = num("beta1", 0.9)
  local b2 = num("beta2", 0.999)
  local eps = num("epsilon", 1e-8)
  local wd = num("weightDecay", 0)
  local fx, dfdx = evaluate("adam", opfunc, x)
  -- eps_mode hat, L2 weight decay, bias correction on (the kernel's defaults otherwise);
  -- torch7's clr = lr / (1 + t*lrd) with t counted before this step = the kernel's lr_decay
  local st = kernel_step("adam", "adam", x, dfdx, {lr = lr, betas = {b1, b2}, eps = eps,
                         weight_decay = wd, eps_mode = "hat", lr_decay = lrd},
                         {step = state.t or 0, exp_avg = state.m, exp_avg_sq = state.v})
  state.t, state.m, state.v = st.step, st.exp_avg, st.exp_avg_sq
  return x, {fx}
end

--- Adamax as torch7: learningRate 2e-3, beta1 0.9, beta2 0.999, epsilon 1e-38,
-- weightDecay 0. state: t, m, u.
function M.adamax(opfunc, x, config, state)
  local num
  state, num = start("adamax", opfunc, x, config, state)
  local lr = num("learningRate", 2e-3)
  local b1 = num("beta1", 0.9)
  local b2 = num("beta2", 0.999)
  local eps = num("epsilon", 1e-38)
  local wd = num("weightDecay", 0)
  local fx, dfdx = evaluate("adamax", opfunc, x)
  local st = kernel_step("adamax", "adamax", x, dfdx, {lr = lr, betas = {b1, b2}, eps = eps,
                         weight_decay = wd}, {step = state.t or 0, exp_avg = state.m, exp_inf = state.u})
  state.t, state.m, state.u = st.step, st.exp_avg, st.exp_inf
  return x, {fx}
end

--- Adagrad as torch7: learningRate 1e-3, learningRateDecay 0, weightDecay 0 (eps 1e-10).
-- state: evalCounter, paramVariance (the sum of squares).
function M.adagrad(opfunc, x, config, state)
  local num
  state, num = start("adagrad", opfunc, x, config, state)
  local lr = num("learningRate", 1e-3)
  local lrd = num("learningRateDecay", 0)
  local wd = num("weightDecay", 0)
  local fx, dfdx = evaluate("adagrad", opfunc, x)
  local st = kernel_step("adagrad", "adagrad", x, dfdx, {lr = lr, lr_decay = lrd, weight_decay = wd,
                         eps = 1e-10}, {step = state.evalCounter or 0, sum = state.paramVariance})
  state.evalCounter, state.paramVariance = st.step, st.sum
  return x, {fx}
end

--- Adadelta as torch7: rho 0.9, eps 1e-6, weightDecay 0 (the step has lr 1).
-- state: evalCounter, paramVariance, accDelta.
function M.adadelta(opfunc, x, config, state)
  local num
  state, num = start("adadelta", opfunc, x, config, state)
  local rho = num("rho", 0.9)
  local eps = num("eps", 1e-6)
  local wd = num("weightDecay", 0)
  local fx, dfdx = evaluate("adadelta", opfunc, x)
  local st = kernel_step("adadelta", "adadelta", x, dfdx, {lr = 1, rho = rho, eps = eps,
                         weight_decay = wd}, {step = state.evalCounter or 0,
                         square_avg = state.paramVariance, acc_delta = state.accDelta})
  state.evalCounter, state.paramVariance, state.accDelta = st.step, st.square_avg, st.acc_delta
  return x, {fx}
end

--- RMSprop as torch7: learningRate 1e-2, alpha 0.99, epsilon 1e-8, weightDecay 0.
-- state: m (the running mean of squares).
function M.rmsprop(opfunc, x, config, state)
  local num
  state, num = start("rmsprop", opfunc, x, config, state)
  local lr = num("learningRate", 1e-2)
  local alpha = num("alpha", 0.99)
  local eps = num("epsilon", 1e-8)
  local wd = num("weightDecay", 0)
  local fx, dfdx = evaluate("rmsprop", opfunc, x)
  local st = kernel_step("rmsprop", "rmsprop", x, dfdx, {lr = lr, alpha = alpha, eps = eps,
                         weight_decay = wd}, {step = 0, square_avg = state.m})
  state.m = st.square_avg
  return x, {fx}
end

--- Nesterov's accelerated gradient as torch7's nag (Sutskever et al. 2013): first step
-- along the momentum, evaluate there, then update. learningRate 1e-3, learningRateDecay 0,
-- weightDecay 0, momentum 0.9 (must be > 0). state: evalCounter, dfdx (the velocity).
function M.nag(opfunc, x, config, state)
  local num
  state, num = start("nag", opfunc, x, config, state)
  local lr = num("learningRate", 1e-3)
  local lrd = num("learningRateDecay", 0)
  local wd = num("weightDecay", 0)
  local mom = num("momentum", 0.9)
  if mom <= 0 then
    error("nag: Momentum must be positive for Nesterov Accelerated Gradient", 2)
  end
  state.evalCounter = state.evalCounter or 0
  if state.dfdx ~= nil then axpy(x, mom, state.dfdx) end
  local fx, dfdx = evaluate("nag", opfunc, x)
  local g = dfdx
  if wd ~= 0 then
    g = dfdx:clone()
    axpy(g, wd, x)
  end
  local clr = lr / (1 + state.evalCounter * lrd)
  if state.dfdx == nil then
    state.dfdx = zeros(x:shape(), {dtype = x.dtype})
  else
    state.dfdx:mul_(mom)
  end
  axpy(state.dfdx, -clr, g)
  axpy(x, -clr, g)
  state.evalCounter = state.evalCounter + 1
  return x, {fx}
end

--- L-BFGS as torch7's lbfgs: maxIter 20, maxEval maxIter*1.25, tolFun 1e-5 (on sum|g|),
-- tolX 1e-9, nCorrection 100, learningRate 1, lineSearch (optional function with torch7's
-- signature f, g, x, t, nEval = lineSearch(opfunc, x, t, d, f, g, gtd, lineSearchOptions)).
-- Returns x, f_hist, currentFuncEval. state: funcEval, nIter, d, t, old_dirs, old_stps,
-- Hdiag, g_old, f_old.
function M.lbfgs(opfunc, x, config, state)
  local num
  state, num, config = start("lbfgs", opfunc, x, config, state)
  local maxIter = num("maxIter", 20)
  local maxEval = num("maxEval", maxIter * 1.25)
  local tolFun = num("tolFun", 1e-5)
  local tolX = num("tolX", 1e-9)
  local nCorrection = num("nCorrection", 100)
  local learningRate = num("learningRate", 1)
  local lineSearch = config.lineSearch
  if lineSearch ~= nil and type(lineSearch) ~= "function" then
    error("lbfgs: config.lineSearch must be a function", 2)
  end
  state.funcEval = state.funcEval or 0
  state.nIter = state.nIter or 0

  local f, g = evaluate("lbfgs", opfunc, x)
  g = g:clone()
  local f_hist = {f}
  local currentFuncEval = 1
  state.funcEval = state.funcEval + 1
  if g:abs():sum():item() <= tolFun then return x, f_hist, currentFuncEval end

  local d, t = state.d, state.t
  local old_dirs, old_stps, Hdiag = state.old_dirs, state.old_stps, state.Hdiag
  local g_old, f_old = state.g_old, state.f_old
  local nIter = 0
  while nIter < maxIter do
    nIter = nIter + 1
    state.nIter = state.nIter + 1
    if state.nIter == 1 then
      d = g:neg()
      old_dirs, old_stps, Hdiag = {}, {}, 1
    else
      -- the history as mo.optim.LBFGS (and PyTorch) names it: old_dirs holds the gradient
      -- changes y, old_stps the steps s (torch7 itself named them the other way round)
      local y = g:sub(g_old)
      local s = d:mul(t)
      local ys = y:dot(s):item()
      if ys > 1e-10 then
        if #old_dirs == nCorrection then
          table.remove(old_dirs, 1)
          table.remove(old_stps, 1)
        end
        old_dirs[#old_dirs + 1] = y
        old_stps[#old_stps + 1] = s
        Hdiag = ys / y:dot(y):item()
      end
      local ro = {}
      for i = 1, #old_dirs do ro[i] = 1 / old_dirs[i]:dot(old_stps[i]):item() end
      d = two_loop(g, old_stps, old_dirs, ro, Hdiag, {})
    end
    g_old = g:clone()
    f_old = f
    local gtd = g:dot(d):item()
    if gtd > -tolX then break end
    if state.nIter == 1 then
      t = math.min(1, 1 / g:abs():sum():item()) * learningRate
    else
      t = learningRate
    end
    local lsFuncEval = 0
    if lineSearch then
      f, g, x, t, lsFuncEval = lineSearch(opfunc, x, t, d, f, g, gtd, config.lineSearchOptions)
      f_hist[#f_hist + 1] = f
    else
      axpy(x, t, d)
      if nIter ~= maxIter then
        f, g = evaluate("lbfgs", opfunc, x)
        g = g:clone()
        lsFuncEval = 1
        f_hist[#f_hist + 1] = f
      end
    end
    currentFuncEval = currentFuncEval + lsFuncEval
    state.funcEval = state.funcEval + lsFuncEval
    if nIter == maxIter then break end
    if currentFuncEval >= maxEval then break end
    if g:abs():sum():item() <= tolFun then break end
    if d:abs():sum():item() * math.abs(t) <= tolX then break end
    if math.abs(f - f_old) < tolX then break end
  end
  state.d, state.t = d, t
  state.old_dirs, state.old_stps, state.Hdiag = old_dirs, old_stps, Hdiag
  state.g_old, state.f_old = g_old, f_old
  return x, f_hist, currentFuncEval
end

--- Nonlinear conjugate gradient as torch7's cg (Rasmussen's minimize: Polack-Ribiere
-- directions, a line search by cubic interpolation and extrapolation under the Wolfe-Powell
-- conditions). config: rho 0.01, sig 0.5, int 0.1, ext 3.0, maxIter 20, ratio 100,
-- maxEval maxIter*1.25. Returns x, fx (the values after each successful line search, the
-- first one included), i (function evaluations). Two line-search failures in a row stop it.
function M.cg(opfunc, x, config, state)
  local _, num = start("cg", opfunc, x, config, state)
  local rho = num("rho", 0.01)
  local sig = num("sig", 0.5)
  local int = num("int", 0.1)
  local ext = num("ext", 3.0)
  local maxIter = num("maxIter", 20)
  local ratio = num("ratio", 100)
  local maxEval = num("maxEval", maxIter * 1.25)
  local red = 1
  local i, ls_failed = 0, false
  local fx = {}
  local z1, z2, z3, d1, d2, d3, f1, f2, f3
  local f0
  local df1, df2, x0

  local function feval()
    local f, g = evaluate("cg", opfunc, x, 4)
    i = i + 1
    return f, g:clone()
  end

  f1, df1 = feval()
  fx[#fx + 1] = f1
  local s = df1:neg()                   -- the search direction
  d1 = -s:dot(s):item()                        -- its slope
  z1 = red / (1 - d1)                   -- the initial step

  while i < math.abs(maxEval) do
    x0, f0 = x:clone(), f1
    axpy(x, z1, s)
    f2, df2 = feval()
    d2 = df2:dot(s):item()
    f3, d3, z3 = f1, d1, -z1            -- point 3 starts equal to point 1
    local m = math.min(maxIter, maxEval - i)
    local success = false
    local limit = -1
    while true do
      while (f2 > f1 + z1 * rho * d1 or d2 > -sig * d1) and m > 0 do
        -- tighten the bracket by interpolation
        limit = z1
        if f2 > f1 then
          z2 = z3 - (0.5 * d3 * z3 * z3) / (d3 * z3 + f2 - f3)
        else
          local A = 6 * (f2 - f3) / z3 + 3 * (d2 + d3)
          local B = 3 * (f3 - f2) - z3 * (d3 + 2 * d2)
          z2 = (math.sqrt(B * B - A * d2 * z3 * z3) - B) / A
        end
        if z2 ~= z2 or z2 == math.huge or z2 == -math.huge then z2 = z3 / 2 end
        z2 = math.max(math.min(z2, int * z3), (1 - int) * z3)
        z1 = z1 + z2
        axpy(x, z2, s)
        f2, df2 = feval()
        m = m - 1
        d2 = df2:dot(s):item()
        z3 = z3 - z2
      end
      if f2 > f1 + z1 * rho * d1 or d2 > -sig * d1 then
        break
      elseif d2 > sig * d1 then
        success = true
        break
      elseif m <= 0 then
        -- <= (torch7 wrote ==): m counts down from maxEval - i, fractional when maxEval is
        -- (the default maxIter*1.25 for maxIter 50), and would step past 0 and never stop
        break
      end
      -- extrapolate by a cubic, within limits
      local A = 6 * (f2 - f3) / z3 + 3 * (d2 + d3)
      local B = 3 * (f3 - f2) - z3 * (d3 + 2 * d2)
      z2 = -d2 * z3 * z3 / (B + math.sqrt(B * B - A * d2 * z3 * z3))
      if z2 ~= z2 or z2 == math.huge or z2 == -math.huge or z2 < 0 then
        if limit < -0.5 then z2 = z1 * (ext - 1) else z2 = (limit - z1) / 2 end
      elseif limit > -0.5 and (z2 + z1) > limit then
        z2 = (limit - z1) / 2
      elseif limit < -0.5 and (z2 + z1) > z1 * ext then
        z2 = z1 * (ext - 1)
      elseif z2 < -z3 * int then
        z2 = -z3 * int
      elseif limit > -0.5 and z2 < (limit - z1) * (1 - int) then
        z2 = (limit - z1) * (1 - int)
      end
      f3, d3, z3 = f2, d2, -z2
      z1 = z1 + z2
      axpy(x, z2, s)
      f2, df2 = feval()
      m = m - 1
      d2 = df2:dot(s):item()
    end
    if success then
      f1 = f2
      fx[#fx + 1] = f1
      -- Polack-Ribiere direction
      local ss = (df2:dot(df2):item() - df2:dot(df1):item()) / df1:dot(df1):item()
      s:mul_(ss)
      axpy(s, -1, df2)
      df1 = df2  -- the next line search evaluates a fresh df2
      d2 = df1:dot(s):item()
      if d2 > 0 then
        -- not a descent direction: steepest descent instead
        s = df1:neg()
        d2 = -s:dot(s):item()
      end
      z1 = z1 * math.min(ratio, d1 / (d2 - 1e-320))
      d1 = d2
      ls_failed = false
    else
      x:copy(x0)
      f1 = f0
      if ls_failed or i > maxEval then break end
      -- restart along the steepest descent at the last evaluated gradient (as minimize does)
      df1 = df2
      s = df1:neg()
      d1 = -s:dot(s):item()
      z1 = 1 / (1 - d1)
      ls_failed = true
    end
  end
  return x, fx, i
end

return M
