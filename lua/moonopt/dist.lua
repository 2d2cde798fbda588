--- moonopt.dist: training across processes on MPI (docs/distributed.md).
--
--   local dist = require "moonopt.dist"
--   dist.init()  dist.rank() --> 1..N  dist.size()  dist.barrier()  dist.finalize()
--   dist.all_reduce_(t [, "sum" | "mean" | "max" | "min"])  dist.broadcast_(t [, root = 1])
--   dist.all_gather(t) --> tensor     dist.reduce_scatter_(t [, op]) --> t, first, count
--   dist.shard_range(n [, rank]) --> first, count      dist.abort([code])
--   local ddp = dist.DataParallel(model [, {bucket_mb = 1}])
--   dist.save(path, what)  dist.load(path, what): collective checkpoints (any world size)
--
-- This file checks arguments, makes non-contiguous tensors contiguous (and copies the
-- result back), allocates outputs and numbers ranks from 1; the C module
-- moonopt.dist_core (lua/dist/dist_core.c, linked with libmpi) moves the memory. The
-- split keeps the core and the binding free of MPI, and lets a build without MPI load
-- everything else. Every collective is a call every rank makes in the same order; each
-- first checks (one small all-reduce) that the ranks agree on the sizes, so a mismatch is
-- the same named error on every rank, never a truncated message or a hang.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"

local have_core, mpi = pcall(require, "moonopt.dist_core")
if not have_core then
  -- level 3: the line that called require
  error("moonopt.dist needs its C module moonopt.dist_core, which `make` builds when Open MPI "
        .. "is installed (Debian: apt-get install openmpi-bin libopenmpi-dev, or make deps); "
        .. "loading it failed: " .. tostring(mpi), 3)
end

local fail, show, api = apierror.fail, apierror.show, apierror.api

local dist = {}
local my_rank, world = nil, nil   -- 1-based rank and size once init ran

local function running(fname)
  local st = mpi.state()
  if st ~= "running" then
    fail("dist.%s: %s", fname, st == "finalized" and "MPI has been finalized (dist.finalize() was called)"
                                or "MPI is not initialised (call dist.init() first)")
  end
end

local function check_tensor(fname, t, what)
  if not core.is_tensor(t) then fail("dist.%s: %s must be a moonopt.Tensor, got %s", fname, what or "t", show(t)) end
  return t
end

--- dist.init() -> rank, size: starts MPI (once; later calls return the same values).
function dist.init()
  local r, n = mpi.init()
  my_rank, world = r + 1, n
  return my_rank, world
end
dist.init = api(dist.init)

--- dist.rank() -> this process's rank, 1..size.
dist.rank = api(function()
  running("rank")
  return my_rank
end)

--- dist.size() -> the number of processes.
dist.size = api(function()
  running("size")
  return world
end)

--- dist.barrier(): returns when every rank has called it.
dist.barrier = api(function()
  running("barrier")
  mpi.barrier()
end)

--- dist.finalize(): ends MPI (after the last collective; every rank calls it once).
dist.finalize = api(function()
  mpi.finalize()
end)

--- dist.abort([code = 1]): ends every rank of the job now.
dist.abort = api(function(code)
  mpi.abort(apierror.check_int("dist.abort", "code", code or 1, 0))
end)

--- dist.initialized() -> true while MPI runs (after init, before finalize).
dist.initialized = api(function()
  return mpi.state() == "running"
end)

-- Every rank must pass the same integer v (a size): else the same error on all ranks.
local function agree(fname, what, v)
  local lo, hi = mpi.agree(v)
  if lo ~= hi then
    fail("dist.%s: the ranks disagree on %s (from %d to %d; this rank: %d)", fname, what, lo, hi, v)
  end
end

-- Every rank's tensor must have the same dtype (MPI would read the bytes as another type).
local function agree_dtype(fname, t)
  agree(fname, "the dtype (1 float32, 2 float64)", t.dtype == "float64" and 2 or 1)
end

-- Runs f(c) on a contiguous tensor with t's values; copies c back into t when it was a copy.
local function on_contiguous(t, f)
  local c = t:contiguous()
  local a, b = f(c)
  if not rawequal(c, t) then t:copy_(c) end
  return a, b
