-- tests/lua/test_dist.lua - moonopt.dist (docs/distributed.md): the scripts of tests/dist/
-- run under `mpirun --oversubscribe -np 2` and `-np 3` (about 10 s in all), plus the
-- data loaders' sharding, which needs no MPI. Without mpirun or without the C module
-- (built only when Open MPI's development files are present) the MPI classes are left
-- out with a note on stderr, so the count holds only tests that ran. Under make check the
-- ranks inherit the ASan preload and run the sanitized dist_core.so (about 16 s then).
local lu = require "luaunit"
local mo = require "moonopt"

-- The interpreter running this suite (arg[-1]), so the ranks match it.
local lua = (arg and arg[-1]) or "lua5.4"
if not lua:find("^[%w_%./%-]+$") then lua = "lua5.4" end

local function have_mpi()
  if not os.execute("command -v mpirun >/dev/null 2>&1") then return false, "no mpirun" end
  if not package.searchpath("moonopt.dist_core", package.cpath) then
    return false, "moonopt.dist_core not built (no Open MPI development files)"
  end
  return true
end

-- Runs tests/dist/<script> on np ranks; returns the output, whether it exited 0, and the
-- seconds it took. `timeout` bounds a hang (the failure tests must end far sooner).
local function mpirun(np, script, args, timeout)
  local cmd = ("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout %d mpirun "
               .. "--oversubscribe -np %d %s tests/dist/%s %s 2>&1"):format(timeout or 60, np, lua, script,
                                                                           args or "")
  local t0 = mo.clock()
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok, mo.clock() - t0
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- every rank ran every check and finished
local function all_done(out, np, ok)
  lu.assertTrue(ok, out)
  for r = 1, np do
    lu.assertStrContains(out, ("rank %d: done"):format(r))
  end
end

local TestZDistCollectives = {}

local function collectives(np)
  local out, ok = mpirun(np, "collectives.lua")
  all_done(out, np, ok)
  local per_rank = count(out, "rank 1: ok ")
  lu.assertTrue(per_rank >= 30, out)
  for r = 2, np do lu.assertEquals(count(out, ("rank %d: ok "):format(r)), per_rank, out) end
end

function TestZDistCollectives.test_2_ranks() collectives(2) end
function TestZDistCollectives.test_3_ranks() collectives(3) end

function TestZDistCollectives.test_one_process_without_mpirun()
  -- MPI's singleton mode: a plain `lua5.4 script.lua` is a world of one
  local p = assert(io.popen(lua .. " tests/dist/collectives.lua 2>&1"))
  local out = p:read("a")
  all_done(out, 1, p:close())
end

local TestZDistDataParallel = {}

local function equiv(np, k, unordered)
  local out, ok = mpirun(np, "ddp_equiv.lua", tostring(k) .. (unordered and " unordered" or ""))
  all_done(out, np, ok)
  lu.assertStrContains(out, "rank 1: steps 31 overlaps true")
end

-- N ranks x batch 8 == one process x batch 8N, 31 AdamW steps, rtol 1e-5 (atol 1e-6)
function TestZDistDataParallel.test_equals_one_process_at_the_global_batch_2_ranks() equiv(2, 1) end
function TestZDistDataParallel.test_equals_one_process_at_the_global_batch_3_ranks() equiv(3, 1) end
-- accumulate 3: one reduction per step, after the last micro-batch
function TestZDistDataParallel.test_gradient_accumulation_2_ranks() equiv(2, 3) end
-- ordered = false: MPI_Iallreduce buckets
function TestZDistDataParallel.test_unordered_buckets_3_ranks() equiv(3, 1, true) end

-- ZeRO-1: bit-identical to data parallel (at 3 ranks too: both sum in rank order), 1/N of
-- the state per rank
local function zero(np, which)
  local out, ok = mpirun(np, "zero.lua", which)
  all_done(out, np, ok)
  lu.assertStrContains(out, "rank 1: " .. which .. " differ ")
end

function TestZDistDataParallel.test_zero1_adamw_2_ranks() zero(2, "AdamW") end
function TestZDistDataParallel.test_zero1_sgd_nesterov_2_ranks() zero(2, "SGD") end
function TestZDistDataParallel.test_zero1_adamw_3_ranks() zero(3, "AdamW") end
function TestZDistDataParallel.test_zero1_lion_3_ranks() zero(3, "Lion") end
-- LAMB: whole tensors per rank, so its per-tensor trust ratios are the unsharded ones
function TestZDistDataParallel.test_zero1_lamb_2_ranks() zero(2, "LAMB") end
function TestZDistDataParallel.test_zero1_lamb_3_ranks() zero(3, "LAMB") end
-- ScheduleFreeAdamW: eval()/train() at the end of the epoch move the shards and gather
function TestZDistDataParallel.test_zero1_schedulefree_3_ranks() zero(3, "ScheduleFreeAdamW") end

-- skip_nonfinite: one rank's NaN loss makes every rank skip that batch (it used to leave
-- the others waiting in the reduction: the 30 s timeout catches such a hang)
local function skip(np, k)
  local out, ok = mpirun(np, "skip.lua", tostring(k), 30)
  all_done(out, np, ok)
  for r = 1, np do lu.assertStrContains(out, ("rank %d: skipped 1 batch(es) with the others"):format(r)) end
