--- tests/dist/collectives.lua - run under mpirun (-np 2 or 3) by tests/lua/test_dist.lua.
-- Every rank checks the collectives' results against values it can compute alone, and
-- prints "rank R: ok <name>" per check and "rank R: done" at the end; a failed check
-- raises, which ends the job with a non-zero exit.
local mo = require "moonopt"
local dist = require "moonopt.dist"

local r, n = dist.init()
assert(dist.rank() == r and dist.size() == n and r >= 1 and r <= n)

local function ok(name) io.write(("rank %d: ok %s\n"):format(r, name)) end

local function same(t, want, name)
  local got = t:view(-1):totable()
  assert(#got == #want, name .. ": " .. #got .. " elements, want " .. #want)
  for i = 1, #want do
    if got[i] ~= want[i] then
      error(("%s: element %d is %s, want %s"):format(name, i, tostring(got[i]), tostring(want[i])), 2)
    end
  end
  ok(name)
end

-- every rank's error message, required to contain `pat` (plain)
local function raises(pat, f, ...)
  local good, msg = pcall(f, ...)
  assert(not good, "expected an error containing " .. pat)
  assert(tostring(msg):find(pat, 1, true), "error '" .. tostring(msg) .. "' lacks '" .. pat .. "'")
  ok("error " .. pat)
  return msg
end

local sum_r, max_r = n * (n + 1) // 2, n

-- all_reduce_: every op, contiguous and a transposed (non-contiguous) view
local t = mo.tensor{r, -r, 10 * r}
same(dist.all_reduce_(t), {sum_r, -sum_r, 10 * sum_r}, "all_reduce_ sum")
same(dist.all_reduce_(mo.tensor{r, -r}, "max"), {max_r, -1}, "all_reduce_ max")
same(dist.all_reduce_(mo.tensor{r, -r}, "min"), {1, -max_r}, "all_reduce_ min")
same(dist.all_reduce_(mo.tensor{2 * r}, "mean"), {(n + 1)}, "all_reduce_ mean")
local base = mo.tensor{{1, 2, 3}, {4, 5, 6}}:mul_(r)
local tv = base:t()                       -- {3, 2}, not contiguous
assert(not tv:is_contiguous())
dist.all_reduce_(tv)
same(base, {sum_r, 2 * sum_r, 3 * sum_r, 4 * sum_r, 5 * sum_r, 6 * sum_r}, "all_reduce_ non-contiguous")
local row = mo.tensor{{r, r}, {7, 7}}
dist.all_reduce_(row:select(1, 1))        -- only the first row takes part
same(row, {sum_r, sum_r, 7, 7}, "all_reduce_ a view leaves the rest")
same(dist.all_reduce_(mo.tensor(r)), {sum_r}, "all_reduce_ 0-d")
same(dist.all_reduce_(mo.zeros(0)), {}, "all_reduce_ empty")

-- broadcast_: default root 1, root n, non-contiguous
same(dist.broadcast_(mo.tensor{r, r + 1}), {1, 2}, "broadcast_ root 1")
same(dist.broadcast_(mo.tensor{r, r + 1}, n), {n, n + 1}, "broadcast_ root n")
local b2 = mo.tensor{{r, 0}, {r, 0}}
dist.broadcast_(b2:select(2, 1), n)
same(b2, {n, 0, n, 0}, "broadcast_ non-contiguous")

-- all_gather: equal shapes, uneven first sizes, 0-d, non-contiguous
local g = dist.all_gather(mo.tensor{{r, 10 * r}})
assert(g:size(1) == n and g:size(2) == 2)
local want = {}
for k = 1, n do want[#want + 1] = k; want[#want + 1] = 10 * k end
same(g, want, "all_gather")
local parts = {}
for k = 1, n do for _ = 1, k do parts[#parts + 1] = k end end
same(dist.all_gather(mo.full({r}, r)), parts, "all_gather uneven")
local s0 = {}
for k = 1, n do s0[k] = k end
same(dist.all_gather(mo.tensor(r)), s0, "all_gather 0-d")
same(dist.all_gather(mo.tensor{{r, 0}, {r, 0}}:select(2, 1)), (function()
  local w = {}
  for k = 1, n do w[#w + 1] = k; w[#w + 1] = k end
  return w
end)(), "all_gather non-contiguous")

-- reduce_scatter_: 7 elements (uneven over 2 and 3 ranks), own part reduced, rest local
local m = 7
local rs = mo.arange(m):mul_(r)
local _, first, count = dist.reduce_scatter_(rs)
local f2, c2 = dist.shard_range(m)
assert(first == f2 and count == c2, "reduce_scatter_ range")
local vals = rs:totable()
for i = 1, m do
  local expect = (i >= first and i < first + count) and i * sum_r or i * r
  assert(vals[i] == expect, ("reduce_scatter_ element %d: %s, want %s"):format(i, vals[i], expect))
end
ok("reduce_scatter_")
-- the parts tile 1..m in rank order
local next_first = 1
for k = 1, n do
  local f, c = dist.shard_range(m, k)
  assert(f == next_first, "shard_range tiles")
  next_first = f + c
end
assert(next_first == m + 1)
ok("shard_range")
local rm = mo.full({4}, 2 * r)
local _, fm, cm = dist.reduce_scatter_(rm, "mean")
for i = fm, fm + cm - 1 do assert(rm:get(i) == n + 1, "reduce_scatter_ mean") end
ok("reduce_scatter_ mean")

-- the rank-order sum (reduce_scatter_ and DataParallel's buckets): ranks 1..3 hold big, 1
-- and -big (the rest 0), where ((big + 1) - big) == 0 but (big - big) + 1 == 1 and
-- big + (1 - big) == 0 too: only the order 1, 2, 3 gives 0 from either dtype. At 2 ranks a
-- sum of two is the same in any order: the rank-3 case shows the order (tested at -np 3).
if n >= 3 then
  local mpi = require "moonopt.dist_core"
  for _, dt in ipairs{"float32", "float64"} do
    local big = dt == "float32" and 1e8 or 1e17
    local v = ({big, 1, -big})[r] or 0
    local rso = mo.full({11}, v, {dtype = dt})
    local _, fo, co = dist.reduce_scatter_(rso)
    for i = fo, fo + co - 1 do assert(rso:get(i) == 0, dt .. " reduce_scatter_ sums in rank order") end
    ok("reduce_scatter_ rank order " .. dt)
    -- DataParallel's non-blocking path: three buckets of a 23-element buffer
    local buf = mo.full({23}, v, {dtype = dt})
    local reqs = {mpi.iall_reduce(buf, 13, 10), mpi.iall_reduce(buf, 3, 10), mpi.iall_reduce(buf, 0, 3)}
    for _, q in ipairs(reqs) do q:wait() end
    same(buf, (function() local z = {} for i = 1, 23 do z[i] = 0 end return z end)(),
         "iall_reduce rank order " .. dt)
  end
end

-- errors: named, and the same on every rank (no hang)
raises("dist.all_reduce_: op must be", dist.all_reduce_, mo.zeros(2), "prod")
raises("dist.all_reduce_: t must be a moonopt.Tensor, got 3", dist.all_reduce_, 3)
raises("dist.broadcast_: root must be a rank in 1..", dist.broadcast_, mo.zeros(1), n + 1)
raises("dist.broadcast_: root must be a positive integer", dist.broadcast_, mo.zeros(1), 0)
if n > 1 then
  raises("the ranks disagree on the number of elements", dist.all_reduce_, mo.zeros(r))
  raises("the ranks disagree on the size of dimension 2", dist.all_gather, mo.zeros(1, r))
end
raises("dist.shard_range: rank must be in 1..", dist.shard_range, 4, n + 1)
raises("DataParallel: model must be a moonopt.nn module", dist.DataParallel, {})
raises("DataParallel: ordered must be a boolean, got 1", dist.DataParallel, mo.nn.Linear(2, 2), {ordered = 1})
local lin = mo.nn.Linear(2, 2)
raises("LBFGS: shard_state = true is not supported: its step is a line search", mo.optim.LBFGS,
       lin:parameters(), {shard_state = true})
raises("AdamW: option 'shard_state' must be a boolean, got 1", mo.optim.AdamW, lin:parameters(),
       {shard_state = 1})
raises("dist.save: expected a table", dist.save, "/tmp/x.ckpt", 3)
local msg = raises("dist.save: ", dist.save, "/proc/no/such/dir/x.ckpt", {model = lin})
assert(r == 1 or msg:find("the save failed on another rank", 1, true), msg)
raises("dist.load: ", dist.load, "/proc/no/such/file.ckpt", {model = lin})
local freed = mo.zeros(2)
freed:__gc()
raises("tensor has been freed", dist.all_reduce_, freed)

-- float64: exact doubles through every collective (a float32 path would round 1e-12 away)
local F64 = {dtype = "float64"}
local d = mo.full({3}, r + 1e-12, F64)
dist.all_reduce_(d)
same(d, {n * (n + 1) / 2 + n * 1e-12, n * (n + 1) / 2 + n * 1e-12, n * (n + 1) / 2 + n * 1e-12},
     "float64 all_reduce_")
local b64 = mo.full({2}, r + 0.25e-12, F64)
dist.broadcast_(b64, n)
same(b64, {n + 0.25e-12, n + 0.25e-12}, "float64 broadcast_")
local g64 = dist.all_gather(mo.full({1}, r + 1e-13, F64))
local want64 = {}
for k = 1, n do want64[k] = k + 1e-13 end
assert(g64.dtype == "float64")
same(g64, want64, "float64 all_gather")
if n > 1 then
  raises("the ranks disagree on the dtype", dist.all_reduce_,
         r == 1 and mo.zeros(2) or mo.zeros({2}, F64))
end

dist.barrier()
ok("barrier")
dist.finalize()
raises("MPI has been finalized", dist.all_reduce_, mo.zeros(1))
raises("MPI has been finalized", dist.rank)
io.write(("rank %d: done\n"):format(r))
