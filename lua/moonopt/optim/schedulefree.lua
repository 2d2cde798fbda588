--- moonopt.optim.schedulefree: schedule-free AdamW (Defazio et al. 2024, "The Road Less
-- Scheduled"), as the authors' reference code (schedulefree/adamw_schedulefree.py) computes
-- it; the kernel is core/optim_sfadamw.c (formulas there).
--
-- The params hold y (where gradients are taken) in train mode and the average x in eval
-- mode: call opt:eval() before evaluating or saving a model for use, opt:train() before
-- training again (step() refuses to run in eval mode). The mode is the group option
-- `train_mode`, so state_dict/load_state_dict carry it: save params and optimizer together.
-- Defaults: lr 0.0025, betas {0.9, 0.999}, eps 1e-8, weight_decay 0, warmup_steps 0, r 0,
-- weight_lr_power 2. State per param: step, z, exp_avg_sq, weight_sum, lr_max.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local Optimizer = require "moonopt.optim.optimizer"
local no_grad = require("moonopt.autograd.engine").no_grad

local C = Optimizer.checks
local show = Optimizer.show
local axpy = core.axpy_

local M = {}

local SF = Optimizer.class{
  name = "ScheduleFreeAdamW",
  kernel = "sfadamw",
  defaults = {lr = 0.0025, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, warmup_steps = 0,
              r = 0, weight_lr_power = 2, train_mode = true},
  check = function(o, err)
    C.adam_family(o, err)
    if o.betas[1] == 0 then
      err("Invalid beta parameter at index 1: 0 (betas[1] must be in (0, 1): eval() divides by it)")
    end
    local w = C.number(o, err, "warmup_steps")
    if w < 0 or w ~= math.floor(w) or w == math.huge then
      err("Invalid warmup_steps value: %s (a non-negative integer)", show(w))
    end
    C.nonneg(o, err, "r")
    C.nonneg(o, err, "weight_lr_power")
    C.boolean(o, err, "train_mode")
  end,
  before_step = function(self, err)
    for gi, group in ipairs(self.param_groups) do
      if not group.train_mode then
        err("step: param group %d is in eval mode (call opt:train() before training)", gi)
      end
    end
  end,
}
M.ScheduleFreeAdamW = SF

-- p = lerp(p, z, weight) as PyTorch's lerp_ computes it in float32:
-- p + weight*(z - p) for weight < 0.5, else z - (z - p)*(1 - weight).
local function lerp_(p, z, weight)
  local d = z:clone()
  axpy(d, -1, p)                       -- d = z - p
  if weight < 0.5 then
    axpy(p, weight, d)
  else
    local omw = string.unpack("f", string.pack("f", 1 - string.unpack("f", string.pack("f", weight))))
    p:copy_(z)
    axpy(p, -omw, d)
  end
end

-- Moves every param with state from one point to the other: to x (eval) or back to y (train).
-- With shard_state (ZeRO-1) each rank moves its parts of the params (moonopt.dist.zero keys
-- the state by them) and the parts are then gathered: a collective, as step() is.
local function swap(self, to_train)
  local zero = rawget(self, "_zero") and require("moonopt.dist.zero")
  local moved = false
  for gi, group in ipairs(self.param_groups) do
    if group.train_mode ~= to_train then
      local b1 = group.betas[1]
      local weight = to_train and (1 - b1) or (1 - 1 / b1)
      for _, p in ipairs(zero and zero.shard_params(self, gi) or group.params) do
        local st = self.state[p]
        if st ~= nil and st.z ~= nil then lerp_(p, st.z, weight) end
      end
      group.train_mode, moved = to_train, true
    end
  end
  if zero and moved then zero.gather_params(self) end
  return self
end

-- (under grad mode off, as every optimizer-style write into the params)
--- Puts the params at the average x (for evaluation and for the model you keep).
SF.eval = apierror.api(function(self) return no_grad(swap, self, false) end)
--- Puts the params back at y (where the gradients are taken).
SF.train = apierror.api(function(self) return no_grad(swap, self, true) end)

return M