end

function TestZDistDataParallel.test_skip_nonfinite_on_one_rank_2_ranks() skip(2, 1) end
function TestZDistDataParallel.test_skip_nonfinite_on_one_rank_accumulate_3_ranks() skip(3, 2) end

-- Collective checkpoints of a ZeRO-1 run: saved at 2 ranks, resumed at 1, 2 and 3
local TestZDistCheckpoint = {}

function TestZDistCheckpoint.test_resume_at_another_world_size()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local out, ok = mpirun(2, "ckpt.lua", "save " .. dir)
  all_done(out, 2, ok)
  for _, np in ipairs{1, 2, 3} do
    out, ok = mpirun(np, "ckpt.lua", "resume " .. dir)
    all_done(out, np, ok)
    lu.assertStrContains(out, ("rank 1: 12 tensors gathered again bit for bit at %d ranks"):format(np))
    -- at the world size of the save the run goes on bit for bit
    if np == 2 then lu.assertStrContains(out, "rank 1: resumed at 2 ranks, 0 of 189 parameters differ") end
  end
  os.execute("rm -rf '" .. dir .. "'")
end

-- fit's mid-epoch position: saved at N ranks (ZeRO-1), resumed at M, against a
-- one-process reference built from the definition (tests/dist/resume.lua)
local function resume_at(saved_at, sizes, k)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local out, ok = mpirun(saved_at, "resume.lua", ("save %s 0 %d"):format(dir, k or 1))
  all_done(out, saved_at, ok)
  for _, m in ipairs(sizes) do
    out, ok = mpirun(m, "resume.lua", ("resume %s %d %d"):format(dir, saved_at, k or 1))
    all_done(out, m, ok)
    lu.assertStrContains(out, ("rank 1: resumed at %d ranks from %d after %d examples"):format(m, saved_at,
                                                                                              40 * saved_at))
  end
  os.execute("rm -rf '" .. dir .. "'")
end

function TestZDistCheckpoint.test_fit_mid_epoch_2_to_1_2_3() resume_at(2, {1, 2, 3}) end
function TestZDistCheckpoint.test_fit_mid_epoch_1_to_2() resume_at(1, {2}) end
-- saved inside an accumulated step: its gradients are carried over as their mean over ranks
function TestZDistCheckpoint.test_fit_mid_step_2_to_3() resume_at(2, {3}, 2) end

local TestZDistFailure = {}

-- a dead rank ends the job, non-zero, within seconds (the survivors would wait 60 s)
local function dies(np, how)
  local out, ok, secs = mpirun(np, "dead_rank.lua", how)
  lu.assertNotEquals(ok, true, out)   -- io.popen's close gives nil for a failed command
  lu.assertEquals(count(out, "started"), np, out)
  lu.assertNotStrContains(out, "still running")
  lu.assertTrue(secs < 10, ("the job took %.1f s to end:\n%s"):format(secs, out))
