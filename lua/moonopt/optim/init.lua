--- moonopt.optim (mo.optim): optimizers with PyTorch 1.13's names, options and defaults.
--
--   local opt = mo.optim.AdamW(params, {lr = 1e-3, weight_decay = 1e-2, flavor = "pytorch"})
--   opt:zero_grad(); ...backward...; opt:step()
--
-- Classes: SGD Adam AdamW Adamax NAdam RAdam RMSprop Adagrad Adadelta Lion LAMB
-- ScheduleFreeAdamW LBFGS.
-- params: a list of tensors (each with .grad), a list of {name, tensor} pairs, a map
-- name -> tensor, or a list of groups {params = ..., <option> = ...} (group keys override).
-- Helpers: groups(named_params, rules), clip_grad_norm(params, max_norm [, opts]) -> norm,
-- clip_grad_value(params, clip), all_finite(params) -> boolean.
-- torch7's functional layer: sgd adam adamax adagrad adadelta rmsprop nag lbfgs cg
-- (x, {fx, ...} = mo.optim.adam(opfunc, x, config, state)). See docs/optimizers.md.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"

local M = {}

M.Optimizer = require "moonopt.optim.optimizer"
for _, family in ipairs{"sgd", "adam", "rms", "lion", "lamb", "schedulefree", "lbfgs",
                        "functional"} do
  for name, value in pairs(require("moonopt.optim." .. family)) do
    M[name] = value
  end
end

local is_tensor = core.is_tensor

