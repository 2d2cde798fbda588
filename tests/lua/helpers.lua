-- tests/lua/helpers.lua - what several LuaUnit files share (not a test file: run.lua runs
-- test_*.lua only). `require "helpers"` finds it through tests/lua/?.lua on LUA_PATH.
local lu = require "luaunit"

local M = {}

--- Calls f(...), which must raise an error whose message contains `text` (plain, not a
-- pattern); returns the message.
function M.fails(text, f, ...)
  local ok, msg = pcall(f, ...)
  lu.assertFalse(ok, "expected an error containing: " .. text)
  msg = tostring(msg)
  if not msg:find(text, 1, true) then
    lu.fail(string.format("error message %q does not contain %q", msg, text))
  end
  return msg
end

--- The whole contents of the file at path, which is then removed.
function M.file_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  os.remove(path)
  return s
end

--- The bytes mo.save_tensors writes for a name -> tensor table: the raw little-endian
-- values, so -0 versus 0 or two NaN payloads count as differences.
function M.tensor_bytes(tensors)
  local mo = require "moonopt"
  local path = os.tmpname()
  mo.save_tensors(path, tensors)
  return M.file_bytes(path)
end

-- The names of the tensors whose bytes differ between two name -> tensor tables.
local function differing(a, b)
  local out = {}
  for k, v in pairs(a) do
    if M.tensor_bytes{t = v} ~= M.tensor_bytes{t = b[k]} then out[#out + 1] = k end
  end
  table.sort(out)
  return table.concat(out, ", ")
end

--- Runs build() with moonopt's pool at 1, 2 and 3 threads (restoring the count after
-- each); every run's name -> tensor table must have the first run's bytes, else the test
-- fails naming the tensors that differ.
function M.same_bits_at_every_count(label, build)
  local mo = require "moonopt"
  local saved = mo.get_num_threads()
  local first, first_t
  for _, n in ipairs{1, 2, 3} do
    mo.set_num_threads(n)
    local ok, res = pcall(build)
    mo.set_num_threads(saved)
    if not ok then error(res, 0) end
    local b = M.tensor_bytes(res)
    if first == nil then
      first, first_t = b, res
    elseif b ~= first then
      lu.fail(("%s: at %d threads these differ from 1 thread: %s"):format(label, n,
              differing(res, first_t)))
    end
  end
end

--- Row-major flat list + shape -> nested Lua tables (what mo.tensor takes).
function M.nest(flat, shape)
  local function build(dim, offset)
    local n, t = shape[dim], {}
    if dim == #shape then
      for i = 1, n do t[i] = flat[offset + i] end
      return t
    end
    local stride = 1
    for d = dim + 1, #shape do stride = stride * shape[d] end
    for i = 1, n do t[i] = build(dim + 1, offset + (i - 1) * stride) end
    return t
  end
  return build(1, 0)
end

--- Nested tables (t:totable()) -> row-major flat list; a plain value -> {value}.
function M.flatten(t, out)
  out = out or {}
  if type(t) ~= "table" then out[#out + 1] = t; return out end
  for _, v in ipairs(t) do
    if type(v) == "table" then M.flatten(v, out) else out[#out + 1] = v end
  end
  return out
end

--- A copy of plain Lua data, tables copied all the way down.
function M.deepcopy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = M.deepcopy(x) end
  return c
end

--- The first argument of mo.optim.X for a golden optimizer case (tests/golden/make_optim_golden.py):
-- the tensors, or the case's groups with their 1-based param indices replaced by the tensors.
function M.param_arg(case, params)
  if not case.groups then return params end
  local groups = {}
  for gi, g in ipairs(case.groups) do
    local group = M.deepcopy(g)
    group.params = {}
    for j, idx in ipairs(g.params) do group.params[j] = params[idx] end
    groups[gi] = group
  end
  return groups
end

return M
