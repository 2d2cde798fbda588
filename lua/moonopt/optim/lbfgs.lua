--- moonopt.optim.lbfgs: L-BFGS as PyTorch 1.13's torch.optim.LBFGS (after minFunc), on all
-- params as one flat vector, with the optional strong-Wolfe line search.
--
--   local opt = mo.optim.LBFGS(params, {lr = 1, max_iter = 20, max_eval = nil (max_iter*5//4),
--                                       tolerance_grad = 1e-7, tolerance_change = 1e-9,
--                                       history_size = 100, line_search_fn = nil | "strong_wolfe"})
--   local loss = opt:step(function() opt:zero_grad(); ...; return loss end)
--
-- The closure is required: it zeroes the grads, evaluates the loss, fills every .grad and
-- returns the loss (a number). One group only. The params share one dtype (float32 or
-- float64; a mix is refused at construction) and the flat vectors (gradient, direction,
-- history) have it; the scalars (dot products, step sizes) are Lua doubles. The state lives under the first param, as
-- PyTorch keeps it: func_evals, n_iter, d, t, old_dirs, old_stps, ro, H_diag,
-- prev_flat_grad, prev_loss, al.
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"
local two_loop = require "moonopt.optim.lbfgs_two_loop"

local C = Optimizer.checks
local show = Optimizer.show
local zeros = core.zeros
local axpy = core.axpy_

local M = {}

local function total_numel(params)
  local n = 0
  for _, p in ipairs(params) do n = n + p:numel() end
  return n
end

local function gather_flat_grad(params, n, dtype)
  local flat = zeros({n}, {dtype = dtype})
  local off = 0
  for _, p in ipairs(params) do
    local k = p:numel()
    local g = p.grad
    if g ~= nil and k > 0 then flat:narrow(1, off + 1, k):copy(g:reshape(k)) end
    off = off + k
  end
  return flat
end

-- params += step * update (update: the flat vector)
local function add_grad(params, step, update)
  local off = 0
  for _, p in ipairs(params) do
    local k = p:numel()
    if k > 0 then axpy(p, step, update:narrow(1, off + 1, k):view(p:shape())) end
    off = off + k
  end
end

local function clone_params(params)
  local x = {}
  for i, p in ipairs(params) do x[i] = p:clone() end
  return x
end

local function set_params(params, x)
  for i, p in ipairs(params) do p:copy(x[i]) end
end

local function absmax(t)
  if t:numel() == 0 then return 0 end
  return t:abs():max():item()
end

local function cubic_interpolate(x1, f1, g1, x2, f2, g2, lo, hi)
  local xmin_bound, xmax_bound
  if lo ~= nil then
    xmin_bound, xmax_bound = lo, hi
  elseif x1 <= x2 then
    xmin_bound, xmax_bound = x1, x2
  else
    xmin_bound, xmax_bound = x2, x1
  end
  -- the minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped into the bounds
  local d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
  local d2_square = d1 * d1 - g1 * g2
  if d2_square >= 0 then
    local d2 = math.sqrt(d2_square)
    local min_pos
    if x1 <= x2 then
      min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else
      min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    end
    return math.min(math.max(min_pos, xmin_bound), xmax_bound)
  end
  return (xmin_bound + xmax_bound) / 2
end

-- The strong-Wolfe line search (bracketing, then zoom), as PyTorch's _strong_wolfe.
local function strong_wolfe(obj_func, x, t, d, f, g, gtd, tolerance_change)
  local c1, c2, max_ls = 1e-4, 0.9, 25
  local d_norm = absmax(d)
  g = g:clone()
  local f_new, g_new = obj_func(x, t, d)
  local ls_func_evals = 1
  local gtd_new = g_new:dot(d):item()
  local t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
  local done = false
  local ls_iter = 0
  local bracket, bracket_f, bracket_g, bracket_gtd
  while ls_iter < max_ls do
    if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev) then
      bracket, bracket_f = {t_prev, t}, {f_prev, f_new}
      bracket_g, bracket_gtd = {g_prev, g_new:clone()}, {gtd_prev, gtd_new}
      break
    end
    if math.abs(gtd_new) <= -c2 * gtd then
      bracket, bracket_f, bracket_g = {t}, {f_new}, {g_new}
      done = true
      break
    end
    if gtd_new >= 0 then
      bracket, bracket_f = {t_prev, t}, {f_prev, f_new}
      bracket_g, bracket_gtd = {g_prev, g_new:clone()}, {gtd_prev, gtd_new}
      break
    end
    -- extrapolate
    local min_step = t + 0.01 * (t - t_prev)
    local max_step = t * 10
    local tmp = t
    t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, min_step, max_step)
    t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new:clone(), gtd_new
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = ls_func_evals + 1
    gtd_new = g_new:dot(d):item()
    ls_iter = ls_iter + 1
  end
  if ls_iter == max_ls then
    bracket, bracket_f, bracket_g = {0, t}, {f, f_new}, {g, g_new}
    bracket_gtd = bracket_gtd or {gtd, gtd_new}
  end
  -- zoom: shrink the bracket until the point satisfies the strong Wolfe conditions
  local insuf_progress = false
  local low_pos, high_pos
  if bracket_f[1] <= bracket_f[#bracket_f] then low_pos, high_pos = 1, 2 else low_pos, high_pos = 2, 1 end
  while not done and ls_iter < max_ls do
    if math.abs(bracket[2] - bracket[1]) * d_norm < tolerance_change then break end
    t = cubic_interpolate(bracket[1], bracket_f[1], bracket_gtd[1], bracket[2], bracket_f[2],
                          bracket_gtd[2])
    local bmax, bmin = math.max(bracket[1], bracket[2]), math.min(bracket[1], bracket[2])
    local eps = 0.1 * (bmax - bmin)
    if math.min(bmax - t, t - bmin) < eps then
      -- too close to a boundary: move away unless progress was fine last time
      if insuf_progress or t >= bmax or t <= bmin then
        if math.abs(t - bmax) < math.abs(t - bmin) then t = bmax - eps else t = bmin + eps end
        insuf_progress = false
      else
        insuf_progress = true
      end
    else
      insuf_progress = false
    end
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = ls_func_evals + 1
    gtd_new = g_new:dot(d):item()
    ls_iter = ls_iter + 1
    if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos] then
      bracket[high_pos], bracket_f[high_pos] = t, f_new
      bracket_g[high_pos], bracket_gtd[high_pos] = g_new:clone(), gtd_new
      if bracket_f[1] <= bracket_f[2] then low_pos, high_pos = 1, 2 else low_pos, high_pos = 2, 1 end
    else
      if math.abs(gtd_new) <= -c2 * gtd then
        done = true
      elseif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0 then
        bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
        bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
      end
      bracket[low_pos], bracket_f[low_pos] = t, f_new
      bracket_g[low_pos], bracket_gtd[low_pos] = g_new:clone(), gtd_new
    end
  end
  return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals
