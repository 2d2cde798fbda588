--- moonopt.optim.rms: the running-average-of-squares family as PyTorch 1.13: RMSprop
-- (alpha, centered, momentum), Adagrad (lr_decay, initial_accumulator_value), Adadelta (rho).
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks
local zeros = core.zeros
local run_group = Optimizer.run_group
local rmsprop_group, adagrad_group, adadelta_group =
  core.optim_rmsprop_group, core.optim_adagrad_group, core.optim_adadelta_group

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
  prepare = function(group, cfg)
    cfg = cfg or {args = {}}
    local args = cfg.args
    args[1], args[2], args[3], args[4] = group.lr, group.alpha, group.eps, group.weight_decay
    args[5], args[6], args[7] = group.momentum, group.centered, group.maximize
    return cfg
  end,
  update = function(self, group, cfg)
    run_group(rmsprop_group, self, group, cfg, function(p, st, c)
      st = st or {step = 0, square_avg = zeros(p:shape())}
      -- buffers appear when an option that needs them is (or becomes) on
      if c.args[5] > 0 and st.momentum_buffer == nil then st.momentum_buffer = zeros(p:shape()) end
      if c.args[6] and st.grad_avg == nil then st.grad_avg = zeros(p:shape()) end
      return st
    end)
  end,
  state_tensors = {"square_avg"},
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
  prepare = function(group, cfg)
    cfg = cfg or {args = {}}
    local args = cfg.args
    args[1], args[2], args[3], args[4] = group.lr, group.lr_decay, group.weight_decay, group.eps
    args[5] = group.maximize
    cfg.init = group.initial_accumulator_value
    return cfg
  end,
  update = function(self, group, cfg)
    run_group(adagrad_group, self, group, cfg, function(p, st, c)
      return st or {step = 0, sum = zeros(p:shape()):fill(c.init)}
    end)
  end,
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
  prepare = function(group, cfg)
    cfg = cfg or {args = {}}
    local args = cfg.args
    args[1], args[2], args[3], args[4] = group.lr, group.rho, group.eps, group.weight_decay
    args[5] = group.maximize
    return cfg
  end,
  update = function(self, group, cfg)
    run_group(adadelta_group, self, group, cfg, function(p, st)
      if st ~= nil then return st end
      local shape = p:shape()
      return {step = 0, square_avg = zeros(shape), acc_delta = zeros(shape)}
    end)
  end,
  state_tensors = {"square_avg", "acc_delta"},
}

return M
