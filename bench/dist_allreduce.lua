--- bench/dist_allreduce.lua [numel] - run by bench/dist_bench.sh under mpirun -np 2.
-- All-reduce bandwidth on loopback: dist.all_reduce_ (argument checks, the ranks' size
-- agreement, contiguity) against the raw MPI_Allreduce of the same bytes (dist_core's
-- all_reduce: one MPI_Allreduce on the tensor's memory, nothing else), the rank-order sum
-- in one call (MPI_Alltoallv, the ordered add, MPI_Allgatherv: what bit-identity costs)
-- and DataParallel's bucketed non-blocking ordered sums, interleaved in rounds; the median
-- of each.
-- Bandwidth as the ring all-reduce's: 2 (N - 1) / N * bytes / time.
local mo = require "moonopt"
local dist = require "moonopt.dist"
local mpi = require "moonopt.dist_core"

local r, n = dist.init()
local numel = math.tointeger(tonumber(arg[1] or "1048576"))
local t = mo.ones(numel)
local reps = 20

local function timed(f)
  dist.barrier()
  local t0 = mpi.wtime()
  for _ = 1, reps do f() end
  local dt = (mpi.wtime() - t0) / reps
  local _, hi = mpi.agree(math.floor(dt * 1e9))   -- the slowest rank's time counts
  return hi / 1e9
end

local buckets = {}
do -- DataParallel's buckets of 1 MiB from the end, as dist/parallel.lua cuts them
  local hi, size = numel, 262144
  while hi > 0 do
    local lo = math.max(0, hi - size)
    buckets[#buckets + 1] = {lo, hi - lo}
    hi = lo
  end
end

local raw, ours, ordered, bucketed = {}, {}, {}, {}
for round = 1, 7 do
  raw[round] = timed(function() mpi.all_reduce(t, "sum") end)
  ours[round] = timed(function() dist.all_reduce_(t) end)
  ordered[round] = timed(function() mpi.all_reduce(t, "sum", nil, true) end)
  bucketed[round] = timed(function()
    local reqs = {}
    for i, b in ipairs(buckets) do reqs[i] = mpi.iall_reduce(t, b[1], b[2]) end
    for _, q in ipairs(reqs) do q:wait() end
  end)
end
local function median(x) table.sort(x) return x[(#x + 1) // 2] end
local bytes = numel * 4
local function gbs(dt) return 2 * (n - 1) / n * bytes / dt / 1e9 end
local mr, mo_, mord, mb = median(raw), median(ours), median(ordered), median(bucketed)
if r == 1 then
  print(("all-reduce of %.1f MB on %d ranks: raw MPI_Allreduce %.2f ms (%.2f GB/s), dist.all_reduce_ "
         .. "%.2f ms (%.2f GB/s, %.0f%% of raw) %s\n  rank-order sum in one call %.2f ms (%.0f%% of raw), "
         .. "DataParallel's ordered buckets %.2f ms (%.0f%% of raw)"):format(
    bytes / 1e6, n, mr * 1e3, gbs(mr), mo_ * 1e3, gbs(mo_), 100 * mr / mo_,
    mr / mo_ >= 0.9 and "(target >= 90%: met)" or "(target >= 90%: MISSED)",
    mord * 1e3, 100 * mr / mord, mb * 1e3, 100 * mr / mb)
    .. (n == 2 and " (at 2 ranks both are MPI's own sums: a + b is the same in either order)" or ""))
end
dist.finalize()