end

local function integer_option(o, err, key, min)
  local v = o[key]
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    err("option '%s' must be an integer, got %s", key, show(v))
  end
  if v < min then err("Invalid %s value: %s", key, show(v)) end
end

M.LBFGS = Optimizer.class{
  name = "LBFGS",
  defaults = {lr = 1, max_iter = 20, max_eval = false, tolerance_grad = 1e-7,
              tolerance_change = 1e-9, history_size = 100, line_search_fn = false},
  check = function(o, err)
    C.lr(o, err)
    integer_option(o, err, "max_iter", 1)
    if o.max_eval ~= false and o.max_eval ~= nil then integer_option(o, err, "max_eval", 1) end
    C.nonneg(o, err, "tolerance_grad")
    C.nonneg(o, err, "tolerance_change")
    integer_option(o, err, "history_size", 1)
    local ls = o.line_search_fn
    if ls ~= nil and ls ~= false and ls ~= "strong_wolfe" then
      err("only 'strong_wolfe' is supported as line_search_fn, got %s", show(ls))
    end
  end,
  setup = function(self)
    if #self.param_groups ~= 1 then
      error("LBFGS: LBFGS doesn't support per-parameter options (parameter groups)", 0)
    end
    local group = self.param_groups[1]
    if not group.max_eval then group.max_eval = group.max_iter * 5 // 4 end
    self._numel = total_numel(group.params)
    -- the flat vectors take the params' one dtype (a float64 run stays float64 throughout)
    local dtype
    for i, p in ipairs(group.params) do
      dtype = dtype or p.dtype
      if p.dtype ~= dtype then
        error(string.format("LBFGS: params must share one dtype: param #1 is %s, param #%d is %s",
                            dtype, i, p.dtype), 0)
      end
    end
    self._dtype = dtype or "float32"
  end,
  -- the state's vectors are flat: {numel of all params}
  state_shape = function(self) return {self._numel} end,
  check_state = function(st)
    for _, key in ipairs{"func_evals", "n_iter"} do
      local v = Optimizer._step_value(st[key])
      if v == nil then
        return string.format("'%s' must be an integer in [0, 2^53], got %s", key, show(st[key]))
      end
      st[key] = v
    end
    return nil
  end,
}

local LBFGS = M.LBFGS

