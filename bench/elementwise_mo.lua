-- bench/elementwise_mo.lua - moonopt's side of the broadcasting add of issue 11 (run by
-- bench/elementwise_bench.sh, which times a plain C loop and PyTorch 1.13 the same way):
-- a {1024, 1024} + b {1024}, float32, 1 thread, median seconds per call of
--   mo_bcast_add          `local _ = a + b`: a new result per call, dropped at once (what
--                         PyTorch's `lambda: a + b` does; Lua frees it at the next collector
--                         step, before the next result is made, so one block is reused);
--   mo_bcast_add_keep     `sink = a + b`: the previous result is still held while the next
--                         is made, so two result blocks alternate (as `sink = a + b` in
--                         Python);
--   mo_bcast_add_inplace  `c:add_(b)`.
-- clock: "wall" (mo.clock) or "cpu" (os.clock, this process's CPU time: on a machine shared
-- by many jobs a process gets a fraction of a core and wall-time medians measure the
-- scheduler).
-- `small`: bench/tensor_ops.lua's `small` (`a + b` on 16-element tensors, microseconds per
-- call, the cost of an empty call subtracted) with the same choice of clock.
-- usage: lua5.4 bench/elementwise_mo.lua [reps|small [wall|cpu]]
local mo = require "moonopt"

local small = arg[1] == "small"
local reps = tonumber(arg[1]) or 21
local clock = arg[2] == "cpu" and os.clock or mo.clock

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- median over `reps` timings of 10 calls of f, seconds per call
local function per_call(f)
  local ts = {}
  for r = 1, reps do
    local t0 = clock()
    for _ = 1, 10 do f() end
    ts[r] = (clock() - t0) / 10
  end
  return median(ts)
end

if small then
  local x, y = mo.rand(16), mo.rand(16)
  local sink
  local function per(f, n)
    local ts = {}
    for r = 1, 5 do
      local t0 = clock()
      for _ = 1, n do f() end
      ts[r] = (clock() - t0) / n
    end
    return median(ts)
  end
  local empty = per(function() sink = x end, 1000000)
  print(string.format("mo_small_add_us %.4f", (per(function() sink = x + y end, 1000000) - empty) * 1e6))
  assert(sink)
  return
end

mo.manual_seed(1)
local a, b = mo.rand({1024, 1024}), mo.rand({1024})
local c = a:clone()
local sink = a + b -- warm: the first touch of a result block
print(string.format("mo_bcast_add %.9f", per_call(function() local _ = a + b end)))
print(string.format("mo_bcast_add_keep %.9f", per_call(function() sink = a + b end)))
print(string.format("mo_bcast_add_inplace %.9f", per_call(function() c:add_(b) end)))
assert(sink:shape()[1] == 1024)
