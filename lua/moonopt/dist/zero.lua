--- moonopt.dist.zero: ZeRO-1, the optimizer option `shard_state = true` (docs/distributed.md
-- "ZeRO-1"). Loaded by moonopt.optim.optimizer only when an optimizer asks for it.
--
-- Every rank keeps and updates 1/N of the optimizer state. The parameters of all groups,
-- in order, are laid end to end (n elements) and split as dist.shard_range splits n; a
-- rank's shard is a set of 1-d views of the parameters it covers (a parameter may be cut
-- between two ranks). One step:
--   1. every local gradient is copied into a staging buffer of n floats (its layout);
--   2. reduce-scatter (sum) of the buffer: this rank's part holds the summed gradient, then
--      divided by N: the mean DataParallel would have computed, element for element;
--   3. the ranks agree on whether any part is non-finite (one 1-integer all-reduce), so all
--      of them skip or raise together;
--   4. core.optim_step steps the shard views with the buffer's part as their gradients
--      (its `grads` argument): the state it creates is shaped as the views, 1/N of it;
--   5. the shard's new values go into the buffer, an in-place all-gather gives every rank
--      every part, and they are copied back into the parameters.
-- Elementwise optimizers (each element's update depends only on that element) split the
-- elements evenly. LAMB's trust ratio needs the norms of whole tensors, so its parts are
-- whole tensors instead (per_tensor_layout below): the kernel then runs on exactly the
-- tensors and gradients of an unsharded run, bit for bit, with no change to the kernel.
-- ScheduleFreeAdamW's eval()/train() move each shard's params with its state and then
-- gather the params (gather_params). L-BFGS is refused: its step is a line search over
-- the whole flat parameter vector with a closure that re-evaluates the loss.
-- DataParallel sees the parameters in `sharded` and leaves the reduction to step().
-- Memory beyond the unsharded run: the staging buffer (n floats), against a saving of
-- (N-1)/N of the state (Adam: 2n floats).
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
-- every function below writes into the params or reads them into buffers as an optimizer
-- step does: under grad mode off (views of params would otherwise record)
local no_grad = require("moonopt.autograd.engine").no_grad

local fail = apierror.fail

local M = {}

-- param -> true for the parameters of a sharded optimizer (weak keys).
local sharded = setmetatable({}, {__mode = "k"})
M.sharded = sharded

local ELEMENTWISE = {sgd = true, adam = true, rmsprop = true, adagrad = true, adadelta = true,
                     adamax = true, nadam = true, radam = true, lion = true, sfadamw = true}
-- kernels whose update of a tensor needs all of it (LAMB's norms): whole tensors per rank
local PER_TENSOR = {lamb = true}

-- Whole tensors per rank for a per-tensor kernel: largest first, each to the rank holding
-- the fewest elements so far (the lowest rank on a tie), as PyTorch's ZeroRedundancyOptimizer
-- assigns them; then the staging buffer is laid out rank by rank (each rank's tensors in
-- their order), so every part is contiguous. Sets each entry's `off`; returns the per-rank
-- counts. The balance depends on the sizes: a tensor larger than n / N is a part alone.
local function per_tensor_layout(entries, size)
  local order = {}
  for i = 1, #entries do order[i] = i end
  table.sort(order, function(a, b)
    local na, nb = entries[a].numel, entries[b].numel
    if na ~= nb then return na > nb end
    return a < b
  end)
  local counts, owner = {}, {}
  for r = 1, size do counts[r] = 0 end
  for _, i in ipairs(order) do
    local best = 1
    for r = 2, size do if counts[r] < counts[best] then best = r end end
    owner[i] = best
    counts[best] = counts[best] + entries[i].numel
  end
  local off = 0
  for r = 1, size do
    for i, e in ipairs(entries) do
      if owner[i] == r then e.off, off = off, off + e.numel end
    end
  end
  return counts
end

-- The params of every group, in order, as {p =, gi =, j =, off =, numel =}.
local function entries_of(self)
  local out, n, dtype = {}, 0, nil
  for gi, g in ipairs(self.param_groups) do
    for j, p in ipairs(g.params) do
      if not p:is_contiguous() then
        fail("%s: shard_state: parameter %d of group %d is not contiguous", self.name, j, gi)
      end
      dtype = dtype or p.dtype
      if p.dtype ~= dtype then
        fail("%s: shard_state: parameter %d of group %d is %s, the first is %s (one dtype per optimizer)",
             self.name, j, gi, p.dtype, dtype)
      end
      out[#out + 1] = {p = p, gi = gi, j = j, off = n, numel = p:numel()}
      n = n + p:numel()
    end
  end
  return out, n, dtype
end

-- The shard's views of the parameters, per group: {params =, grads =, offs =, js =}.
local function build(self, z)
  local entries, n, dtype = entries_of(self)
  local first, count
  if PER_TENSOR[self.spec.kernel] then
    local size, rank = z.dist.size(), z.dist.rank()
    z.counts = per_tensor_layout(entries, size)
    first, count = 0, z.counts[rank]
    for r = 1, rank - 1 do first = first + z.counts[r] end
  else
    first, count = z.dist.shard_range(n)
    first = first - 1
  end
  local buf = core.zeros(n, {dtype = dtype or "float32"})
  local shadow = {}
  for gi = 1, #self.param_groups do shadow[gi] = {params = {}, grads = {}, offs = {}, js = {}, ents = {}} end
  for _, e in ipairs(entries) do
    sharded[e.p] = true
    local lo, hi = math.max(e.off, first), math.min(e.off + e.numel, first + count)
    if hi > lo then
      local sh = shadow[e.gi]
      local k = #sh.params + 1
      sh.params[k] = e.p:view(-1):narrow(1, lo - e.off + 1, hi - lo)
      sh.grads[k] = buf:narrow(1, lo + 1, hi - lo)
      sh.offs[k], sh.js[k], sh.ents[k] = lo, e.j, e
      e.views = e.views or {}
      e.views[#e.views + 1] = sh.params[k]
    end
  end
  z.entries, z.n, z.count, z.buf, z.shadow = entries, n, count, buf, shadow
  z.own = count > 0 and buf:narrow(1, first + 1, count) or nil
  z.nparams = #entries
end

--- attach(opt): checks that opt can shard and prepares it (the layout is made at the first
-- step, when every group is known).
function M.attach(self)
  local kernel = self.spec.kernel
  if not ELEMENTWISE[kernel] and not PER_TENSOR[kernel] then
    fail("%s: shard_state = true is not supported: its step is a line search over all the "
         .. "parameters at once (see docs/distributed.md \"ZeRO-1\")", self.name)
  end
  local ok, dist = pcall(require, "moonopt.dist")
  if not ok then fail("%s: shard_state = true needs moonopt.dist: %s", self.name, tostring(dist)) end
  if not dist.initialized() then
    fail("%s: shard_state = true needs MPI running (call dist.init() first)", self.name)
  end
  local z = {dist = dist, mpi = require "moonopt.dist_core"}
  self._zero = z
  -- the parameters are marked now, so a DataParallel backward before the first step
  -- already leaves the reduction to the optimizer
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do sharded[p] = true end
  end
  return z
end

-- Step 5: the shard's values into the buffer, the parts gathered, copied into the params.
local function gather(z)
  local buf = z.buf
  for _, sh in ipairs(z.shadow) do
    for i, v in ipairs(sh.params) do buf:narrow(1, sh.offs[i] + 1, v:numel()):copy_(v) end
  end
  z.mpi.all_gather_parts(buf, z.counts)
  for _, e in ipairs(z.entries) do e.p:view(-1):copy_(buf:narrow(1, e.off + 1, e.numel)) end
end

-- Steps 1 to 3 of the top of this file; false when some rank's part is not finite.
local function reduce(z)
  local buf = z.buf
  for _, e in ipairs(z.entries) do
    local g, dst = e.p.grad, buf:narrow(1, e.off + 1, e.numel)
    if g ~= nil then dst:view(e.p:shape()):copy_(g) else dst:zero_() end
  end
  z.mpi.reduce_scatter(buf, "sum", z.counts)
  local size = z.dist.size()
  if z.own and size > 1 then z.own:div_(size) end
  local bad = (z.own and not core.all_finite(z.own)) and 1 or 0
  local _, any = z.mpi.agree(bad)
  return any == 0
end

-- The groups, gradients and masks of the shard for core.optim_step: the real groups'
-- options (read each step: a schedule changes lr), the shard views of the params that
-- have a gradient.
local function shard_groups(self, z, masks)
  local groups, grads, smasks = {}, {}, masks and {} or nil
  for gi, g in ipairs(self.param_groups) do
    local sg = {}
    for k, v in pairs(g) do
      if k ~= "params" and k ~= "names" then sg[k] = v end
    end
    local sh, ps, gs, m = z.shadow[gi], {}, {}, nil
    for i, v in ipairs(sh.params) do
      local j = sh.js[i]
      if g.params[j].grad ~= nil then
        ps[#ps + 1], gs[#gs + 1] = v, sh.grads[i]
        if masks and masks[gi] and masks[gi][j] then
          m = m or {}
          m[#ps] = true
        end
      end
    end
    sg.params = ps
    groups[gi], grads[gi] = sg, gs
    if smasks then smasks[gi] = m end
  end
  return groups, grads, smasks
end

-- The layout, made when first needed and again when the groups' params changed (a param
-- group added: the state of the old parts is then lost).
local function ensure(self, z)
  local count = 0
  for _, g in ipairs(self.param_groups) do count = count + #g.params end
  if z.buf == nil or z.nparams ~= count then build(self, z) end
end

--- step(opt, masks) -> stepped: one sharded step (the top of this file). Raises (on every
-- rank) a non-finite gradient unless opt.skip_nonfinite, which skips on every rank.
local function step_(self, masks)
  local z = self._zero
  ensure(self, z)
  if not reduce(z) then
    if self.skip_nonfinite then return false end
    fail("%s: step: a gradient holds NaN or infinity (found after the reduce-scatter of shard_state)",
         self.name)
  end
  local groups, grads, smasks = shard_groups(self, z, masks)
  local ok, err = pcall(core.optim_step, self.spec.kernel, self.name, groups, self.state, false, smasks,
                        grads)
  if not ok then
    -- this rank cannot go on: the others would wait in the all-gather, so end the job
    io.stderr:write(tostring(err), "\n")
    z.dist.abort(1)
  end
  gather(z)
  return true
end
function M.step(self, masks) return no_grad(step_, self, masks) end

--- shard_params(opt, gi) -> this rank's views of group gi's params (ScheduleFreeAdamW's
-- eval()/train() move these with their state).
local function shard_params_(self, gi)
  local z = self._zero
  ensure(self, z)
  return z.shadow[gi].params
end
function M.shard_params(self, gi) return no_grad(shard_params_, self, gi) end

--- gather_params(opt): every rank's parts of the params into every rank's params (a
-- collective), after the shards moved.
local function gather_params_(self)
  local z = self._zero
  ensure(self, z)
  gather(z)
end
function M.gather_params(self) return no_grad(gather_params_, self) end

-- ---- checkpoints: the whole state gathered (save), this rank's part kept (load) ----------
-- Why gathered: a checkpoint of a sharded run is then the same file as an unsharded run's,
-- written whole by one rank through mo.save's atomic rename (no manifest of per-rank files
-- that a failure could leave half-replaced), and it loads at any world size, sharded or not.
-- The cost: the full state passes through every rank's memory during a save.

-- The names a state of this kernel holds: numbers (step, scalars) and buffers (tensors).
local function state_names(self)
  local info = core.optim_info(self.spec.kernel)
  local nums, bufs = {}, {}
  if info.counts_steps then nums[1] = "step" end
  for _, sc in ipairs(info.scalars) do nums[#nums + 1] = sc.name end
  for _, b in ipairs(info.buffers) do bufs[#bufs + 1] = b.name end
  return nums, bufs
end

-- This rank's state of one of e's parts (all parts of a param step together), or nil.
local function local_state(self, e)
  for _, v in ipairs(e.views or {}) do
    local st = self.state[v]
    if st then return st end
  end
  return nil
end

--- full_state(opt) -> {[param] = state}: every rank's parts joined (a collective: every
-- rank calls it, in opt:state_dict()). Numbers go through one all-reduce of doubles (max;
-- -inf for "not here"), each buffer through one in-place all-gather of the staging buffer.
local function full_state_(self)
  local z = self._zero
  ensure(self, z)
  local nums, bufs = state_names(self)
  local K = #nums + #bufs
  local vals = {}
  for ei, e in ipairs(z.entries) do
    local st, base = local_state(self, e), (ei - 1) * K
    for k, name in ipairs(nums) do
      local v = st and st[name]
      vals[base + k] = type(v) == "number" and v or -math.huge
    end
    for k, name in ipairs(bufs) do vals[base + #nums + k] = (st and core.is_tensor(st[name])) and 1 or 0 end
  end
  vals = z.mpi.reduce_numbers(vals, "max")
  local full = {}
  local function state_of(p)
    local st = full[p]
    if st == nil then st = {}; full[p] = st end
    return st
  end
  local buf = z.buf   -- free between steps
  for bi, name in ipairs(bufs) do
    buf:zero_()
    for _, sh in ipairs(z.shadow) do
      for i, v in ipairs(sh.params) do
        local st = self.state[v]
        if st and core.is_tensor(st[name]) then buf:narrow(1, sh.offs[i] + 1, v:numel()):copy_(st[name]) end
      end
    end
    z.mpi.all_gather_parts(buf, z.counts)
    for ei, e in ipairs(z.entries) do
      if vals[(ei - 1) * K + #nums + bi] == 1 then
        state_of(e.p)[name] = buf:narrow(1, e.off + 1, e.numel):clone():view(e.p:shape())
      end
    end
  end
  for ei, e in ipairs(z.entries) do
    for k, name in ipairs(nums) do
      local v = vals[(ei - 1) * K + k]
      if v ~= -math.huge then state_of(e.p)[name] = math.tointeger(v) or v end
    end
  end
  return full
end
function M.full_state(self) return no_grad(full_state_, self) end

--- shard_state(opt, full) -> this rank's state: each param's state (checked by
-- load_state_dict against the whole param) cut to this rank's parts. No communication, so
-- a checkpoint loads at any world size.
local function shard_state_(self, full)
  local z = self._zero
  ensure(self, z)
  local out = {}
  for _, sh in ipairs(z.shadow) do
    for i, v in ipairs(sh.params) do
      local e = sh.ents[i]
      local st = full[e.p]
      if st then
        local part, first = {}, sh.offs[i] - e.off
        for k, x in pairs(st) do
          if core.is_tensor(x) then
            part[k] = x:contiguous():view(-1):narrow(1, first + 1, v:numel()):clone()
          else
            part[k] = x
          end
        end
        out[v] = part
      end
    end
  end
  return out
end
function M.shard_state(self, full) return no_grad(shard_state_, self, full) end

return M
