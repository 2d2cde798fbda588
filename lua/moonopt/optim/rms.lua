--- moonopt.optim.rms: the running-average-of-squares family as PyTorch 1.13: RMSprop
-- (alpha, centered, momentum), Adagrad (lr_decay, initial_accumulator_value), Adadelta (rho).
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"
local kernel = require "moonopt.optim.kernel"

local C = Optimizer.checks
local zeros = core.zeros

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
  prepare = kernel.args{"lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"},
  update = kernel.update(core.optim_rmsprop_group, function(p, st, c)
    st = st or {step = 0, square_avg = zeros(p:shape())}
    -- buffers appear when an option that needs them is (or becomes) on
    -- (c.args[5] is momentum, c.args[6] centered)
    if c.args[5] > 0 and st.momentum_buffer == nil then st.momentum_buffer = zeros(p:shape()) end
    if c.args[6] and st.grad_avg == nil then st.grad_avg = zeros(p:shape()) end
    return st
  end),
  state_tensors = {"square_avg"},
}

-- (initial_accumulator_value only fills the sum: it is not a kernel argument)
local adagrad_args = kernel.args{"lr", "lr_decay", "weight_decay", "eps", "maximize"}

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
  prepare = function(group, cfg)
    cfg = adagrad_args(group, cfg)
    cfg.init = group.initial_accumulator_value
    return cfg
  end,
  update = kernel.update(core.optim_adagrad_group, function(p, st, c)
    return st or {step = 0, sum = zeros(p:shape()):fill(c.init)}
  end),
  state_tensors = {"sum"},
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
  prepare = kernel.args{"lr", "rho", "eps", "weight_decay", "maximize"},
  update = kernel.update(core.optim_adadelta_group, kernel.zero_state{"square_avg", "acc_delta"}),
  state_tensors = {"square_avg", "acc_delta"},
}

return M
