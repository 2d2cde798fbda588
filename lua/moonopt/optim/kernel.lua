--- moonopt.optim.kernel: builds a class's spec.prepare and spec.update (optimizer.lua) on a
-- C group kernel, core.optim_<alg>_group, for the classes whose kernel takes group options
-- as they are. Internal to the optimizer classes (not part of mo.optim).
--
--   prepare = kernel.args{"lr", "betas", "eps", "weight_decay", "maximize"},
--   update = kernel.update(core.optim_adamax_group, kernel.zero_state{"exp_avg", "exp_inf"}),
local core = require "moonopt.core"
local Optimizer = require "moonopt.optim.optimizer"

local zeros = core.zeros
local run_group = Optimizer.run_group

local M = {}

--- A spec.prepare: cfg.args = {group[keys[1]], group[keys[2]], ...}, the hyperparameters in
-- the kernel's order, where "betas" stands for its two numbers. Reuses the old cfg.
function M.args(keys)
  return function(group, cfg)
    cfg = cfg or {args = {}}
    local args, n = cfg.args, 0
    for _, key in ipairs(keys) do
      if key == "betas" then
        args[n + 1], args[n + 2] = group.betas[1], group.betas[2]
        n = n + 2
      else
        args[n + 1] = group[key]
        n = n + 1
      end
    end
    return cfg
  end
end

--- A spec.update: Optimizer.run_group with `kernel` and `complete` (see run_group).
function M.update(kernel, complete)
  return function(self, group, cfg)
    run_group(kernel, self, group, cfg, complete)
  end
end

--- A `complete` for run_group that makes a param's first state: {step = 0}, a zero tensor of
-- the param's shape under each of `keys`, and the plain values of `extra` (optional).
-- A state that exists is kept as it is.
function M.zero_state(keys, extra)
  return function(p, st)
    if st ~= nil then return st end
    local shape = p:shape()
    st = {step = 0}
    for _, key in ipairs(keys) do st[key] = zeros(shape) end
    if extra then
      for key, v in pairs(extra) do st[key] = v end
    end
    return st
  end
end

return M
