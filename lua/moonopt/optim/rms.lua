--- moonopt.optim.rms: the running-average-of-squares family as PyTorch 1.13: RMSprop
-- (alpha, centered, momentum), Adagrad (lr_decay, initial_accumulator_value), Adadelta (rho).
-- Kernels: core/optim_rms.c (the optional buffers appear when their option turns on).
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks

local M = {}

M.RMSprop = Optimizer.class{
  name = "RMSprop",
  defaults = {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0,
              centered = false, maximize = false},
  check = function(o, err)
    C.lr(o, err)
    C.nonneg(o, err, "alpha")
    C.eps(o, err)
    C.weight_decay(o, err)
    C.nonneg(o, err, "momentum")
    C.boolean(o, err, "centered")
    C.boolean(o, err, "maximize")
  end,
  kernel = "rmsprop",
}

M.Adagrad = Optimizer.class{
  name = "Adagrad",
  defaults = {lr = 1e-2, lr_decay = 0, weight_decay = 0, initial_accumulator_value = 0,
              eps = 1e-10, maximize = false},
  check = function(o, err)
    C.lr(o, err)
    C.nonneg(o, err, "lr_decay")
    C.weight_decay(o, err)
    C.nonneg(o, err, "initial_accumulator_value")
    C.eps(o, err)
    C.boolean(o, err, "maximize")
  end,
  kernel = "adagrad",
}

M.Adadelta = Optimizer.class{
  name = "Adadelta",
  defaults = {lr = 1.0, rho = 0.9, eps = 1e-6, weight_decay = 0, maximize = false},
  check = function(o, err)
    C.lr(o, err)
    local rho = C.number(o, err, "rho")
    if rho < 0 or rho > 1 then err("Invalid rho value: %s", Optimizer.show(rho)) end
    C.eps(o, err)
    C.weight_decay(o, err)
    C.boolean(o, err, "maximize")
  end,
  kernel = "adadelta",
}

return M
