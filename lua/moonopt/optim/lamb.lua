--- moonopt.optim.lamb: LAMB (You et al. 2020): Adam's bias-corrected direction plus decoupled
-- weight decay, r = m_hat/(sqrt(v_hat) + eps) + wd*w, scaled per tensor by the trust ratio
-- ||w|| / ||r|| (1 when either norm is 0): w -= lr * ratio * r. Defaults: lr 1e-3,
-- betas (0.9, 0.999), eps 1e-6, weight_decay 0. state.trust_ratio keeps the last ratio.
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"
local kernel = require "moonopt.optim.kernel"

local C = Optimizer.checks

local M = {}

local MOMENTS = {"exp_avg", "exp_avg_sq"}

M.LAMB = Optimizer.class{
  name = "LAMB",
  defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-6, weight_decay = 0,
              bias_correction = true, maximize = false},
  check = function(o, err)
    C.adam_family(o, err)
    C.boolean(o, err, "bias_correction")
    C.boolean(o, err, "maximize")
  end,
  prepare = kernel.args{"lr", "betas", "eps", "weight_decay", "bias_correction",
                                  "maximize"},
  update = kernel.update(core.optim_lamb_group, kernel.zero_state(MOMENTS)),
  state_tensors = MOMENTS,
}

return M
