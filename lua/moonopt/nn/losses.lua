--- moonopt.nn losses: MSELoss, CrossEntropyLoss, BCEWithLogitsLoss.
--
--   loss_fn:forward(out, target) -> a Lua number
--   loss_fn:backward(out, target) -> dLoss/dout (a tensor shaped like out)
--   loss_fn:forward_backward(out, target) -> loss, dLoss/dout   (one pass)
--   loss_fn(out, target) is loss_fn:forward(out, target)
--
-- Options (a table, all optional):
--   reduction = "mean" (default) | "sum"
--   CrossEntropyLoss: label_smoothing = 0 .. 1 (PyTorch's definition)
--
-- MSELoss:           out and target of the same shape; mean of (out - target)^2.
-- BCEWithLogitsLoss: out (logits) and target (0..1) of the same shape; the
--                    stable max(x, 0) - x y + log(1 + exp(-|x|)).
-- CrossEntropyLoss:  out {B, C} logits; target: B class indices 1..C, as a Lua
--                    table or a tensor of floats (any shape with B elements);
--                    log-softmax and NLL fused, max-subtracted (finite for any
--                    logits), mean over the batch.
-- The gradient buffer is reused between calls of the same batch shape: copy it
-- if you need to keep one across calls.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local nn_mse = core.nn_mse
local nn_bce = core.nn_bce_logits
local nn_ce = core.nn_cross_entropy

local M = {}

local reductions = {mean = core.NN_MEAN, sum = core.NN_SUM}

local function read_reduction(fname, r)
  if r == nil then return "mean", core.NN_MEAN end
  local code = reductions[r]
  if code == nil then
    apierror.fail("%s: reduction must be 'mean' or 'sum', got %s", fname, apierror.show(r))
  end
  return r, code
end

-- A loss over two tensors of one shape, computed by the C function `fn`.
local function pair_loss(name, fn)
  local L = base.class(name)
  function L:_init(opts)
    opts = apierror.check_options(name, opts, {reduction = true})
    self.reduction, self._red = read_reduction(name, opts.reduction)
  end
  function L:forward(out, target)
    return (fn(out, target, self._red, false))
  end
  function L:backward(out, target)
    local _, g = fn(out, target, self._red, true, self.grad_input)
    self.grad_input = g
    return g
  end
  function L:forward_backward(out, target)
    local loss, g = fn(out, target, self._red, true, self.grad_input)
    self.grad_input = g
    return loss, g
  end
  function L:extra_repr()
    return self.reduction == "mean" and "" or "reduction='" .. self.reduction .. "'"
  end
  return L
end

M.MSELoss = pair_loss("MSELoss", nn_mse)
M.BCEWithLogitsLoss = pair_loss("BCEWithLogitsLoss", nn_bce)

local CrossEntropyLoss = base.class("CrossEntropyLoss")

function CrossEntropyLoss:_init(opts)
  local fname = "CrossEntropyLoss"
  opts = apierror.check_options(fname, opts, {reduction = true, label_smoothing = true})
  self.reduction, self._red = read_reduction(fname, opts.reduction)
  self.label_smoothing = base.check_number(fname, "label_smoothing", opts.label_smoothing or 0, 0, 1)
end

function CrossEntropyLoss:forward(out, target)
  return (nn_ce(out, target, self.label_smoothing, self._red, false))
end

function CrossEntropyLoss:backward(out, target)
  local _, g = nn_ce(out, target, self.label_smoothing, self._red, true, self.grad_input)
  self.grad_input = g
  return g
end

function CrossEntropyLoss:forward_backward(out, target)
  local loss, g = nn_ce(out, target, self.label_smoothing, self._red, true, self.grad_input)
  self.grad_input = g
  return loss, g
end

function CrossEntropyLoss:extra_repr()
  local parts = {}
  if self.reduction ~= "mean" then parts[#parts + 1] = "reduction='" .. self.reduction .. "'" end
  if self.label_smoothing ~= 0 then
    parts[#parts + 1] = "label_smoothing=" .. tostring(self.label_smoothing)
  end
  return table.concat(parts, ", ")
end

M.CrossEntropyLoss = CrossEntropyLoss

return M
