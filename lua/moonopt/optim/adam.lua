--- moonopt.optim.adam: the Adam family over the C kernels (core/optim_adam.c): Adam and
-- AdamW with every switch and flavor (docs/design.md, "The Adam family"), Adamax, NAdam,
-- RAdam. Each class names its kernel's descriptor; the kernel reads the options by name.
local Optimizer = require "moonopt.optim.optimizer"

local C = Optimizer.checks
local show = Optimizer.show

local M = {}

-- ---- Adam / AdamW -----------------------------------------------------------------------

local EPS_MODES = {raw = 0, hat = 1}
local WD_MODES = {l2 = 0, decoupled = 1, decoupled_bc = 2}
local BERT_EXCLUDE = {"LayerNorm", "layer_norm", "bias"}

local function adam_defaults(wd)
  return {
    lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = wd, amsgrad = false,
    maximize = false, flavor = "pytorch", bias_correction = true, eps_mode = "raw",
    weight_decay_mode = "l2", rescale_grad = 1, clip_gradient = false, lr_decay = 0,
    exclude_from_weight_decay = false, clip_weight_decay = false, skip_nonfinite_rescale = false,
    state_dtype = "float32", state_rounding = "nearest",
  }
end

-- The flavors: each sets the switches and the defaults that framework uses. The source file
-- and function each one follows, and where it differs, are in docs/optimizers.md ("Adam and
-- AdamW: switches and flavors"); tests/golden/make_flavor_golden.py mirrors each source.
local ADAM_PRESETS = {
  -- torch/optim/adam.py (1.13) _single_tensor_adam
  pytorch = {eps_mode = "raw", bias_correction = true, weight_decay_mode = "l2", eps = 1e-8},
  -- MXNet 2.x python/mxnet/optimizer/adam.py Adam.fused_step -> AdamUpdateKernel:
  -- clip(rescale*g) + wd*w
  mxnet = {eps_mode = "hat", bias_correction = true, weight_decay_mode = "l2", eps = 1e-8,
           clip_weight_decay = false},
  -- MXNet <= 1.9.1 optimizer.py Adam.update -> AdamUpdateKernel: clip(rescale*g + wd*w)
  mxnet1 = {eps_mode = "hat", bias_correction = true, weight_decay_mode = "l2", eps = 1e-8,
            clip_weight_decay = true},
  -- Keras 3 keras/src/optimizers/adam.py update_step; base_optimizer.py _apply_weight_decay
  -- decays every optimizer's weights (w -= w*wd*lr) before the step
  keras = {eps_mode = "hat", bias_correction = true, weight_decay_mode = "decoupled", eps = 1e-7},
  -- torch/optim adam.lua (final version): weightDecay is L2, clr = lr/(1 + t*lrd)
  torch7 = {eps_mode = "hat", bias_correction = true, weight_decay_mode = "l2", eps = 1e-8},
}
-- MXNet's AdamW (python/mxnet/optimizer/adamW.py AdamW.fused_step -> contrib adamw-inl.h,
-- lr 1 and eta = the bias-corrected lr): the same code in 1.x and 2.x, so mxnet1 is an alias.
local MXNET_ADAMW = {eps_mode = "hat", bias_correction = true, weight_decay_mode = "decoupled_bc",
                     eps = 1e-6, weight_decay = 0, skip_nonfinite_rescale = true}
