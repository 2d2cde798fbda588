-- tests/lua/test_cheatsheet.lua - every moonopt cell of docs/cheatsheet.md runs: the first
-- code span of each table row's last column is evaluated as a Lua expression with `a` {2, 3},
-- `b` {3, 4}, `v` {3} and `x` {4, 2} (values 1, 2, 3, ...), and must not raise.
local lu = require "luaunit"
local mo = require "moonopt"

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

-- The moonopt expressions of the page, with their line numbers.
local function cells()
  local out, n = {}, 0
  for line in read("docs/cheatsheet.md"):gmatch("([^\n]*)\n?") do
    n = n + 1
    if line:match("^|") and not line:match("^|%-") then
      local last = line:match("|([^|]*)|%s*$")
      local expr = last and last:match("`([^`]+)`")
      if expr and expr ~= "moonopt" then out[#out + 1] = {line = n, expr = expr} end
    end
  end
  return out
end

local function env()
  return setmetatable({
    mo = mo,
    a = mo.arange(6):view(2, 3),
    b = mo.arange(12):view(3, 4),
    v = mo.arange(3),
    x = mo.arange(8):view(4, 2),
  }, {__index = _G})
end

local TestCheatsheet = {}

function TestCheatsheet.test_every_moonopt_cell_runs()
  local list, failures = cells(), {}
  lu.assertTrue(#list > 60, "cells found: " .. #list)
  for _, c in ipairs(list) do
    local f, err = load("return " .. c.expr, "=cheatsheet:" .. c.line, "t", env())
    local ok, e = false, err
    if f then ok, e = pcall(f) end
    if not ok then failures[#failures + 1] = string.format("line %d: %s: %s", c.line, c.expr, e) end
  end
  lu.assertEquals(#failures, 0, table.concat(failures, "\n"))
end

return {TestCheatsheet = TestCheatsheet}
