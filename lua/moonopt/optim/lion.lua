--- moonopt.optim.lion: Lion (Chen et al. 2023): w *= 1 - lr*wd; w -= lr*sign(b1*m + (1-b1)*g);
-- m = b2*m + (1-b2)*g. Defaults from the paper: lr 1e-4, betas (0.9, 0.99), weight_decay 0.
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks

local M = {}

M.Lion = Optimizer.class{
  name = "Lion",
  defaults = {lr = 1e-4, betas = {0.9, 0.99}, weight_decay = 0, maximize = false,
              state_dtype = "float32", state_rounding = "nearest"},
  check = function(o, err)
    C.lr(o, err)
    C.betas(o, err)
    C.weight_decay(o, err)
    C.boolean(o, err, "maximize")
    C.state_dtype(o, err)
  end,
  kernel = "lion",
}

return M
