--- moonopt.checkpoint: saving and resuming training runs in the safetensors format.
--
--   mo.save("run.ckpt", {model = model, optimizer = opt, scheduler = sched,
--                        fit = state, extra = {epoch = 3, note = "lr sweep"}})
--   local extra = mo.load("run.ckpt", {model = model, optimizer = opt, scheduler = sched,
--                                      fit = state})
--   mo.save_tensors("w.safetensors", {w = w, b = b} [, {note = "text"}])
--   local ts, meta = mo.load_tensors("w.safetensors")   -- {w = tensor, b = tensor}
--
-- Tensors are stored under "model.<parameter or buffer name>" ("0.weight", "1.running_mean"),
-- "optimizer.<path in opt:state_dict()>" ("optimizer.state.3.exp_avg"), "extra.<path>"
-- and "fit.grad.<parameter name>"; everything else is JSON in the header's __metadata__
-- (see lua/moonopt/json.lua for the exact encoding, docs/checkpoints.md for the keys).
--
-- Loading reads and checks the WHOLE file first (the C reader: header, offsets,
-- checksum), then decodes and checks every part against the objects given (names,
-- shapes, the optimizer's class, the generator state), and only then changes anything:
-- a bad file raises an error that names the file and the problem and leaves the model,
-- optimizer, scheduler, generator and fit state as they were.
--
-- Errors go through moonopt.apierror: every message starts with the public function's
-- name (the helpers below take it as `fname`), and the four entry points are wrapped with
-- apierror.api, so the message points at the caller's line. File paths are written %q.
local core = require "moonopt.core"
local json = require "moonopt.json"
local apierror = require "moonopt.apierror"

local M = {}

local FORMAT = "1"
local is_tensor = core.is_tensor
-- what the writer stores: tensors, and lean optimizer state (docs/design.md "Lean optimizer state")
local function is_stored(v) return is_tensor(v) or core.is_lean(v) end
local fmt = string.format
local fail, show, show_key = apierror.fail, apierror.show, apierror.show_key
local shape_str, same_shape = apierror.shape_str, apierror.same_shape

local function method(obj, name)
  local ok, f = pcall(function() return obj[name] end)
  return ok and type(f) == "function" and f or nil
end

local function check_path(fname, path)
  if type(path) ~= "string" then fail("%s: path must be a string, got %s", fname, show(path)) end
  if path == "" or path:find("\0", 1, true) then fail("%s: path must be a file name, got %q", fname, path) end
end

-- mo.save's and mo.load's arguments: the path and the table of parts (nil -> {}), whose keys
-- must be in the set `known`; returns that table.
local function check_args(fname, path, what, known)
  check_path(fname, path)
  if what == nil then return {} end
  if type(what) ~= "table" then
    fail("%s: expected a table {model =, optimizer =, ...}, got %s", fname, show(what))
  end
  for k in pairs(what) do
    if not known[k] then fail("%s: unknown field %s", fname, show_key(k)) end
  end
  for _, k in ipairs{"model", "optimizer", "scheduler"} do
    if what[k] ~= nil and type(what[k]) ~= "table" then
      fail("%s: %s must be a table (a moonopt %s), got %s", fname, k, k, show(what[k]))
    end
  end
  if what.fit ~= nil and type(what.fit) ~= "table" then
    fail("%s: fit must be the state table of mo.train.fit, got %s", fname, show(what.fit))
  end
  if what.rng ~= nil and type(what.rng) ~= "boolean" then
    fail("%s: rng must be a boolean, got %s", fname, show(what.rng))
  end
  return what
end

local function named_params(fname, model)
  local f = method(model, "named_parameters")
  if not f then fail("%s: model must have a named_parameters method", fname) end
  local list = f(model)
  -- buffers (BatchNorm's running statistics) are saved and restored like parameters
  local fb = method(model, "named_buffers")
  if fb then
    list = table.move(list, 1, #list, 1, {})
    for _, nb in ipairs(fb(model)) do list[#list + 1] = nb end
  end
  for i, np in ipairs(list) do
    if type(np) ~= "table" or type(np[1]) ~= "string" or not is_tensor(np[2]) then
      fail("%s: model:named_parameters() entry %d is not a {name, tensor} pair", fname, i)
    end
  end
  return list
end

-- ===========================================================================
-- saving

local save_known = {model = true, optimizer = true, scheduler = true, extra = true, fit = true, rng = true}

local function save(path, what)
  local fname = "mo.save"
  what = check_args(fname, path, what, save_known)
  local names, tensors, meta, used = {}, {}, {}, {}

  -- the stored name of a tensor: unique (a path that repeats gets "#2", "#3", ...)
  local function add(name, t)
    local unique, k = name, 1
    while used[unique] do
      k = k + 1
      unique = name .. "#" .. k
    end
    used[unique] = true
    names[#names + 1], tensors[#tensors + 1] = unique, t
    return unique
  end
  local function encode(value, prefix, part)
    local ok, text = pcall(json.encode, value, {
      is_tensor = is_stored, path = "",
      tensor = function(t, p)
        if not is_stored(t) then fail("%s: %s: not a tensor", fname, p) end
        local name = add(prefix .. (p == "" and "" or ".") .. p:gsub("%[(%-?%d+)%]", ".%1"):gsub("^%.", ""), t)
        -- lean optimizer state: its codes are the entry (BF16, I8, U8); int8 state's block
        -- scales go beside it as "<name>.absmax" (F32)
        if core.is_lean(t) and t:dtype() == "int8" then
          local scales = name .. ".absmax"
          if used[scales] then fail("%s: %s: the name '%s' is taken", fname, p, scales) end
          add(scales, t:absmax())
        end
        return name
      end,
    })
    if not ok then fail("%s: %s: %s", fname, part, text) end
    return text
  end

  local params
  if what.model ~= nil then
    params = named_params(fname, what.model)
    for _, np in ipairs(params) do add("model." .. np[1], np[2]) end
  end
  if what.optimizer ~= nil then
    local opt = what.optimizer
    local f = method(opt, "state_dict")
    if not f then fail("%s: optimizer must have a state_dict method", fname) end
    meta["moonopt.optimizer"] = encode(f(opt), "optimizer", "optimizer")
    meta["moonopt.optimizer_class"] = tostring(opt.name or "?")
  end
  if what.scheduler ~= nil then
    local f = method(what.scheduler, "state_dict")
    if not f then fail("%s: scheduler must have a state_dict method", fname) end
    meta["moonopt.scheduler"] = encode(f(what.scheduler), "scheduler", "scheduler")
  end
  if what.fit ~= nil then
    local st = what.fit
    meta["moonopt.fit"] = encode(st, "fit", "fit")
    -- gradients accumulated over batches of an unfinished optimizer step
    if (st.pending or 0) > 0 then
      if not params then
        fail("%s: fit: the state has %d accumulated batches: save the model too", fname, st.pending)
      end
      for _, np in ipairs(params) do
        local g = np[2].grad
        if g ~= nil then add("fit.grad." .. np[1], g) end
      end
    end
  end
  if what.extra ~= nil then meta["moonopt.extra"] = encode(what.extra, "extra", "extra") end
  if what.rng ~= false then meta["moonopt.rng"] = core.rng_get_state() end
  meta["moonopt.format"] = FORMAT
  meta["moonopt.version"] = core._VERSION
  core.ckpt_write(path, names, tensors, meta, fname)
end

-- ===========================================================================
-- loading

local load_known = {model = true, optimizer = true, scheduler = true, fit = true, rng = true, strict = true}

local function load(path, what)
  local fname = "mo.load"
  what = check_args(fname, path, what, load_known)
  local tensors, meta, _, dtypes = core.ckpt_read(path, fname)
  -- an optimizer state entry saved as lean state (BF16 codes, or I8/U8 codes beside their
  -- F32 block scales) becomes a lean state object again, bit for bit
  local function lean_state(name, t, dtype)
    if dtype == "BF16" then return core.lean_encode(t, "bfloat16", "signed") end
    if dtype ~= "I8" and dtype ~= "U8" then return t end
    local scales = tensors[name .. ".absmax"]
    if scales == nil then
      error(fmt("int8 state '%s' has no block scales '%s.absmax'", name, name), 0)
    end
    local ok, s = pcall(core.lean_from_codes, "int8", dtype == "I8" and "signed" or "unsigned", t, scales)
    if not ok then error(fmt("int8 state '%s': %s", name, tostring(s)), 0) end
    return s
  end
  local function bad(msg, ...)
    fail("%s: %s: " .. msg, fname, path, ...)
  end
  -- decodes the JSON of metadata `key`; tensor references must name tensors under `prefix`.
  local function decode(key, prefix)
    local text = meta[key]
    if text == nil then return nil end
    local ok, v = pcall(json.decode, text, {tensor = function(name)
      local t = tensors[name]
      if t == nil or name:sub(1, #prefix + 1) ~= prefix .. "." then
        error(fmt("refers to tensor '%s', which is not among the file's '%s.' tensors", name, prefix), 0)
      end
      if prefix ~= "optimizer" then return t end
      return lean_state(name, t, dtypes[name])
    end})
    if not ok then bad("metadata '%s': %s", key, v) end
    return v
  end
  local strict = what.strict ~= false

  -- 1. check everything, build what will be committed
  local model_copies = {}
  local params
  if what.model ~= nil then
    params = named_params(fname, what.model)
    local have = {}
    for _, np in ipairs(params) do
      local name, p = "model." .. np[1], np[2]
      have[name] = true
      local t = tensors[name]
      if t == nil then
        if strict then bad("the file has no tensor '%s' (the model's parameter '%s')", name, np[1]) end
      elseif not same_shape(t, p) then
        bad("%s: file has %s, model has %s", name, shape_str(t), shape_str(p))
      else
        model_copies[#model_copies + 1] = {p, t}
      end
    end
    if strict then
      for name in pairs(tensors) do
        if name:sub(1, 6) == "model." and not have[name] then
          bad("unexpected tensor '%s': the model has no parameter '%s'", name, name:sub(7))
        end
      end
    end
  end

  local opt_sd
  if what.optimizer ~= nil then
    local opt = what.optimizer
    if not method(opt, "load_state_dict") then fail("%s: optimizer must have a load_state_dict method", fname) end
    opt_sd = decode("moonopt.optimizer", "optimizer")
    if opt_sd == nil then bad("the file holds no optimizer state") end
    local cls = meta["moonopt.optimizer_class"]
    if cls ~= nil and opt.name ~= nil and cls ~= tostring(opt.name) then
      bad("the file holds %s state, the optimizer is %s", cls, tostring(opt.name))
    end
  end

  local sched_sd
  if what.scheduler ~= nil then
    if not method(what.scheduler, "load_state_dict") then
      fail("%s: scheduler must have a load_state_dict method", fname)
    end
    sched_sd = decode("moonopt.scheduler", "scheduler")
    if sched_sd == nil then bad("the file holds no scheduler state") end
  end

  local rng_state
  if what.rng ~= false and meta["moonopt.rng"] ~= nil then
    rng_state = meta["moonopt.rng"]
    -- validate by setting it, then put the current state back
    local current = core.rng_get_state()
    local ok, msg = pcall(core.rng_set_state, rng_state)
    core.rng_set_state(current)
    if not ok then bad("metadata 'moonopt.rng': %s", (tostring(msg):gsub("^bad argument #1 to '[%w_]+' ", ""))) end
  end

  local fit_state, grad_copies
  if what.fit ~= nil then
    fit_state = decode("moonopt.fit", "fit")
    if fit_state == nil then bad("the file holds no fit state") end
    if type(fit_state) ~= "table" then bad("metadata 'moonopt.fit' is not a table") end
    grad_copies = {}
    if (tonumber(fit_state.pending) or 0) > 0 then
      if not params then bad("the fit state has accumulated gradients: load the model too") end
      for _, np in ipairs(params) do
        local t = tensors["fit.grad." .. np[1]]
        if t ~= nil then
          if not same_shape(t, np[2]) then
            bad("fit.grad.%s: file has %s, model has %s", np[1], shape_str(t), shape_str(np[2]))
          end
          grad_copies[#grad_copies + 1] = {np[2], t}
        end
      end
    end
  end

  local extra = decode("moonopt.extra", "extra")

  -- 2. commit. The scheduler and the optimizer check their state dicts before changing
  -- anything; the scheduler goes first because restoring it (a small table) is cheap
  -- when the optimizer then refuses its state.
  local opt, sched = what.optimizer, what.scheduler
  local sched_before, lrs_before
  if sched_sd ~= nil then
    sched_before = sched:state_dict()
    if opt ~= nil and type(opt.param_groups) == "table" then
      lrs_before = {}
      for i, g in ipairs(opt.param_groups) do lrs_before[i] = g.lr end
    end
    local ok, msg = pcall(sched.load_state_dict, sched, sched_sd)
    if not ok then bad("scheduler: %s", tostring(msg)) end
  end
  if opt_sd ~= nil then
    -- initial_lr: what a schedule records in each param group (PyTorch's name). An
    -- optimizer's load_state_dict may not know it; mo.load restores it itself.
    local initial_lrs = {}
    if type(opt_sd.param_groups) == "table" and type(opt.defaults) == "table" and opt.defaults.initial_lr == nil then
      for gi, g in ipairs(opt_sd.param_groups) do
        if type(g) == "table" and type(g.initial_lr) == "number" then
          initial_lrs[gi] = g.initial_lr
          g.initial_lr = nil
        end
      end
    end
    local ok, msg = pcall(opt.load_state_dict, opt, opt_sd)
    if ok then
      for gi, v in pairs(initial_lrs) do opt.param_groups[gi].initial_lr = v end
    end
    if not ok then
      if sched_before ~= nil then
        sched:load_state_dict(sched_before)
        if lrs_before then
          for i, g in ipairs(opt.param_groups) do g.lr = lrs_before[i] end
        end
      end
      bad("optimizer: %s", tostring(msg))
    end
  end
  for _, pt in ipairs(model_copies) do pt[1]:copy_(pt[2]) end
  if grad_copies ~= nil then
    for _, pt in ipairs(grad_copies) do
      local g = pt[1].grad
      if g == nil then
        g = pt[2]:clone()
        pt[1].grad = g
      else
        g:copy_(pt[2])
      end
    end
  end
  if rng_state ~= nil then core.rng_set_state(rng_state) end
  if fit_state ~= nil then
    local st = what.fit
    for k in pairs(st) do st[k] = nil end
    for k, v in pairs(fit_state) do st[k] = v end
  end
  return extra
end

-- ===========================================================================
-- plain tensor files

local function save_tensors(path, tbl, metadata)
  local fname = "mo.save_tensors"
  check_path(fname, path)
  if type(tbl) ~= "table" or is_tensor(tbl) then
    fail("%s: expected a table {name = tensor}, got %s", fname, show(tbl))
  end
  local names = {}
  for k, v in pairs(tbl) do
    if type(k) ~= "string" then fail("%s: names must be strings, got the key %s", fname, show(k)) end
    if not is_tensor(v) then fail("%s: '%s' must be a tensor, got %s", fname, k, show(v)) end
    names[#names + 1] = k
  end
  table.sort(names)
  local list = {}
  for i, k in ipairs(names) do list[i] = tbl[k] end
  if metadata ~= nil and type(metadata) ~= "table" then
    fail("%s: metadata must be a table {string = string}, got %s", fname, show(metadata))
  end
  core.ckpt_write(path, names, list, metadata, fname)
end

local function load_tensors(path)
  local fname = "mo.load_tensors"
  check_path(fname, path)
  local tensors, meta = core.ckpt_read(path, fname)
  return tensors, meta
end

M.save = apierror.api(save)
M.load = apierror.api(load)
M.save_tensors = apierror.api(save_tensors)
M.load_tensors = apierror.api(load_tensors)

return M
