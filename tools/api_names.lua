-- tools/api_names.lua - the names of moonopt's public Lua API, found by introspection, as
-- docs/api.md spells them:
--
--   mo.zeros  mo._VERSION          functions and fields of require "moonopt"
--   core.nn_linear_forward         the low-level layer: what require "moonopt.core" has
--                                  beyond the mo.* names
--   mo.nn.Linear  mo.data.batches  the contents of each public submodule
--   dist.all_reduce_               the contents of a separately required module (SEPARATE_MODULES)
--   mo.optim.Optimizer.class       the class builders of mo.optim.Optimizer (STATICS below)
--   t:add                          Tensor methods
--   m:forward                      methods every nn module has (nn.Module)
--   Sequential:add                 methods only some nn classes have
--   opt:step  sched:step  loader:epoch  p:svg  bar:update
--                                  methods of optimizers, schedules, data loaders, figures
--                                  and progress bars (found on live instances)
--
-- Names starting with "_" are private (except mo._VERSION), and metamethods are left out.
-- tests/lua/test_docs.lua fails when one of these names has no entry in docs/api.md.
--
-- usage: lua5.4 tools/api_names.lua            prints the names, one a line, sorted
--        local api = dofile("tools/api_names.lua"); api.names() -> sorted list of names
-- (with LUA_PATH / LUA_CPATH pointing at the work tree, as tests/run.sh sets them)
local M = {}

--- The submodules under lua/moonopt/ that are public API (each gets "mo.<name>.<key>"
-- names). Every top-level module must be listed here or in INTERNAL_MODULES, so a new one
-- forces a decision (test_docs.lua checks it).
M.PUBLIC_MODULES = {"autograd", "nn", "optim", "sched", "train", "data", "plot", "progress"}

--- Modules that are implementation details (not reachable as mo.<name>, not documented API).
M.INTERNAL_MODULES = {"apierror", "checkpoint", "json", "lr_find"}

--- Public modules required on their own, not reachable as mo.<name> (each gets
-- "<name>.<key>" names, e.g. dist.all_reduce_, when it loads: moonopt.dist needs its
-- MPI-linked C module, so without MPI its names are simply absent).
M.SEPARATE_MODULES = {"dist"}

--- Functions of mo.optim.Optimizer that are called on the class, not on an optimizer.
M.STATICS = {class = true, run_group = true, copy = true, show = true}

local function public_key(k)
  return type(k) == "string" and (k:sub(1, 1) ~= "_" or k == "_VERSION")
end

-- Every function reachable through obj's __index chain (tables only), by name.
local function methods_of(obj)
  local found, depth = {}, 0
  local mt = getmetatable(obj)
  local idx = mt and mt.__index
  while type(idx) == "table" and depth < 16 do
    for k, v in pairs(idx) do
      if type(v) == "function" and public_key(k) and found[k] == nil then found[k] = v end
    end
    local up = getmetatable(idx)
    idx = up and up.__index
    depth = depth + 1
  end
  return found
end

