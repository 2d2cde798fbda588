-- tests/lua/run.lua - runs every tests/lua/test_*.lua with LuaUnit.
--
-- Each test file returns a table of test classes, e.g.
--   return { TestTensorCreate = TestTensorCreate, ... }
-- (a class is a table whose test_* functions are the tests). Arguments are
-- passed to LuaUnit (tests/run.sh uses -o tap). Extra: a pattern after
-- --files limits which files run.
local lu = require "luaunit"

local dir = "tests/lua/"
local files = {}
local p = io.popen('ls ' .. dir .. 'test_*.lua 2>/dev/null')
for line in p:lines() do files[#files + 1] = line end
p:close()
table.sort(files)

local args, only = {}, nil
local i = 1
while i <= #arg do
  if arg[i] == "--files" then only = arg[i + 1]; i = i + 2
  else args[#args + 1] = arg[i]; i = i + 1 end
end

for _, f in ipairs(files) do
  if not only or f:find(only) then
    local classes = dofile(f)
    assert(type(classes) == "table", f .. " must return a table of test classes")
    for name, class in pairs(classes) do
      assert(rawget(_G, name) == nil, "test class " .. name .. " defined twice (" .. f .. ")")
      rawset(_G, name, class)
    end
  end
end

-- LuaUnit reads the global `arg` when run() gets no arguments: leave only its own options there.
-- luacheck: push ignore 122
for k = #arg, 1, -1 do arg[k] = nil end
table.move(args, 1, #args, 1, arg)
-- luacheck: pop
os.exit(lu.LuaUnit.run(table.unpack(args)))