local ADAMW_PRESETS = {
  -- torch/optim/adamw.py (1.13) _single_tensor_adamw
  pytorch = {eps_mode = "raw", bias_correction = true, weight_decay_mode = "decoupled", eps = 1e-8,
             weight_decay = 1e-2},
  mxnet = MXNET_ADAMW,
  mxnet1 = MXNET_ADAMW,
  -- google-research/bert optimization.py AdamWeightDecayOptimizer.apply_gradients:
  -- w -= lr*(m/(sqrt(v) + eps) + wd*w), no bias correction; wd 0.01 as create_optimizer
  bert = {eps_mode = "raw", bias_correction = false, weight_decay_mode = "decoupled_bc", eps = 1e-6,
          weight_decay = 0.01, exclude_from_weight_decay = BERT_EXCLUDE},
  -- Keras 3 keras/src/optimizers/adamw.py (Adam's update_step, weight_decay 0.004)
  keras = {eps_mode = "hat", bias_correction = true, weight_decay_mode = "decoupled", eps = 1e-7,
           weight_decay = 0.004},
}

local function check_adam(presets)
  return function(o, err)
    C.adam_family(o, err)
    C.boolean(o, err, "amsgrad")
    C.boolean(o, err, "maximize")
    C.boolean(o, err, "bias_correction")
    C.boolean(o, err, "clip_weight_decay")
    C.boolean(o, err, "skip_nonfinite_rescale")
    if presets[o.flavor] == nil then err("unknown flavor %s", show(o.flavor)) end
    if EPS_MODES[o.eps_mode] == nil then
      err("option 'eps_mode' must be \"raw\" or \"hat\", got %s", show(o.eps_mode))
    end
    if WD_MODES[o.weight_decay_mode] == nil then
      err("option 'weight_decay_mode' must be \"l2\", \"decoupled\" or \"decoupled_bc\", got %s",
          show(o.weight_decay_mode))
    end
    -- a non-finite rescale_grad is MXNet AdamW's signal to skip the step; else an error
    local rs = o.rescale_grad
    if not o.skip_nonfinite_rescale then
      rs = C.number(o, err, "rescale_grad")
      if rs == math.huge or rs == -math.huge then err("Invalid rescale_grad value: %s", show(rs)) end
    elseif type(rs) ~= "number" then
      err("option 'rescale_grad' must be a number, got %s", type(rs))
    end
    local clip = o.clip_gradient
    if clip ~= false and clip ~= nil then
      if type(clip) ~= "number" or clip ~= clip then
        err("option 'clip_gradient' must be a number or false, got %s", show(clip))
      end
    end
    C.nonneg(o, err, "lr_decay")
    C.state_dtype(o, err)
    local ex = o.exclude_from_weight_decay
    if ex ~= false and ex ~= nil then
      if type(ex) ~= "table" then
        err("option 'exclude_from_weight_decay' must be a list of Lua patterns or false, got %s",
            type(ex))
      end
      for i, pat in ipairs(ex) do
        if type(pat) ~= "string" then
          err("exclude_from_weight_decay[%d] must be a string, got %s", i, type(pat))
        end
      end
    end
  end
end

-- Which params of a group a name pattern list exempts from weight decay (names known only).
local function no_decay_mask(group)
  local ex, names = group.exclude_from_weight_decay, group.names
  if not ex or not names then return false end
  local mask, any = {}, false
  for j = 1, #group.params do
    local name = names[j]
    if name then
      for _, pat in ipairs(ex) do
        if name:find(pat) then
          mask[j], any = true, true
          break
        end
      end
    end
  end
  return any and mask
end

-- The exemption masks of every group ({[gi] = mask}), for the kernel's weight decay 0.
-- A mask depends on the pattern list and the names: recomputed when either table is
-- replaced, never per element or per step.
local function masks(self)
  local cache = self._mask_cache
  if cache == nil then cache = {}; self._mask_cache = cache end
  local out, any = self._masks or {}, false
  self._masks = out
  for gi, group in ipairs(self.param_groups) do
    local c = cache[gi]
    local ex, names = group.exclude_from_weight_decay, group.names
    if c == nil or c.ex ~= ex or c.names ~= names or c.params ~= group.params then
      c = {ex = ex, names = names, params = group.params, mask = no_decay_mask(group)}
      cache[gi] = c
    end
    out[gi] = c.mask or nil
    any = any or c.mask ~= false
  end
  for gi = #self.param_groups + 1, #out do out[gi] = nil end
  return any and out or nil
end

local function effective_wd(_, group, j)
  local mask = no_decay_mask(group)
  if mask and mask[j] then return 0 end
  return group.weight_decay
end

-- Adam and AdamW differ only in their defaults and flavors.
local function adam_class(name, weight_decay, presets)
  return Optimizer.class{
    name = name,
    defaults = adam_defaults(weight_decay),
    presets = presets,
    kernel = "adam",
    check = check_adam(presets),
    masks = masks,
    effective_wd = effective_wd,
  }
end

M.Adam = adam_class("Adam", 0, ADAM_PRESETS)
M.AdamW = adam_class("AdamW", 1e-2, ADAMW_PRESETS)

-- ---- Adamax -----------------------------------------------------------------------------

M.Adamax = Optimizer.class{
  name = "Adamax",
  defaults = {lr = 2e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, maximize = false},
  check = function(o, err)
    C.adam_family(o, err)
    C.boolean(o, err, "maximize")
  end,
  kernel = "adamax",
}

-- ---- NAdam ------------------------------------------------------------------------------

M.NAdam = Optimizer.class{
  name = "NAdam",
  defaults = {lr = 2e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0,
              momentum_decay = 4e-3, decoupled_weight_decay = false, maximize = false},
  check = function(o, err)
    C.adam_family(o, err)
    C.nonneg(o, err, "momentum_decay")
    C.boolean(o, err, "decoupled_weight_decay")
    C.boolean(o, err, "maximize")
  end,
  kernel = "nadam",
}

-- ---- RAdam ------------------------------------------------------------------------------

M.RAdam = Optimizer.class{
  name = "RAdam",
  defaults = {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0,
              decoupled_weight_decay = false, maximize = false},
  check = function(o, err)
    C.adam_family(o, err)
    C.boolean(o, err, "decoupled_weight_decay")
    C.boolean(o, err, "maximize")
  end,
  kernel = "radam",
}

return M