end

local OPS = {sum = "sum", mean = "sum", max = "max", min = "min"}
local function check_op(fname, op)
  op = op or "sum"
  if OPS[op] == nil then
    fail("dist.%s: op must be \"sum\", \"mean\", \"max\" or \"min\", got %s", fname, show(op))
  end
  return op
end

--- dist.all_reduce_(t [, op = "sum"]) -> t: every rank's t becomes the sum (mean, max,
-- min) over ranks, element by element.
dist.all_reduce_ = api(function(t, op)
  check_tensor("all_reduce_", t)
  op = check_op("all_reduce_", op)
  running("all_reduce_")
  agree("all_reduce_", "the number of elements", t:numel())
  agree_dtype("all_reduce_", t)
  on_contiguous(t, function(c) mpi.all_reduce(c, OPS[op], op == "mean" and world or nil) end)
  return t
end)

--- dist.broadcast_(t [, root = 1]) -> t: rank root's t into every rank's t.
dist.broadcast_ = api(function(t, root)
  check_tensor("broadcast_", t)
  running("broadcast_")
  root = apierror.check_int("dist.broadcast_", "root", root or 1, 1)
  if root > world then fail("dist.broadcast_: root must be a rank in 1..%d, got %d", world, root) end
  agree("broadcast_", "the root", root)
  agree("broadcast_", "the number of elements", t:numel())
  agree_dtype("broadcast_", t)
  on_contiguous(t, function(c) mpi.broadcast(c, root - 1) end)
  return t
end)

--- dist.all_gather(t) -> a new tensor: every rank's t, in rank order, joined along the
-- first dimension (0-d tensors: a 1-d tensor of size() values). The first sizes may
-- differ between ranks; the other dimensions must agree.
dist.all_gather = api(function(t)
  check_tensor("all_gather", t)
  running("all_gather")
  local shape = t:shape()
  agree("all_gather", "the number of dimensions", #shape)
  agree_dtype("all_gather", t)
  local row = 1
  for i = 2, #shape do
    agree("all_gather", "the size of dimension " .. i, shape[i])
    row = row * shape[i]
  end
  -- every rank's first size (1 for a 0-d tensor), then its element count
  local counts = mpi.counts(#shape == 0 and 1 or shape[1])
  local rows = 0
  for r, c in ipairs(counts) do
    rows = rows + c
    counts[r] = c * row
  end
  local out_shape = {rows}
  for i = 2, #shape do out_shape[i] = shape[i] end
  local out = core.empty(out_shape, {dtype = t.dtype})
  local c = t:contiguous()
  mpi.all_gather(c, out, counts)
  return out
end)

-- Rank r's part (0-based first, count) of n elements split over `size` ranks: the first
-- n % size ranks hold one more.
local function shard(n, size, r)
  local base, extra = n // size, n % size
  local count = base + ((r - 1) < extra and 1 or 0)
  local first = (r - 1) * base + math.min(r - 1, extra)
  return first, count
end

--- dist.shard_range(n [, rank = this rank]) -> first, count: the part of n elements
-- (1-based first) that rank owns in reduce_scatter_ (and ZeRO): the first n % size
-- ranks hold one element more.
dist.shard_range = api(function(n, r)
  running("shard_range")
  n = apierror.check_int("dist.shard_range", "n", n, 0)
  r = apierror.check_int("dist.shard_range", "rank", r or my_rank, 1)
  if r > world then fail("dist.shard_range: rank must be in 1..%d, got %d", world, r) end
  local first, count = shard(n, world, r)
  return first + 1, count
end)

--- dist.reduce_scatter_(t [, op = "sum"]) -> t, first, count: t's elements (in row-major
-- order, the same count on every rank) are reduced over ranks, and this rank's part,
-- elements first..first+count-1 (dist.shard_range), receives the result; the rest of t
-- keeps this rank's values.
dist.reduce_scatter_ = api(function(t, op)
  check_tensor("reduce_scatter_", t)
  op = check_op("reduce_scatter_", op)
  running("reduce_scatter_")
  agree("reduce_scatter_", "the number of elements", t:numel())
  agree_dtype("reduce_scatter_", t)
  local first, count = on_contiguous(t, function(c)
    local f, n = mpi.reduce_scatter(c, OPS[op])
    if op == "mean" and n > 0 then c:view(-1):narrow(1, f + 1, n):div_(world) end
    return f, n
  end)
  return t, first + 1, count
end)

-- Every rank learns whether some rank failed (one small all-reduce); raises on all then.
local function all_ok(fname, ok, err, what)
  local _, bad = mpi.agree(ok and 0 or 1)
  if bad ~= 0 then
    if not ok then fail("%s: %s", fname, tostring(err):gsub("^mo%.%a+: ", "")) end
    fail("%s: %s failed on another rank", fname, what)
  end
end

-- A copy of what's fields.
local function copy(what)
  local w = {}
  for k, v in pairs(what) do w[k] = v end
  return w
end

-- fit's state (what.fit) over all ranks, for a checkpoint that resumes at any world size:
-- the epoch's running sums added over ranks (flagged, so a resumed fit keeps them on rank
-- 1 only), and the gradients of an unfinished accumulated step (pending > 0: every rank's
-- differ) replaced, while rank 1 writes, by their mean over ranks. Each resumed rank then
-- starts from that mean, and the step's final averaging gives the mean of the old part
-- plus the mean of the new one: the whole step's gradient at any world size. Returns the
-- state to write and a function that puts the gradients back.
local function fit_over_ranks(what)
  local st = copy(what.fit)
  local sums = mpi.reduce_numbers({st.loss_sum or 0, st.seen or 0, st.correct or 0}, "sum")
  st.loss_sum, st.seen, st.correct = sums[1], math.tointeger(sums[2]) or sums[2], math.tointeger(sums[3]) or sums[3]
  st.sums_over_ranks = true
  local saved = {}
  local model = what.model
  if (st.pending or 0) > 0 and type(model) == "table" and type(model.parameters) == "function" then
    for i, p in ipairs(model:parameters()) do
      local g = p.grad
      if g ~= nil then
        saved[i] = {p, g}
        p.grad = dist.all_reduce_(g:clone(), "mean")
      end
    end
  end
  return st, function()
    for _, pg in pairs(saved) do pg[1].grad = pg[2] end
  end