--- One L-BFGS step: up to max_iter iterations, each calling `closure` as needed.
-- Returns the loss of the first evaluation, as PyTorch.
function LBFGS:step(closure)
  if type(closure) ~= "function" then
    error("LBFGS: step requires a closure that returns the loss, got " .. type(closure), 2)
  end
  local group = self.param_groups[1]
  self:_check_group(group)
  local params = group.params
  local n, dtype = self._numel, self._dtype
  local lr, max_iter = group.lr, group.max_iter
  local max_eval = group.max_eval or (max_iter * 5 // 4)
  local tolerance_grad, tolerance_change = group.tolerance_grad, group.tolerance_change
  local line_search_fn, history_size = group.line_search_fn, group.history_size

  core.optim_check(params, "LBFGS", false)
  local state = self.state[params[1]]
  if state == nil then
    state = {func_evals = 0, n_iter = 0}
    self.state[params[1]] = state
  end

  local function eval()
    local l = closure()
    if type(l) ~= "number" then
      error("LBFGS: the closure must return the loss as a number, got " .. type(l), 0)
    end
    core.optim_check(params, "LBFGS", false)
    return l
  end

  local orig_loss = eval()
  local loss = orig_loss
  local current_evals = 1
  state.func_evals = state.func_evals + 1
  local flat_grad = gather_flat_grad(params, n, dtype)
  if absmax(flat_grad) <= tolerance_grad then return orig_loss end

  local d, t = state.d, state.t
  local old_dirs, old_stps, ro = state.old_dirs, state.old_stps, state.ro
  local H_diag = state.H_diag
  local prev_flat_grad, prev_loss = state.prev_flat_grad, state.prev_loss

  local n_iter = 0
  while n_iter < max_iter do
    n_iter = n_iter + 1
    state.n_iter = state.n_iter + 1
    -- the descent direction
    if state.n_iter == 1 then
      d = flat_grad:neg()
      old_dirs, old_stps, ro = {}, {}, {}
      H_diag = 1
    else
      local y = flat_grad:sub(prev_flat_grad)
      local s = d:mul(t)
      local ys = y:dot(s):item()
      if ys > 1e-10 then
        -- remember the curvature pair, dropping the oldest beyond history_size
        if #old_dirs == history_size then
          table.remove(old_dirs, 1)
          table.remove(old_stps, 1)
          table.remove(ro, 1)
        end
        old_dirs[#old_dirs + 1] = y
        old_stps[#old_stps + 1] = s
        ro[#ro + 1] = 1 / ys
        H_diag = ys / y:dot(y):item()
      end
      -- d = -H g with the limited-memory inverse Hessian (PyTorch's names: old_stps holds
      -- the steps s, old_dirs the gradient changes y)
      local al = state.al
      if al == nil then al = {}; state.al = al end
      d = two_loop(flat_grad, old_stps, old_dirs, ro, H_diag, al)
    end
    if prev_flat_grad == nil then prev_flat_grad = flat_grad:clone() else prev_flat_grad:copy(flat_grad) end
    prev_loss = loss

    -- the step length
    if state.n_iter == 1 then
      t = math.min(1, 1 / flat_grad:abs():sum():item()) * lr
    else
      t = lr
    end
    local gtd = flat_grad:dot(d):item()
    if gtd > -tolerance_change then break end

    local ls_func_evals = 0
    local opt_cond = false
    if line_search_fn then
      local x_init = clone_params(params)
      local function obj_func(x, step, dir)
        add_grad(params, step, dir)
        local l = eval()
        local fg = gather_flat_grad(params, n, dtype)
        set_params(params, x)
        return l, fg
      end
      loss, flat_grad, t, ls_func_evals = strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                       tolerance_change)
      add_grad(params, t, d)
      opt_cond = absmax(flat_grad) <= tolerance_grad
    else
      add_grad(params, t, d)
      if n_iter ~= max_iter then
        -- re-evaluate only when another iteration follows
        loss = eval()
        flat_grad = gather_flat_grad(params, n, dtype)
        opt_cond = absmax(flat_grad) <= tolerance_grad
        ls_func_evals = 1
      end
    end
    current_evals = current_evals + ls_func_evals
    state.func_evals = state.func_evals + ls_func_evals

    if n_iter == max_iter then break end
    if current_evals >= max_eval then break end
    if opt_cond then break end
    if absmax(d) * math.abs(t) <= tolerance_change then break end
    if math.abs(loss - prev_loss) < tolerance_change then break end
  end

  state.d, state.t = d, t
  state.old_dirs, state.old_stps, state.ro = old_dirs, old_stps, ro
  state.H_diag = H_diag
  state.prev_flat_grad, state.prev_loss = prev_flat_grad, prev_loss
  return orig_loss
end

return M
