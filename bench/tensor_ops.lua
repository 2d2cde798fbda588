-- bench/tensor_ops.lua - the elementwise numbers of issue 11, from Lua:
--   bcast [reps]  `a + b` with a {1024, 1024} and b {1024} (float32; a new result per call,
--                 as a user writes it), and the same in place (`c:add_(b)`); float64 too.
--                 Prints median seconds per call; bench/elementwise_bench.sh divides them by
--                 the plain C loop (bench/elementwise_ref.c) and PyTorch measured in the same run.
--   small [n]     `a + b` on two 16-element tensors: microseconds per call.
-- usage: lua5.4 bench/tensor_ops.lua bcast|small [count]
local mo = require "moonopt"

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- median over `reps` timings of `inner` calls of f, seconds per call
local function time_per_call(f, inner, reps)
  local ts = {}
  for r = 1, reps do
    local t0 = mo.clock()
    for _ = 1, inner do f() end
    ts[r] = (mo.clock() - t0) / inner
  end
  return median(ts)
end

local what = arg[1] or "bcast"
if what == "bcast" then
  local reps = tonumber(arg[2]) or 21
  mo.manual_seed(1)
  for _, dt in ipairs{"float32", "float64"} do
    local a = mo.rand({1024, 1024}, {dtype = dt})
    local b = mo.rand({1024}, {dtype = dt})
    local c = a:clone()
    local sink
    local new = time_per_call(function() sink = a + b end, 10, reps)
    local inplace = time_per_call(function() c:add_(b) end, 10, reps)
    local tag = dt == "float32" and "" or "_f64"
    print(string.format("mo_bcast_add%s %.9f", tag, new))
    print(string.format("mo_bcast_add_inplace%s %.9f", tag, inplace))
    assert(sink:shape()[1] == 1024)
  end
elseif what == "small" then
  local n = tonumber(arg[2]) or 1000000
  local a, b = mo.rand(16), mo.rand(16)
  local sink
  local empty = time_per_call(function() sink = a end, n, 5)
  local s = time_per_call(function() sink = a + b end, n, 5) - empty
  local s1 = time_per_call(function() sink = a + 1 end, n, 5) - empty
  local sr = time_per_call(function() sink = a + b:view(1, 16) end, n // 4, 5) - empty
  print(string.format("mo_small_add_us %.4f", s * 1e6))
  print(string.format("mo_small_add_number_us %.4f", s1 * 1e6))
  print(string.format("mo_small_view_and_bcast_add_us %.4f", sr * 1e6))
  assert(sink)
else
  error("usage: lua5.4 bench/tensor_ops.lua bcast|small [count]")
end
