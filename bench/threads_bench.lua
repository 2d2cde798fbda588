-- bench/threads_bench.lua - the moonopt side of bench/threads_bench.sh: a:add_(b) and a:sum()
-- over 16M float32 values at the thread count given, from Lua. Prints
-- "mo_add <median s>" and "mo_sum <median s>".
-- usage: lua5.4 bench/threads_bench.lua threads [reps]
local mo = require "moonopt"

local threads = assert(tonumber(arg[1]), "usage: threads_bench.lua threads [reps]")
local reps = tonumber(arg[2]) or 21
local N = 16 * 1024 * 1024
mo.set_num_threads(threads)
local a, b = mo.rand(N), mo.rand(N)

local function median(f)
  f() -- warm: first touch, the pool's threads
  local t = {}
  for k = 1, reps do
    local t0 = mo.clock()
    f()
    t[k] = mo.clock() - t0
  end
  table.sort(t)
  return t[(reps + 1) // 2]
end

-- in place, so no fresh pages are timed (a grows by at most reps + 1: stays finite)
print(string.format("mo_add %.9f", median(function() a:add_(b) end)))
local s
print(string.format("mo_sum %.9f", median(function() s = a:sum() end)))
assert(mo.is_tensor(s) and s:numel() == 1)
