--- moonopt.optim.lion: Lion (Chen et al. 2023): w *= 1 - lr*wd; w -= lr*sign(b1*m + (1-b1)*g);
-- m = b2*m + (1-b2)*g. Defaults from the paper: lr 1e-4, betas (0.9, 0.99), weight_decay 0.
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks
local zeros = core.zeros
local run_group = Optimizer.run_group
local lion_group = core.optim_lion_group

local M = {}

M.Lion = Optimizer.class{
  name = "Lion",
  defaults = {lr = 1e-4, betas = {0.9, 0.99}, weight_decay = 0, maximize = false},
  check = function(o, err)
    C.lr(o, err)
    C.betas(o, err)
    C.weight_decay(o, err)
    C.boolean(o, err, "maximize")
  end,
  prepare = function(group, cfg)
    cfg = cfg or {args = {}}
    local args = cfg.args
    args[1], args[2], args[3] = group.lr, group.betas[1], group.betas[2]
    args[4], args[5] = group.weight_decay, group.maximize
    return cfg
  end,
  update = function(self, group, cfg)
    run_group(lion_group, self, group, cfg, function(p, st)
      return st or {step = 0, exp_avg = zeros(p:shape())}
    end)
  end,
  state_tensors = {"exp_avg"},
}

return M
