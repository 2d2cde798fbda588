--- moonopt.optim.sgd: SGD with momentum, dampening, Nesterov momentum, L2 weight decay and
-- maximize, as PyTorch 1.13's torch.optim.SGD (lr has no default there, nor here).
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks
local show = Optimizer.show

local M = {}

M.SGD = Optimizer.class{
  name = "SGD",
  -- lr = false: required (PyTorch's `lr=required`)
  defaults = {lr = false, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false,
              maximize = false, state_dtype = "float32", state_rounding = "nearest"},
  check = function(o, err)
    if o.lr == false or o.lr == nil then err("option 'lr' is required") end
    C.lr(o, err)
    C.nonneg(o, err, "momentum")
    local d = C.number(o, err, "dampening")
    if d == math.huge or d == -math.huge then err("Invalid dampening value: %s", show(d)) end
    C.weight_decay(o, err)
    C.boolean(o, err, "nesterov")
    C.boolean(o, err, "maximize")
    if o.nesterov and (o.momentum <= 0 or o.dampening ~= 0) then
      err("Nesterov momentum requires a momentum and zero dampening")
    end
    C.state_dtype(o, err)
    if o.state_dtype ~= "float32" and o.momentum == 0 then
      err("state_dtype %s keeps the momentum buffer, and momentum is 0 (SGD without momentum "
          .. "keeps no state)", show(o.state_dtype))
    end
  end,
  -- the kernel (core/optim_sgd.c) makes the momentum buffer at a param's first step with
  -- momentum: PyTorch starts it at the gradient
  kernel = "sgd",
}

return M
