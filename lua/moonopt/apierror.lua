--- moonopt.apierror: the one error mechanism of the Lua library.
--
-- Errors found deep inside a module are reported at the user's call:
--   * internal code calls `fail(fmt, ...)`, which raises a tagged table;
--   * a public entry point is wrapped with `api(f)`: a tagged error, a message without a
--     position (raised by the C module) or one positioned in a library file (lua/moonopt/)
--     is raised again at level 2, without that position, so the
--     position in the message is the line that called the public function. Any other
--     error (raised by user code, such as a schedule's lr_lambda or fit's on_step, which
--     carries its own position) passes through untouched.
-- `show(v)` writes a value the way every message quotes it, `to_int(v)` is the one
-- integer test, `check_int` and `check_options` the checks built on them; `show_key`,
-- `shape_str` and `same_shape` write keys and shapes the one way messages do.
-- Used by moonopt.sched, moonopt.plot, moonopt.data, moonopt.train, moonopt.progress,
-- moonopt.checkpoint, moonopt.nn and moonopt.optim.
local M = {}

local fmt, huge, floor = string.format, math.huge, math.floor
local Err = {}

--- Raises the message fmt(...) to be reported at the caller of the public function.
function M.fail(...)
  error(setmetatable({msg = fmt(...)}, Err), 0)
end

-- A message positioned in a library file was raised inside the library (by error() or by
-- a C function called from there). Library files: those under the directory this file
-- was loaded from (unless Lua shortened its name to "...tail"), and those of the
-- functions api() wrapped.
local library = {}
local root = debug.getinfo(1, "S").short_src:match("^(.*)apierror%.lua$")
if root and (root == "" or root:sub(1, 3) == "...") then root = nil end

local function in_library(src)
  return library[src] or (root ~= nil and src:sub(1, #root) == root)
end

-- pcall's results -> the function's results, or the error raised at the wrapper's caller.
-- Called in tail position by the wrapper, so level 2 here is the wrapper's caller.
local function pass(ok, ...)
  if ok then return ... end
  local r = ...
  if getmetatable(r) == Err then error(r.msg, 2) end
  if type(r) ~= "string" then error(r, 0) end
  local src, rest = r:match("^([^\n]-):%d+: (.*)$")
  if src == nil then error(r, 2) end                 -- no position: from C
  if in_library(src) then error(rest, 2) end         -- positioned inside the library
  error(r, 0)                                        -- user code: keep its position
end

-- wrapper -> the function it wraps (weak keys: a wrapper may be collected)
local unwrapped = setmetatable({}, {__mode = "k"})

--- f wrapped as a public entry point (see the top of this file); all results pass through.
function M.api(f)
  library[debug.getinfo(f, "S").short_src] = true
  local w = function(...)
    return pass(pcall(f, ...))
  end
  unwrapped[w] = f
  return w
end

--- The function api() wrapped, for another module's public function that calls it: its
-- errors are then reported at that function's caller too.
function M.unwrap(w)
  return unwrapped[w] or w
end

--- How messages quote a value: 3, 1.5, nan, inf, string "3", nil, true, a table,
-- a moonopt.Tensor (userdata are named by their metatable's __name).
function M.show(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if v == huge then return "inf" elseif v == -huge then return "-inf" end
    if math.type(v) == "integer" then return tostring(v) end
    return fmt("%.14g", v)
  elseif t == "string" then
    return "string " .. fmt("%q", v)
  elseif t == "nil" or t == "boolean" then
    return tostring(v)
  elseif t == "userdata" then
    local mt = getmetatable(v)
    if type(mt) == "table" and type(mt.__name) == "string" then return "a " .. mt.__name end
  end
  return "a " .. t
end

--- The integer value of v (an integer, or a float with an integral value below 2^53 in
-- magnitude), else nil. Strings are not numbers here.
function M.to_int(v)
  if math.type(v) == "integer" then return v end
  if type(v) == "number" and v == floor(v) and v > -2^53 and v < 2^53 then return math.tointeger(v) end
  return nil
end

--- "a non-negative integer" (lo 0), "a positive integer" (lo 1), "an integer >= lo",
-- "an integer" (lo nil).
function M.int_range(lo)
  if lo == nil then return "an integer" end
  if lo == 0 then return "a non-negative integer" end
  if lo == 1 then return "a positive integer" end
  return "an integer >= " .. lo
end

--- v as an integer >= lo (lo optional), or fail("<fname>: <what> must be <range>, got <v>").
function M.check_int(fname, what, v, lo)
  local i = M.to_int(v)
  if i == nil or (lo and i < lo) then
    M.fail("%s: %s must be %s, got %s", fname, what, M.int_range(lo), M.show(v))
  end
  return i
end

--- opts (nil -> {}) when it is a table whose keys are all in the set `known`, else fail.
function M.check_options(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then M.fail("%s: options must be a table, got %s", fname, M.show(opts)) end
  for k in pairs(opts) do
    if not known[k] then M.fail("%s: unknown option %s", fname, M.show_key(k)) end
  end
  return opts
end

--- How messages name a table key: 'lr' for a string key, else as show() quotes it (3, a table).
function M.show_key(k)
  if type(k) == "string" then return "'" .. k .. "'" end
  return M.show(k)
end

-- The size list of a tensor, or s itself when it is already one.
local function sizes(s)
  if type(s) == "table" then return s end
  return s:shape()
end

--- A shape as messages write it, "{2, 3}" ("{}" for 0-d); s is a tensor or a size list.
function M.shape_str(s)
  return "{" .. table.concat(sizes(s), ", ") .. "}"
end

--- Whether a and b (tensors or size lists, in any mix) have the same shape.
function M.same_shape(a, b)
  a, b = sizes(a), sizes(b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

--- Fails unless select("#", ...) <= max: a call with extra arguments is a mistake
-- (`mo.data.normalize(x, stats, true)`), not something to ignore.
function M.check_nargs(fname, max, names, ...)
  local n = select("#", ...)
  if n > max then
    M.fail("%s: expected at most %d arguments (%s), got %d", fname, max, names, n)
  end
end

return M
