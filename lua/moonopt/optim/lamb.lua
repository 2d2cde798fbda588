--- moonopt.optim.lamb: LAMB (You et al. 2020): Adam's bias-corrected direction plus decoupled
-- weight decay, r = m_hat/(sqrt(v_hat) + eps) + wd*w, scaled per tensor by the trust ratio
-- ||w|| / ||r|| (1 when either norm is 0): w -= lr * ratio * r. Defaults: lr 1e-3,
-- betas (0.9, 0.999), eps 1e-6, weight_decay 0. state.trust_ratio keeps the last ratio.
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks
local zeros = core.zeros
local run_group = Optimizer.run_group
local lamb_group = core.optim_lamb_group

local M = {}

M.LAMB = Optimizer.class{
  name = "LAMB",
  defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-6, weight_decay = 0,
              bias_correction = true, maximize = false},
  check = function(o, err)
    C.lr(o, err)
    C.betas(o, err)
    C.eps(o, err)
    C.weight_decay(o, err)
    C.boolean(o, err, "bias_correction")
    C.boolean(o, err, "maximize")
  end,
  prepare = function(group, cfg)
    cfg = cfg or {args = {}}
    local args = cfg.args
    args[1], args[2], args[3], args[4] = group.lr, group.betas[1], group.betas[2], group.eps
    args[5], args[6], args[7] = group.weight_decay, group.bias_correction, group.maximize
    return cfg
  end,
  update = function(self, group, cfg)
    run_group(lamb_group, self, group, cfg, function(p, st)
      if st ~= nil then return st end
      local shape = p:shape()
      return {step = 0, exp_avg = zeros(shape), exp_avg_sq = zeros(shape)}
    end)
  end,
  state_tensors = {"exp_avg", "exp_avg_sq"},
}

return M
