-- tests/lua/run.lua - runs every tests/lua/test_*.lua with LuaUnit.
--
-- Each test file returns a table of test classes, e.g.
--   return { TestTensorCreate = TestTensorCreate, ... }
-- (a class is a table whose test_* functions are the tests). Arguments are
-- passed to LuaUnit (tests/run.sh uses -o tap). Extra: a pattern after
-- --files limits which files run; --file PATH runs that one file.
--
-- The files in ISOLATED make the collector run a whole cycle at every allocation (hostile
-- finalizers). A cycle costs time in proportion to the heap, and the rest of the suite holds
-- tens of MB of golden vectors, so in a whole run each of them runs afterwards in an
-- interpreter of its own (a small heap: seconds instead of most of a minute); its output
-- joins this one's and its failures this run's exit status.
local lu = require "luaunit"

local ISOLATED = {["tests/lua/test_gc_hostile.lua"] = true, ["tests/lua/test_optim_contract.lua"] = true}

local dir = "tests/lua/"
local files = {}
local p = io.popen('ls ' .. dir .. 'test_*.lua 2>/dev/null')
for line in p:lines() do files[#files + 1] = line end
p:close()
table.sort(files)

local args, only, exact = {}, nil, nil
local i = 1
while i <= #arg do
  if arg[i] == "--files" then only = arg[i + 1]; i = i + 2
  elseif arg[i] == "--file" then exact = arg[i + 1]; i = i + 2
  else args[#args + 1] = arg[i]; i = i + 1 end
end

-- In a whole run (no --files, no --file) the isolated files wait for their own interpreter.
local function selected(f)
  if exact then return f == exact end
  if only then return f:find(only) ~= nil end
  return not ISOLATED[f]
end

for _, f in ipairs(files) do
  if selected(f) then
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
local failed = lu.LuaUnit.run(table.unpack(args))
if not only and not exact then
  local interpreter = arg[-1] or "lua5.4"
  local quoted = {}
  for k, a in ipairs(args) do quoted[k] = "'" .. a:gsub("'", "'\\''") .. "'" end
  for _, f in ipairs(files) do
    if ISOLATED[f] then
      local child = assert(io.popen(("%s tests/lua/run.lua --file %s %s 2>&1"):format(
        interpreter, f, table.concat(quoted, " "))))
      io.write(child:read("a"))
      if not child:close() then failed = failed + 1 end
    end
  end
end
os.exit(failed)
