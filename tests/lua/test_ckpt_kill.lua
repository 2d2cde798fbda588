-- tests/lua/test_ckpt_kill.lua - runs tests/ckpt_kill.sh: a process saving checkpoints in
-- a loop is killed with SIGKILL 20 times at pseudo-random moments; after each kill the
-- file must load whole (the old save or the new one). About 2 s.
local lu = require "luaunit"

local TestCkptKill = {}

function TestCkptKill.test_kill_9_during_saves_never_breaks_the_file()
  -- the interpreter running this suite (arg[-1]), so the child processes match it
  local lua = (arg and arg[-1]) or "lua5.4"
  if not lua:find("^[%w_%./%-]+$") then lua = "lua5.4" end
  local p = assert(io.popen("LUA=" .. lua .. " sh tests/ckpt_kill.sh 20 7 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  lu.assertTrue(ok, out)
  lu.assertStrContains(out, "ckpt_kill: ok: 20 kills")
end

return {TestCkptKill = TestCkptKill}