-- The top-level module names found in lua/moonopt/ (X.lua and X/init.lua), or nil when
-- the directory cannot be listed.
function M.module_files(root)
  root = root or "lua/moonopt"
  local p = io.popen('ls "' .. root .. '" 2>/dev/null')
  if not p then return nil end
  local names = {}
  for entry in p:lines() do
    local base = entry:match("^([%w_]+)%.lua$")
    if base and base ~= "init" then
      names[#names + 1] = base
    elseif entry:match("^[%w_]+$") then
      local f = io.open(root .. "/" .. entry .. "/init.lua", "r")
      if f then f:close(); names[#names + 1] = entry end
    end
  end
  p:close()
  table.sort(names)
  return names
end

--- The sorted list of public names (see the top of this file).
function M.names()
  local mo = require "moonopt"
  local out, seen = {}, {}
  local function add(name)
    if not seen[name] then seen[name] = true; out[#out + 1] = name end
  end

  -- submodules: the public ones that can be loaded (a missing one is simply absent)
  local modules = {}
  for _, name in ipairs(M.PUBLIC_MODULES) do
    local ok, mod = pcall(function() return mo[name] end)
    if ok and type(mod) == "table" then modules[name] = mod end
  end
  local is_module = {}
  for name in pairs(package.loaded) do
    local short = name:match("^moonopt%.([%w_]+)$")
    if short then is_module[short] = true end
  end

  -- separate modules: their own names (dist.init, ...)
  for _, name in ipairs(M.SEPARATE_MODULES) do
    local ok, mod = pcall(require, "moonopt." .. name)
    if ok and type(mod) == "table" then
      for k in pairs(mod) do
        if public_key(k) then add(name .. "." .. k) end
      end
    end
  end

  -- mo.*: functions and fields of the module table (the C module's and init.lua's)
  for k, v in pairs(mo) do
    if public_key(k) and not is_module[k] and k ~= "Tensor" and type(v) ~= "table" then
      add("mo." .. k)
    end
  end
  add("mo.Tensor")

  -- the low-level layer: the C module's names that mo does not export
  for k in pairs(require "moonopt.core") do
    if public_key(k) and rawget(mo, k) == nil then add("core." .. k) end
  end

  -- Tensor methods
  for k in pairs(mo.Tensor) do
    if public_key(k) and k:sub(1, 2) ~= "__" then add("t:" .. k) end
  end

  -- submodule contents
  for name, mod in pairs(modules) do
    for k in pairs(mod) do
      if public_key(k) then add("mo." .. name .. "." .. k) end
    end
  end

  local nn, optim = modules.nn, modules.optim
  if nn then
    -- methods of every module, then those only some classes add
    local base = methods_of(nn.Linear(2, 2))
    for k in pairs(base) do
      if nn.Module[k] ~= nil then add("m:" .. k) end
    end
    local samples = {
      Linear = function() return nn.Linear(2, 2) end,
      Sequential = function() return nn.Sequential(nn.Linear(2, 2)) end,
      LayerNorm = function() return nn.LayerNorm(2) end,
    }
    for cname, cls in pairs(nn) do
      if type(cls) == "table" and cname ~= "Module" and getmetatable(cls)
          and getmetatable(cls).__call then
        local make = samples[cname] or function() return cls() end
        local ok, inst = pcall(make)
        if ok then
          for k in pairs(methods_of(inst)) do
            if nn.Module[k] == nil then add(cname .. ":" .. k) end
          end
        end
      end
    end
  end

  local opt
  if optim and nn then
    local params = nn.Linear(2, 2):parameters()
    opt = optim.AdamW(params, {lr = 1e-3})
    for k in pairs(methods_of(opt)) do
      if M.STATICS[k] then add("mo.optim.Optimizer." .. k) else add("opt:" .. k) end
    end
    for k, v in pairs(optim.Optimizer) do
      if type(v) == "function" and public_key(k) and M.STATICS[k] then
        add("mo.optim.Optimizer." .. k)
      end
    end
  end

  local sched = modules.sched
  if sched then
    local fake = {param_groups = {{lr = 0.1}}}
    for k in pairs(methods_of(sched.Step(fake, {step_size = 2}))) do add("sched:" .. k) end
    for k in pairs(methods_of(sched.ReduceLROnPlateau({param_groups = {{lr = 0.1}}}, {}))) do
      add("sched:" .. k)
    end
  end

  local data = modules.data
  if data then
    for k in pairs(methods_of(data.loader({x = mo.zeros(2, 2)}))) do add("loader:" .. k) end
  end

  local plot = modules.plot
  if plot then
    for k in pairs(methods_of(plot.line{})) do add("p:" .. k) end
    for k in pairs(methods_of(plot.heatmap{values = {{1}}})) do add("p:" .. k) end
  end

  local progress = modules.progress
  if progress then
    for k in pairs(methods_of(progress.new{total = 1, live = false, write = function() end})) do
      add("bar:" .. k)
    end
  end

  table.sort(out)
  return out
end

if arg and arg[0] and arg[0]:match("api_names%.lua$") then
  for _, name in ipairs(M.names()) do print(name) end
end

return M
