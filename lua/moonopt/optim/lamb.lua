--- moonopt.optim.lamb: LAMB (You et al. 2020): Adam's bias-corrected direction plus decoupled
-- weight decay, r = m_hat/(sqrt(v_hat) + eps) + wd*w, scaled per tensor by the trust ratio
-- ||w|| / ||r|| (1 when either norm is 0): w -= lr * ratio * r. Defaults: lr 1e-3,
-- betas (0.9, 0.999), eps 1e-6, weight_decay 0. state.trust_ratio keeps the last ratio.
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks

local M = {}

M.LAMB = Optimizer.class{
  name = "LAMB",
  defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-6, weight_decay = 0,
              bias_correction = true, maximize = false},
  check = function(o, err)
    C.adam_family(o, err)
    C.boolean(o, err, "bias_correction")
    C.boolean(o, err, "maximize")
  end,
  kernel = "lamb",
}

return M