-- A list of {name, tensor} pairs from either accepted form (a map is sorted by name).
local function named_list(named)
  if type(named) ~= "table" or is_tensor(named) then
    error("groups: named_params must be a list of {name, tensor} pairs or a map name -> tensor", 3)
  end
  local list = {}
  if #named == 0 then
    local names = {}
    for k in pairs(named) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do
      if type(k) ~= "string" or not is_tensor(named[k]) then
        error("groups: entry " .. tostring(k) .. " of named_params is not name -> tensor", 3)
      end
      list[#list + 1] = {k, named[k]}
    end
  else
    for i, pair in ipairs(named) do
      if type(pair) ~= "table" or type(pair[1]) ~= "string" or not is_tensor(pair[2]) then
        error("groups: named_params[" .. i .. "] must be a {name, tensor} pair", 3)
      end
      list[i] = pair
    end
  end
  return list
end

local RULE_KEYS = {match = true, ndim = true, fn = true}

local function rule_matches(rule, name, t)
  if rule.match ~= nil then
    local pats = type(rule.match) == "table" and rule.match or {rule.match}
    local any = false
    for _, pat in ipairs(pats) do
      if name:find(pat) then any = true; break end
    end
    if not any then return false end
  end
  if rule.ndim ~= nil and t:dim() ~= rule.ndim then return false end
  if rule.fn ~= nil and not rule.fn(name, t) then return false end
  return true
end

--- Param groups from parameter names and shapes. Each param goes to the first rule that
-- matches it (all of the rule's conditions hold: `match`, a Lua pattern or a list of them,
-- any of which finds the name; `ndim`, the tensor's number of dimensions; `fn(name, t)`);
-- the rule's other keys become that group's options. Params no rule matches form the
-- first group, with no overrides. Empty groups are left out. Every group carries `names`.
--   mo.optim.groups(model:named_parameters(),
--                   {{match = {"bias$", "LayerNorm"}, weight_decay = 0}, {ndim = 1, weight_decay = 0}})
function M.groups(named_params, rules)
  local list = named_list(named_params)
  rules = rules or {}
  if type(rules) ~= "table" then error("groups: rules must be a list of tables", 2) end
  for i, rule in ipairs(rules) do
    if type(rule) ~= "table" then error("groups: rule " .. i .. " must be a table", 2) end
    local m = rule.match
    if m ~= nil and type(m) ~= "string" then
      if type(m) ~= "table" then error("groups: rule " .. i .. ": match must be a pattern or a list of patterns", 2) end
      for _, pat in ipairs(m) do
        if type(pat) ~= "string" then error("groups: rule " .. i .. ": match must hold strings", 2) end
      end
    end
    if rule.ndim ~= nil and math.type(rule.ndim) ~= "integer" then
      error("groups: rule " .. i .. ": ndim must be an integer", 2)
    end
    if rule.fn ~= nil and type(rule.fn) ~= "function" then
      error("groups: rule " .. i .. ": fn must be a function", 2)
    end
  end
  local buckets = {[0] = {params = {}, names = {}}}
  for i, rule in ipairs(rules) do
    local g = {params = {}, names = {}}
    for k, v in pairs(rule) do
      if not RULE_KEYS[k] then g[k] = v end
    end
    buckets[i] = g
  end
  for _, pair in ipairs(list) do
    local name, t = pair[1], pair[2]
    local into = 0
    for i, rule in ipairs(rules) do
      if rule_matches(rule, name, t) then into = i; break end
    end
    local b = buckets[into]
    b.params[#b.params + 1] = t
    b.names[#b.names + 1] = name
  end
  local groups = {}
  for i = 0, #rules do
    if #buckets[i].params > 0 then groups[#groups + 1] = buckets[i] end
  end
  return groups
end

-- The tensors of a params argument (a list of tensors, pairs, a map or groups).
local function param_list(params, fname)
  if type(params) ~= "table" then
    error(fname .. ": params must be a list of tensors, got " .. type(params), 3)
  end
  if is_tensor(params) then return {params} end
  local out = {}
  local function add(v)
    if is_tensor(v) then
      out[#out + 1] = v
    elseif type(v) == "table" and is_tensor(v[2]) then
      out[#out + 1] = v[2]
    elseif type(v) == "table" and v.params ~= nil then
      for _, x in pairs(v.params) do add(x) end
    else
      error(fname .. ": params must hold tensors", 4)
    end
  end
  if #params == 0 then
    for _, v in pairs(params) do add(v) end
  else
    for _, v in ipairs(params) do add(v) end
  end
  return out
end

local CLIP_OPTS = {formula = true, error_if_nonfinite = true}

--- The one gradient-norm clipping (core/optim_util.c, mo_clip_grad_norm_ex): the global L2
-- norm of every .grad (params without one are skipped), returned as it was before clipping.
-- opts.formula:
--   "pytorch" (default; torch.nn.utils.clip_grad_norm_): grads *= max_norm/(norm + 1e-6)
--       when that factor is < 1; a NaN norm makes every grad NaN, an infinite one scales by 0;
--   "global" (TF's clip_by_global_norm, what BERT's training script uses): grads *=
--       max_norm/max(norm, max_norm); a NaN or infinite norm makes every grad NaN.
-- opts.error_if_nonfinite = true raises instead, changing nothing, when the norm is NaN or inf.
function M.clip_grad_norm(params, max_norm, opts)
  local list = param_list(params, "clip_grad_norm")
  if type(max_norm) ~= "number" or max_norm ~= max_norm or max_norm < 0 then
    error("clip_grad_norm: max_norm must be a number >= 0, got " .. apierror.show(max_norm), 2)
  end
  local formula, strict = "pytorch", false
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("clip_grad_norm: opts must be a table, got " .. type(opts), 2)
    end
    for k in pairs(opts) do
      if not CLIP_OPTS[k] then error("clip_grad_norm: unknown option '" .. tostring(k) .. "'", 2) end
    end
    formula = opts.formula or formula
    if formula ~= "pytorch" and formula ~= "global" then
      error("clip_grad_norm: opts.formula must be \"pytorch\" or \"global\", got "
            .. apierror.show(formula), 2)
    end
    strict = opts.error_if_nonfinite and true or false
  end
  local ok, norm = pcall(core.clip_grad_norm, list, max_norm, formula, strict)
  if not ok then error(norm, 2) end
  return norm
end

--- Clamps every .grad element into [-clip, clip].
function M.clip_grad_value(params, clip)
  core.clip_grad_value(param_list(params, "clip_grad_value"), clip)
end

--- True when no .grad of params (or no element of a tensor) holds NaN or +-inf.
function M.all_finite(params)
  if is_tensor(params) then return core.all_finite(params) end
  return core.optim_check(param_list(params, "all_finite"), "all_finite", true)
end

return M