end

--- dist.save(path, what): mo.save as a collective (every rank calls it). With a sharded
-- optimizer (shard_state = true) every rank first gathers the whole state; fit's state
-- (what.fit) is made global (fit_over_ranks above); rank 1 then writes one ordinary
-- checkpoint (mo.save's atomic write), loadable at any world size and by an unsharded run.
-- Raises on every rank when the write failed.
dist.save = api(function(path, what)
  running("save")
  if type(what) ~= "table" then fail("dist.save: expected a table {model =, optimizer =, ...}, got %s", show(what)) end
  local w, opt = what, what.optimizer
  if type(opt) == "table" and rawget(opt, "_zero") then
    local ok, sd = pcall(opt.state_dict, opt)   -- a collective
    if not ok then mpi.abort(1) end             -- the ranks would be out of step
    w = copy(what)
    w.optimizer = {name = opt.name, state_dict = function() return sd end}
  end
  local put_back = nil
  if type(what.fit) == "table" and world > 1 then
    if w == what then w = copy(what) end
    w.fit, put_back = fit_over_ranks(what)
  end
  local ok, err = true, nil
  if my_rank == 1 then ok, err = pcall(require("moonopt.checkpoint").save, path, w) end
  if put_back then put_back() end
  all_ok("dist.save", ok, err, "the save")
end)

--- dist.load(path, what) -> extra: mo.load on every rank (the file must be readable by
-- every rank: a shared file system); a sharded optimizer keeps its part of each state, at
-- any world size. Raises on every rank when some rank could not load.
dist.load = api(function(path, what)
  running("load")
  local ok, extra = pcall(require("moonopt.checkpoint").load, path, what)
  all_ok("dist.load", ok, extra, "loading")
  return extra
end)

dist.DataParallel = require("moonopt.dist.parallel")(dist, mpi)

return dist
