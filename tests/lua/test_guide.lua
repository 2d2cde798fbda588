-- tests/lua/test_guide.lua - every ```lua block of docs/guide.md is a complete program that
-- runs as written: each block is written to a fresh temporary directory and run there by a
-- separate Lua interpreter (the same one that runs this suite), with LUA_PATH / LUA_CPATH
-- pointing at this work tree. A block that raises, or does not write a file it saves, fails.
-- The Data block reads the real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by
-- `make deps`); the others use small synthetic data, so the whole file takes a few seconds.
-- Run from the repository root (tests/run.sh does).
local lu = require "luaunit"

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The ```lua blocks of a Markdown text, in order, with the line each starts on.
local function lua_blocks(doc)
  local out = {}
  local line = 1
  local pos = 1
  while true do
    local s, e, code = doc:find("```lua\n(.-)```", pos)
    if not s then break end
    local _, nl = doc:sub(pos, s):gsub("\n", "")
    line = line + nl
    out[#out + 1] = {code = code, line = line + 1}
    local _, inner = doc:sub(s + 1, e):gsub("\n", "")
    line = line + inner
    pos = e + 1
  end
  return out
end

-- The interpreter running this suite: the lowest index of the global arg table.
local function interpreter()
  local i, exe = -1, nil
  while arg and arg[i] do
    exe = arg[i]
    i = i - 1
  end
  return exe or "lua5.4"
end

local function cwd()
  local p = assert(io.popen("pwd"))
  local dir = p:read("l")
  p:close()
  return dir
end

-- A search path with its relative entries made absolute (the blocks run elsewhere).
local function absolute_path(spec, root, default)
  spec = spec or default
  local parts = {}
  for entry in (spec .. ";"):gmatch("([^;]*);") do
    if entry ~= "" and entry:sub(1, 1) ~= "/" then entry = root .. "/" .. entry end
    parts[#parts + 1] = entry
  end
  return table.concat(parts, ";")
end

local function temp_dir()
  local name = os.tmpname()
  os.remove(name)
  assert(os.execute("mkdir -p " .. shell_quote(name)), "cannot create " .. name)
  return name
end

-- Runs `code` as main.lua in a new temporary directory. Returns ok, output, dir.
local function run_block(code)
  local root = cwd()
  local dir = temp_dir()
  local f = assert(io.open(dir .. "/main.lua", "w"))
  f:write(code)
  f:close()
  local env = ("LUA_PATH=%s LUA_CPATH=%s OPENBLAS_NUM_THREADS=1"):format(
    shell_quote(absolute_path(os.getenv("LUA_PATH"), root, "lua/?.lua;lua/?/init.lua;;")),
    shell_quote(absolute_path(os.getenv("LUA_CPATH"), root, "build/?.so;;")))
  local cmd = ("cd %s && %s %s main.lua 2>&1"):format(shell_quote(dir), env,
                                                      shell_quote(interpreter()))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return ok == true, out, dir
end

local TestGuide = {}

function TestGuide:setUp()
  self.blocks = lua_blocks(read("docs/guide.md"))
end

function TestGuide.test_block_finder()
  local blocks = lua_blocks("x\n```lua\nprint(1)\n```\ny\n```sh\nls\n```\n```lua\na\nb\n```\n")
  lu.assertEquals(#blocks, 2)
  lu.assertEquals(blocks[1], {code = "print(1)\n", line = 3})
  lu.assertEquals(blocks[2], {code = "a\nb\n", line = 10})
  lu.assertEquals(absolute_path("a/?.lua;/b/?.lua;;", "/r"), "/r/a/?.lua;/b/?.lua;;")
end

function TestGuide:test_guide_has_the_blocks()
  -- A first model, Tensors, two in Optimizers, Schedules, the loop, Data, Figures,
  -- Checkpoints: fewer means the finder (or the guide) broke
  lu.assertTrue(#self.blocks >= 9, "docs/guide.md has " .. #self.blocks .. " lua blocks")
end

function TestGuide:test_every_block_is_a_complete_program()
  for _, b in ipairs(self.blocks) do
    lu.assertStrContains(b.code, 'require "moonopt"',
                         "docs/guide.md:" .. b.line .. ": a block must require moonopt itself")
  end
end

function TestGuide:test_every_block_runs()
  for _, b in ipairs(self.blocks) do
    local ok, out, dir = run_block(b.code)
    -- every file the block saves must be there
    local missing = {}
    for file in b.code:gmatch('save%("([^"]+)"') do
      local f = io.open(dir .. "/" .. file, "rb")
      if f then f:close() else missing[#missing + 1] = file end
    end
    os.execute("rm -rf " .. shell_quote(dir))
    lu.assertTrue(ok, ("docs/guide.md:%d: the block failed:\n%s"):format(b.line, out))
    lu.assertEquals(missing, {}, ("docs/guide.md:%d: the block did not write these files"):format(b.line))
  end
end

function TestGuide.test_a_failing_block_is_seen()
  -- the runner must report an error, or the test above proves nothing
  local ok, out, dir = run_block('local mo = require "moonopt"\nmo.zeros(2):get(3)\n')
  os.execute("rm -rf " .. shell_quote(dir))
  lu.assertFalse(ok)
  lu.assertStrContains(out, "out of range")
end

return {TestGuide = TestGuide}
