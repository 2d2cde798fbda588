-- bench/autograd_overhead.lua - what autograd costs (issue 12, docs/autograd.md):
--   1. `a + b` on 16 elements when no tensor requires grad: the dispatcher's fast path
--      (target <= 1 us per op), next to the same op while other tensors do need grad
--      (the dispatcher then scans the arguments' flags);
--   2. recording: the same small ops on a tensor that requires grad, minus the same ops
--      unrecorded, measured in short runs back to back (the median of the paired
--      differences; target <= 1.5 us per op above the op itself); and backward per op;
--   3. memory: RSS after 1e3 and after 1e4 training steps through autograd (flat); run
--      first (see its section).
-- All figures are medians of `reps` runs measured in this one process, in CPU time
-- (os.clock: steadier than wall time on a shared machine); run with
-- OPENBLAS_NUM_THREADS=1 (bench/run.sh sets it).
-- `pad` bytes of a string allocated first shift the process's memory layout: on the
-- development machine the recording figures moved by 2x with it (a 64-byte string did
-- it), so bench/autograd_bench.sh runs this with several and reports their median.
-- usage: lua5.4 bench/autograd_overhead.lua [reps [pad]]
local pad = string.rep("x", tonumber(arg and arg[2]) or 0) -- alive to the end: a local
local mo = require "moonopt"
local core = require "moonopt.core"

local reps = tonumber(arg and arg[1]) or 9
local N = 20000

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- The extra seconds per call of `b` over `a`: short runs (PAIR_N calls, a few ms) back to
-- back (a, b, a, b, ...; 10 reps pairs), so that both sides of a difference share the
-- machine's state of that moment (this host's speed drifts by 2x within minutes, and runs
-- of the same code a minute apart differ by more than what is measured); the median of
-- the paired differences, and the medians of each side for the record. The runs follow
-- each other with no collection in between: the collector's incremental steps, which
-- allocation pays for (one every few KB), then fall in the run whose garbage called for
-- them, at the collector's steady state (a full collection before each run would leave a
-- run of a few ms with no collector work at all, and report the recording cost without it).
local PAIR_N = 2000
local function paired_extra(a, b)
  local da, db, dd = {}, {}, {}
  local function run(body)
    local t0 = os.clock()
    for i = 1, PAIR_N do body(i) end
    return (os.clock() - t0) / PAIR_N
  end
  for r = 1, 10 * reps + 1 do
    da[r] = run(a)
    db[r] = run(b)
    dd[r] = db[r] - da[r]
  end
  return median(dd), median(da), median(db)
end

-- seconds per call of body(i) (a loop of N), the median over reps
local function per_call(body)
  local ts = {}
  for r = 1, reps do
    collectgarbage()
    local t0 = os.clock()
    for i = 1, N do body(i) end
    ts[r] = (os.clock() - t0) / N
  end
  return median(ts)
end

local us = function(s) return s * 1e6 end

-- 3. memory (measured first: the timed sections below run a full collection between rounds,
-- which lets Lua 5.4's generational collector age short-lived tensors and grows the heap to a
-- plateau that says nothing about a training loop) ---------------------------------------
do -- its tensors (two of them require grad) are gone before the timed sections
  local function rss_kb()
    local f = io.open("/proc/self/statm", "r")
    if not f then return nil end
    local _, res = f:read("n", "n")
    f:close()
    return res * 4
  end

  mo.manual_seed(3)
  local X, Y = mo.randn(64, 8), mo.randn(64, 1)
  local W = mo.zeros({8, 1}, {requires_grad = true})
  local c = mo.zeros({1}, {requires_grad = true})
  local opt = mo.optim.SGD({W, c}, {lr = 0.01})
  local function train_step()
    opt:zero_grad()
    local loss = ((mo.matmul(X, W) + c - Y) ^ 2):mean()
    loss:backward()
    opt:step()
    return loss
  end
  for _ = 1, 1000 do train_step() end
  local rss1 = rss_kb()
  for _ = 1, 9000 do train_step() end
  local rss2 = rss_kb()
  if rss1 then
    print(string.format("RSS after 1e3 training steps %d KB, after 1e4 %d KB (%+d KB) %s", rss1, rss2,
      rss2 - rss1, rss2 - rss1 <= 1024 and "(flat)" or "(GROWING)"))
  end
end

-- 1. the fast path ---------------------------------------------------------------------
collectgarbage()
local a, b = mo.randn(16), mo.randn(16)
assert(core._autograd.live() == 0, "a tensor requires grad before the bench started")
local t_fast = per_call(function() return a + b end)
local keep = mo.randn({16}, {requires_grad = true}) -- live > 0: the scan path
assert(keep.requires_grad)
local t_scan = per_call(function() return a + b end)
print(string.format("a + b, 16 elements, no tensor requires grad: %.3f us %s", us(t_fast),
  us(t_fast) <= 1 and "(target <= 1 us: met)" or "(target <= 1 us: MISSED)"))
print(string.format("a + b, 16 elements, another tensor requires grad: %.3f us (%.2fx)",
  us(t_scan), t_scan / t_fast))

-- 2. recording ---------------------------------------------------------------------------
local x = mo.randn(16)
local w = mo.randn(16)
local ops = {
  {"x * w", function(v) return v * w end},
  {"x + 1", function(v) return v + 1 end},
  {"x:exp()", function(v) return v:exp() end},
  {"x:sum()", function(v) return v:sum() end},
  {"x[3]", function(v) return v[3] end},
  {"x:view{4, 4}", function(v) return v:view{4, 4} end},
}
local xr = mo.randn({16}, {requires_grad = true})
local worst = 0
for _, op in ipairs(ops) do
  local f = op[2]
  local extra, plain, rec = paired_extra(function() return f(x) end, function() return f(xr) end)
  worst = math.max(worst, extra)
  print(string.format("%-14s plain %.3f us, recorded %.3f us: recording costs %.3f us", op[1],
    us(plain), us(rec), us(extra)))
end
print(string.format("recording cost per op, worst of the above: %.3f us %s", us(worst),
  us(worst) <= 1.5 and "(target <= 1.5 us: met)" or "(target <= 1.5 us: MISSED)"))

-- backward of a 10-op chain, per op
local chain = function(v) return ((((v * w + 1):exp() * w):tanh() - v) * w):sigmoid():sum() end
local t_fwd = per_call(function() return chain(xr) end)
local t_both = per_call(function() chain(xr):backward() end)
print(string.format("10-op chain on 16 elements: forward %.2f us, backward %.2f us (%.2f us per op)",
  us(t_fwd), us(t_both - t_fwd), us(t_both - t_fwd) / 10))

print(string.format("(memory layout shifted by a %d-byte string allocated first)", #pad))