end

function TestZDistFailure.test_rank_exits_without_finalize() dies(2, "exit") end
function TestZDistFailure.test_rank_killed_with_sigkill() dies(3, "kill") end
function TestZDistFailure.test_rank_raises_a_lua_error() dies(2, "error") end

-- The loaders' sharding (no MPI needed): at N ranks x batch B, rank r's batch i is part
-- r of one process's batch i at batch N * B, the parts in rank order.
local TestZDistData = {}

local function rows(ds, opts, epoch_seed)
  local l = mo.data.loader(ds, opts)
  mo.manual_seed(epoch_seed)
  local out = {}
  for xb, _, i in l:epoch() do out[i] = xb:view(-1):totable() end
  return out, l
end

local function check_shards(n, np, B, drop_last)
  local ds = {x = mo.arange(n):view(n, 1), y = mo.arange(n)}
  local whole = rows(ds, {batch_size = np * B, drop_last = drop_last}, 5)
  local got = {}
  local nb
  for r = 1, np do
    local part, l = rows(ds, {batch_size = B, rank = r, world_size = np, drop_last = drop_last}, 5)
    nb = nb or l:num_batches()
    lu.assertEquals(l:num_batches(), nb)
    lu.assertEquals(#part, nb)
    for i = 1, nb do
      got[i] = got[i] or {}
      lu.assertTrue(#part[i] >= 1)
      table.move(part[i], 1, #part[i], #got[i] + 1, got[i])
      lu.assertEquals(l:global_count(i), #whole[i])
    end
  end
  -- a last global batch smaller than the number of ranks is dropped
  local want = #whole
  if #whole > 0 and #whole[#whole] < np then want = want - 1 end
  lu.assertEquals(nb, want)
  for i = 1, nb do lu.assertEquals(got[i], whole[i]) end
end

function TestZDistData.test_shards_tile_the_global_batches()
  check_shards(64, 2, 8)       -- even
  check_shards(67, 2, 8)       -- a last global batch of 3 (2 + 1)
  check_shards(65, 2, 8)       -- a last global batch of 1 < 2 ranks: dropped
  check_shards(70, 3, 4)       -- a last batch of 10 over 3 ranks (4, 3, 3)
  check_shards(70, 3, 4, true) -- drop_last
end

function TestZDistData.test_bad_shard_options()
  local ds = {x = mo.zeros(4, 1), y = mo.zeros(4)}
  local ok, err = pcall(mo.data.loader, ds, {rank = 3, world_size = 2})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "loader: rank must be in 1..2 (world_size), got 3")
  ok, err = pcall(mo.data.loader, ds, {world_size = 0})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "world_size must be")
end

-- The classes are named TestZDist* so that LuaUnit (which runs classes in name order) runs
-- them after every other suite, and each test ends with a full collection: the process
-- launches and their output change the heap that later suites' collector timing depends
-- on (test_optim_contract's hostile-finalizer test needs a collection to finish inside a
-- step, and failed 1 run in 3 when these ran before it).
for _, class in ipairs{TestZDistData, TestZDistCollectives, TestZDistDataParallel, TestZDistFailure,
                       TestZDistCheckpoint} do
  class.tearDown = function() collectgarbage() collectgarbage() end
end

-- shard_state without MPI running: a named error (needs the C module, not mpirun)
function TestZDistCollectives.test_shard_state_needs_init()
  local ok, err = pcall(mo.optim.AdamW, mo.nn.Linear(2, 2):parameters(), {shard_state = true})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "AdamW: shard_state = true needs MPI running (call dist.init() first)")
end

local classes = {TestZDistData = TestZDistData}
local ok, why = have_mpi()
if ok then
  classes.TestZDistCollectives = TestZDistCollectives
  classes.TestZDistDataParallel = TestZDistDataParallel
  classes.TestZDistFailure = TestZDistFailure
  classes.TestZDistCheckpoint = TestZDistCheckpoint
else
  io.stderr:write("test_dist: MPI tests not run (" .. why .. ")\n")
end
return classes
