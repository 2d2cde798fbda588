-- tests/lua/run.lua - runs every tests/lua/test_*.lua with LuaUnit.
--
-- Each test file returns a table of test classes, e.g.
--   return { TestTensorCreate = TestTensorCreate, ... }
-- (a class is a table whose test_* functions are the tests). Arguments are
-- passed to LuaUnit (tests/run.sh uses -o tap). Extra: a pattern after
-- --files limits which files run; --file PATH runs that one file.
--
-- The files in ISOLATED run, in a whole run, each in an interpreter of its own, beside this
-- one; their output joins this one's and their failures this run's exit status:
-- - test_gc_hostile and test_optim_contract make the collector run a whole cycle at every
--   allocation (hostile finalizers). A cycle costs time in proportion to the heap, and the
--   rest of the suite holds tens of MB of golden vectors: alone, seconds instead of most of
--   a minute;
-- - test_dist spends its time in the MPI jobs it starts (about 15 s), not in this process.
local lu = require "luaunit"

local ISOLATED = {["tests/lua/test_gc_hostile.lua"] = true, ["tests/lua/test_optim_contract.lua"] = true,
                  ["tests/lua/test_dist.lua"] = true}

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
-- In a whole run the isolated files start first, each in an interpreter of its own writing
-- to a file, and run beside this one (they are single-threaded, as is this run); their output
-- is printed after this run's, in order.
local children = {}
if not only and not exact then
  local interpreter = arg[-1] or "lua5.4"
  local quoted = {}
  for k, a in ipairs(args) do quoted[k] = "'" .. a:gsub("'", "'\\''") .. "'" end
  for _, f in ipairs(files) do
    if ISOLATED[f] then
      local out = os.tmpname()
      local child = assert(io.popen(("%s tests/lua/run.lua --file %s %s > %s 2>&1"):format(
        interpreter, f, table.concat(quoted, " "), out)))
      children[#children + 1] = {child = child, out = out}
    end
  end
end
local failed = lu.LuaUnit.run(table.unpack(args))
for _, c in ipairs(children) do
  local ok = c.child:close()   -- waits for it
  local fh = assert(io.open(c.out, "r"))
  io.write(fh:read("a"))
  fh:close()
  os.remove(c.out)
  if not ok then failed = failed + 1 end
end
os.exit(failed)
