-- tests/lua/test_files_hostile.lua - file paths that are not what a reader or writer
-- expects (core/file.c):
--   * every reader (mo.load, mo.load_tensors, mo.data.read_idx, mo.data.fashion_mnist)
--     refuses a FIFO with no writer, a symbolic link to one, a directory and /dev/zero
--     with an error naming the function and the path, at once. Each check runs in a child
--     process under `timeout 5`, so a reader that blocks in open(2) fails the test
--     instead of hanging the suite;
--   * every writer (mo.save, mo.save_tensors, mo.data.write_idx, figures' p:save)
--     creates missing parent directories, and refuses a path through a regular file
--     with an error naming that component.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- the interpreter running this suite (arg[-1]), so the child processes match it
local LUA = (arg and arg[-1]) or "lua5.4"
if not LUA:find("^[%w_%./%-]+$") then LUA = "lua5.4" end

local dir

local function setup()
  dir = os.tmpname()
  os.remove(dir)
  sh("mkdir " .. quote(dir))
end

local function teardown()
  if dir and dir:find("^/tmp/") then sh("rm -rf " .. quote(dir)) end
end

-- Runs `code` (with `mo` and `P` = the path bound) in a child process under `timeout 5`;
-- returns the child's output and whether it exited normally.
local function in_child(code, path)
  local script = dir .. "/child.lua"
  local f = assert(io.open(script, "w"))
  f:write('local mo = require "moonopt"\nlocal P = ', string.format("%q", path), "\n", code, "\n")
  f:close()
  local p = assert(io.popen("timeout 5 " .. LUA .. " " .. quote(script) .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code_ = p:close()
  return out, ok and code_ == 0
end

-- The error every reader raises for `path`, from a child process.
local READERS = [[
local function try(name, f, ...)
  local ok, err = pcall(f, ...)
  print(name .. " -> " .. (ok and "no error" or tostring(err)))
end
try("load", mo.load, P, {})
try("load_tensors", mo.load_tensors, P)
try("read_idx", mo.data.read_idx, P)
]]

local function check_refused(path, kind)
  local out, ok = in_child(READERS, path)
  lu.assertTrue(ok, "the child blocked or crashed (timeout 5): " .. out)
  lu.assertStrContains(out, "load -> mo.load: " .. path .. ": not a regular file but " .. kind)
  lu.assertStrContains(out, "load_tensors -> mo.load_tensors: " .. path .. ": not a regular file but " .. kind)
  lu.assertStrContains(out, "read_idx -> read_idx: " .. path .. ": not a regular file but " .. kind)
end

local TestReadersRefuseSpecialFiles = {setUp = setup, tearDown = teardown}

function TestReadersRefuseSpecialFiles.test_fifo_without_a_writer()
  sh("mkfifo " .. quote(dir .. "/fifo"))
  check_refused(dir .. "/fifo", "a FIFO")
end

function TestReadersRefuseSpecialFiles.test_symlink_to_a_fifo()
  sh("mkfifo " .. quote(dir .. "/fifo"))
  sh("ln -s " .. quote(dir .. "/fifo") .. " " .. quote(dir .. "/link"))
  check_refused(dir .. "/link", "a FIFO")
end

function TestReadersRefuseSpecialFiles.test_directory()
  check_refused(dir, "a directory")
end

function TestReadersRefuseSpecialFiles.test_dev_zero()
  if not core.file_kind("/dev/zero") then return end
  check_refused("/dev/zero", "a character device")
end

function TestReadersRefuseSpecialFiles.test_fashion_mnist_dir_holding_fifos()
  -- finding the files probes the directory without opening anything
  for _, name in ipairs{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz"} do
    sh("mkfifo " .. quote(dir .. "/" .. name))
  end
  local out, ok = in_child([[print(select(2, pcall(mo.data.fashion_mnist, {dir = P})))]], dir)
  lu.assertTrue(ok, "the child blocked or crashed (timeout 5): " .. out)
  lu.assertStrContains(out, "not a regular file but a FIFO")
end

function TestReadersRefuseSpecialFiles.test_file_kind()
  sh("mkfifo " .. quote(dir .. "/fifo"))
  lu.assertEquals(core.file_kind(dir), "directory")
  lu.assertEquals(core.file_kind(dir .. "/fifo"), "fifo")
  lu.assertNil(core.file_kind(dir .. "/missing"))
  mo.save_tensors(dir .. "/t.st", {w = mo.zeros(1)})
  lu.assertEquals(core.file_kind(dir .. "/t.st"), "file")
end

local TestWritersCreateDirectories = {setUp = setup, tearDown = teardown}

function TestWritersCreateDirectories.test_every_writer_creates_missing_parents()
  local w = mo.tensor{1, 2, 3}
  mo.save(dir .. "/a/b/run.ckpt", {extra = {w = w}})
  lu.assertEquals(mo.load(dir .. "/a/b/run.ckpt", {}).w:totable(), {1, 2, 3})
  mo.save_tensors(dir .. "/c/d/e/w.safetensors", {w = w})
  lu.assertEquals(mo.load_tensors(dir .. "/c/d/e/w.safetensors").w:totable(), {1, 2, 3})
  mo.data.write_idx(dir .. "/f/w.idx", w)
  lu.assertEquals(mo.data.read_idx(dir .. "/f/w.idx"):totable(), {1, 2, 3})
  local fig = mo.plot.line{series = {{y = {1, 2, 3}}}}
  lu.assertTrue(rawequal(fig:save(dir .. "/g/h/fig.svg"), fig))
  local f = assert(io.open(dir .. "/g/h/fig.svg", "rb"))
  lu.assertEquals(f:read("a"), fig:svg())
  f:close()
  -- no temporary file left anywhere
  local p = assert(io.popen("find " .. quote(dir) .. " -name '*.tmp*'"))
  lu.assertEquals(p:read("a"), "")
  p:close()
end

function TestWritersCreateDirectories.test_a_component_that_is_a_file_is_named()
  local plain = dir .. "/plain"
  local f = assert(io.open(plain, "w"))
  f:write("x")
  f:close()
  local want = "cannot create the directory " .. plain .. ": it exists and is not a directory"
  local w = mo.tensor{1}
  local function err_of(fn, ...)
    local ok, e = pcall(fn, ...)
    lu.assertFalse(ok)
    return tostring(e)
  end
  local e = err_of(mo.save, plain .. "/x/run.ckpt", {extra = {w = w}})
  lu.assertStrContains(e, "mo.save: " .. plain .. "/x/run.ckpt: " .. want)
  e = err_of(mo.save_tensors, plain .. "/w.st", {w = w})
  lu.assertStrContains(e, "mo.save_tensors: " .. plain .. "/w.st: " .. want)
  e = err_of(mo.data.write_idx, plain .. "/w.idx", w)
  lu.assertStrContains(e, want)
  local fig = mo.plot.line{series = {{y = {1, 2}}}}
  e = err_of(function() fig:save(plain .. "/fig.svg") end)
  lu.assertStrContains(e, 'mo.plot.line:save: cannot write "' .. plain .. '/fig.svg": ' .. want)
  -- the error points at this file (the caller), not at the library
  lu.assertStrContains(e, "test_files_hostile.lua:")
  -- nothing was changed
  f = assert(io.open(plain, "rb"))
  lu.assertEquals(f:read("a"), "x")
  f:close()
end

return {TestReadersRefuseSpecialFiles = TestReadersRefuseSpecialFiles,
        TestWritersCreateDirectories = TestWritersCreateDirectories}
