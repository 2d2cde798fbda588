-- bench/rss_temporaries.lua - does a loop that makes temporary tensors stay bounded?
--
--   lua5.4 bench/rss_temporaries.lua [iterations [size]]      (default 10000, 256)
--   /usr/bin/time -v lua5.4 bench/rss_temporaries.lua          (the kernel's own peak RSS)
--
-- Each iteration makes five temporaries of size x size floats (256 KB each at 256; 12.5 GB
-- allocated over 10,000 iterations) and drops them. Tensor memory comes from the core's
-- allocator, which Lua's collector cannot see; the binding adds up every tensor of 1 KB
-- or more and reports it as collector debt per 16 MB (lua_gc(LUA_GCSTEP, kb)), so collection keeps pace
-- with the allocations. Prints the peak resident set (VmHWM of /proc/self/status) before
-- and after the loop. With --no-gc the same loop runs 200 iterations with the collector
-- stopped, to show what the accounting prevents.
--
--   lua5.4 bench/rss_temporaries.lua --expr [iterations]       (default 100000)
--
-- issue 11's case: `c = a * b + 1` on 1 MB tensors ({256, 1024} floats: two operator
-- temporaries per iteration); the target is a peak RSS under 100 MB after 1e5 iterations.
local mo = require "moonopt"

if arg[1] == "--expr" then
  local iters = tonumber(arg[2]) or 100000
  local function hwm()
    local f = io.open("/proc/self/status", "r")
    if not f then return nil end
    local kb = tonumber(f:read("a"):match("VmHWM:%s*(%d+) kB"))
    f:close()
    return kb
  end
  mo.manual_seed(1)
  local a, b = mo.rand(256, 1024), mo.rand(256, 1024)
  collectgarbage()
  local base = hwm()
  local t0 = mo.clock()
  local c
  for _ = 1, iters do c = a * b + 1 end
  local seconds = mo.clock() - t0
  local peak = hwm()
  print(string.format("c = a * b + 1 on {256, 1024} float32 (1 MB), %d iterations: peak RSS before "
    .. "%.1f MB, after %.1f MB %s; %.1f us per iteration; c[1][1] = %.4f", iters, (base or 0) / 1024,
    (peak or 0) / 1024, peak and (peak < 100 * 1024 and "(target < 100 MB: met)"
    or "(target < 100 MB: MISSED)") or "", seconds / iters * 1e6, c:get(1, 1)))
  return
end

local no_gc = arg[1] == "--no-gc"
local iters = tonumber(no_gc and 200 or arg[1]) or 10000
local size = tonumber(arg[2]) or 256

local function status_kb(field)
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s*(%d+) kB"))
end

mo.manual_seed(1)
local x = mo.randn(size, size)
collectgarbage()
local base = status_kb("VmHWM")
if no_gc then collectgarbage("stop") end
local t0 = mo.clock()
local acc = 0
for _ = 1, iters do
  local y = x:add(1):mul(2):sub(x):abs():sqrt()   -- five new tensors
  acc = acc + y:get(1, 1)
end
local seconds = mo.clock() - t0
local peak = status_kb("VmHWM")
local mb = function(kb) return kb and string.format("%.1f MB", kb / 1024) or "n/a" end
print(string.format("%d iterations x 5 temporaries of {%d, %d} (%.0f KB each, %.1f GB in all)%s",
                    iters, size, size, size * size * 4 / 1024, iters * 5 * size * size * 4 / 2 ^ 30,
                    no_gc and ", collector STOPPED" or ""))
print(string.format("peak RSS before the loop %s, after %s; %.2f s (%.1f us per iteration); checksum %.6g",
                    mb(base), mb(peak), seconds, seconds / iters * 1e6, acc))
