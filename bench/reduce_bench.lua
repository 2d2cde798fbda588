-- bench/reduce_bench.lua - x:sum(2) on a {4096, 1024} float32 tensor from Lua, one thread
-- (issue 11 "Numbers"): the moonopt side of bench/reduce_bench.sh, which compares it with
-- bench/reduce_sum.c (plain C loops) and bench/reduce_torch.py (PyTorch) in the same run.
-- Prints "mo_sum_dim2 <median seconds>". The values (uniform [0, 1)) do not change the timing.
-- With MO_BENCH_CLOCK=cpu in the environment it times this process's CPU time (os.clock).
-- usage: lua5.4 bench/reduce_bench.lua [reps]
local mo = require "moonopt"
mo.set_num_threads(1)
local clock = os.getenv("MO_BENCH_CLOCK") == "cpu" and os.clock or mo.clock

local reps = tonumber(arg[1]) or 21
local x = mo.rand(4096, 1024)
local times = {}
local r = x:sum(2) -- warm: first touch of the output pages, the methods table
for k = 1, reps do
  local t0 = clock()
  r = x:sum(2)
  times[k] = clock() - t0
end
assert(r:numel() == 4096)
table.sort(times)
print(string.format("mo_sum_dim2 %.9f", times[(reps + 1) // 2]))
