-- bench/tensor.lua - the foundation's numbers (issue 2):
--   * the cost of a cheap tensor method call from Lua (t:get(1, 1), t:add_(1), t:add(1)),
--     against a reference measured in the same run: a call of Lua's own C function math.abs;
--   * mo.matmul at 512x512x512 through the Lua API (prints the median; bench/run.sh divides it
--     by cblas_sgemm called directly from C, measured in the same run).
-- usage: lua5.4 bench/tensor.lua [calls|matmul [reps [float32|float64]]]
local mo = require "moonopt"

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- seconds per iteration of f(n), the median over `reps` runs of n iterations
local function per_call(f, n, reps)
  local ts = {}
  for r = 1, reps do
    local t0 = mo.clock()
    f(n)
    ts[r] = (mo.clock() - t0) / n
  end
  return median(ts)
end

local what = arg[1] or "calls"

if what == "calls" then
  local t = mo.zeros(4, 4)
  local abs = math.abs
  local gc_mt = {__gc = function() end}
  local N = 2000000
  local ref = per_call(function(n) local x = 0 for _ = 1, n do x = x + abs(-1.5) end return x end, N, 7)
  local empty = per_call(function(n) local x = 0 for _ = 1, n do x = x + 1.5 end return x end, N, 7)
  local cases = {
    {"t:get(1, 1)", function(n) local x = 0 for _ = 1, n do x = x + t:get(1, 1) end return x end},
    {"t:add_(1)", function(n) for _ = 1, n do t:add_(1) end end},
    {"t:add(1)", function(n) for _ = 1, n do t:add(1) end end},
    -- the floor for any call that returns a new finalizable object: a Lua table with a
    -- __gc metamethod (creation + collection + finalizer call), no moonopt involved
    {"new table w/ __gc", function(n) for _ = 1, n do setmetatable({}, gc_mt) end end, "reference"},
  }
  print(string.format("%-18s %10s %10s   (reference math.abs(x): %.3f us/call)",
    "call", "us/call", "x ref", (ref - empty) * 1e6))
  for _, c in ipairs(cases) do
    local s = per_call(c[2], N // 4, 7) - empty
    print(string.format("%-18s %10.3f %10.2f  %s", c[1], s * 1e6, s / (ref - empty),
      c[3] == "reference" and "(reference, not moonopt)"
        or s < 0.2e-6 and "(target < 0.2 us: met)" or "(target < 0.2 us: MISSED)"))
  end
elseif what == "matmul" then
  -- arg[3] == "float64": the same through dgemm (issue 11: within 10% of cblas_dgemm)
  local n = 512
  local opts = {dtype = arg[3] == "float64" and "float64" or "float32"}
  local a, b = mo.rand(n, n, opts), mo.rand(n, n, opts)
  local c = mo.zeros(n, n, opts)
  mo.matmul(a, b, {out = c})
  local ts = {}
  for r = 1, tonumber(arg[2] or 21) do
    local t0 = mo.clock()
    mo.matmul(a, b, {out = c})
    ts[r] = mo.clock() - t0
  end
  print(string.format("mo_matmul_512 %.9f", median(ts)))
else
  error("usage: lua5.4 bench/tensor.lua [calls|matmul]")
end
