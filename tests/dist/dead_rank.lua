--- tests/dist/dead_rank.lua [exit|kill|error] - run under mpirun by tests/lua/test_dist.lua.
-- The last rank dies (os.exit(3) without finalize, SIGKILL, or a Lua error) while the
-- others wait in collectives; mpirun must end the whole job with a non-zero exit within
-- seconds (the test measures it). The survivors would loop for 60 s if nothing ended them.
local mo = require "moonopt"
local dist = require "moonopt.dist"

local r, n = dist.init()
local how = arg[1] or "exit"
local t = mo.ones(1000)
dist.all_reduce_(t)          -- every rank is up and connected
io.write(("rank %d: started\n"):format(r))
io.flush()
if r == n then
  if how == "kill" then
    local pid = io.open("/proc/self/stat"):read("n")
    os.execute("kill -9 " .. math.tointeger(pid))
  elseif how == "error" then
    error("rank " .. r .. " fails on purpose")
  end
  os.exit(3)
end
local t0 = os.time()
while os.time() - t0 < 60 do dist.all_reduce_(t) end
io.write(("rank %d: still running after 60 s\n"):format(r))
