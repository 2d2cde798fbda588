--- moonopt.apierror: errors raised deep inside a pure-Lua module, reported at the user's call.
--
-- Internal code calls `fail(fmt, ...)`, which raises a tagged table; a public entry point
-- wrapped with `api(f)` re-raises its message at level 2, so the position in the message
-- is the line that called the public function. Any other error (one from user code, such
-- as a schedule's lr_lambda) passes through untouched. `show(v)` writes a value the way
-- error messages quote it. Used by moonopt.sched and moonopt.plot.
local M = {}

local fmt, huge = string.format, math.huge
local Err = {}

function M.fail(...)
  error(setmetatable({msg = fmt(...)}, Err), 0)
end

function M.api(f)
  return function(...)
    local ok, r = pcall(f, ...)
    if ok then return r end
    if getmetatable(r) == Err then error(r.msg, 2) end
    error(r, 0)
  end
end

function M.show(v)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if v == huge then return "inf" elseif v == -huge then return "-inf" end
    if math.type(v) == "integer" then return tostring(v) end
    return fmt("%.14g", v)
  elseif t == "string" then
    return fmt("%q", v)
  elseif t == "nil" or t == "boolean" then
    return tostring(v)
  end
  return "a " .. t
end

return M
