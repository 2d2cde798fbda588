--- moonopt.nn losses: MSELoss, CrossEntropyLoss, BCEWithLogitsLoss.
--
--   loss_fn:forward(out, target) -> a Lua number
--   loss_fn:backward(out, target) -> dLoss/dout (a tensor shaped like out)
--   loss_fn:forward_backward(out, target) -> loss, dLoss/dout   (one pass)
--   loss_fn(out, target) is loss_fn:forward(out, target)
--
-- Options (a table, all optional):
--   reduction = "mean" (default) | "sum"
--   CrossEntropyLoss: label_smoothing = 0 .. 1 (PyTorch's definition); weight = a {C} tensor
--                     of class weights; ignore_index = a target value whose rows count for
--                     nothing (both as F.cross_entropy: computed with its tensor ops)
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
  opts = apierror.check_options(fname, opts, {reduction = true, label_smoothing = true,
                                              weight = true, ignore_index = true})
  self.reduction, self._red = read_reduction(fname, opts.reduction)
  self.label_smoothing = base.check_number(fname, "label_smoothing", opts.label_smoothing or 0, 0, 1)
  if opts.weight ~= nil then
    local w = opts.weight
    if not core.is_tensor(w) or w:dim() ~= 1 then
      apierror.fail("%s: weight must be a 1-d tensor of class weights, got %s", fname,
                    core.is_tensor(w) and apierror.shape_str(w) or apierror.show(w))
    end
    self.weight = w
  end
  if opts.ignore_index ~= nil then
    self.ignore_index = apierror.check_int(fname, "ignore_index", opts.ignore_index)
  end
end

-- With weight or ignore_index (the fused kernel has neither): the loss is F.cross_entropy's
-- tensor ops, the gradient its closed form below, both with grad mode off.
local function weighted(self)
  return self.weight ~= nil or self.ignore_index ~= nil
end

local function f_loss(self, out, target)
  local F = require "moonopt.nn.functional"
  local w = self.weight and self.weight:to(out.dtype) or nil
  return F.cross_entropy(out, target, {reduction = self.reduction, weight = w,
                                       ignore_index = self.ignore_index,
                                       label_smoothing = self.label_smoothing})
end

-- The loss and its gradient with weight / ignore_index, in tensor ops with grad mode off:
-- with p = softmax(x), wy_i the weight of row i's class (0 on ignored rows), m_i the row's
-- mask, W = sum_c w_c and D = sum_i wy_i for the mean (1 for the sum),
--   dL/dx_ij = [(1 - ls) wy_i (p_ij - [j = y_i]) + ls / C m_i (W p_ij - w_j)] / D.
local function f_forward_backward(self, out, target)
  return require("moonopt.autograd.engine").no_grad(function()
    local x = out:detach()
    local B, C = x:size(1), x:size(2)
    local l = f_loss(self, x, target) -- checks the arguments
    local idx = (core.is_tensor(target) and target:detach() or core.tensor(target)):reshape(B, 1)
    local mask = core.ones(B, 1, {dtype = x.dtype})
    if self.ignore_index ~= nil then
      local ignored = idx:eq(self.ignore_index)
      mask = (1 - ignored):to(x.dtype)
      idx = core.where(ignored, 1, idx)
    end
    local w = self.weight and self.weight:to(x.dtype) or core.ones(C, {dtype = x.dtype})
    local wy = w:index_select(1, idx:reshape(B)):reshape(B, 1) * mask
    local p = x:softmax(2)
    local onehot = core.zeros_like(x):scatter_add(2, idx, core.ones(B, 1, {dtype = x.dtype}))
    local ls = self.label_smoothing
    local gx = (p - onehot) * (wy * (1 - ls))
    if ls > 0 then gx = gx + (p * w:sum():item() - w:reshape(1, C)) * (mask * (ls / C)) end
    if self.reduction == "mean" then gx = gx / wy:sum():item() end
    return l:item(), gx
  end)
end

function CrossEntropyLoss:forward(out, target)
  if weighted(self) then
    return require("moonopt.autograd.engine").no_grad(f_loss, self, out, target):item()
  end
  return (nn_ce(out, target, self.label_smoothing, self._red, false))
end

function CrossEntropyLoss:backward(out, target)
  if weighted(self) then return (select(2, self:forward_backward(out, target))) end
  local _, g = nn_ce(out, target, self.label_smoothing, self._red, true, self.grad_input)
  self.grad_input = g
  return g
end

function CrossEntropyLoss:forward_backward(out, target)
  if weighted(self) then
    local loss, g = f_forward_backward(self, out, target)
    self.grad_input = g
    return loss, g
  end
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
  if self.weight ~= nil then parts[#parts + 1] = "weight={" .. self.weight:numel() .. "}" end
  if self.ignore_index ~= nil then parts[#parts + 1] = "ignore_index=" .. self.ignore_index end
  return table.concat(parts, ", ")
end

M.CrossEntropyLoss = CrossEntropyLoss

return M
