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
-- So only elementwise optimizers can shard (each element's update depends only on that
-- element): LAMB, whose trust ratio needs whole-tensor norms, L-BFGS, and ScheduleFreeAdamW
-- (its eval()/train() rewrite every parameter from the state) are refused.
-- DataParallel sees the parameters in `sharded` and leaves the reduction to step().
-- Memory beyond the unsharded run: the staging buffer (n floats), against a saving of
-- (N-1)/N of the state (Adam: 2n floats).
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"

local fail = apierror.fail

local M = {}

-- param -> true for the parameters of a sharded optimizer (weak keys).
local sharded = setmetatable({}, {__mode = "k"})
M.sharded = sharded

local ELEMENTWISE = {sgd = true, adam = true, rmsprop = true, adagrad = true, adadelta = true,
                     adamax = true, nadam = true, radam = true, lion = true}

-- The params of every group, in order, as {p =, gi =, j =, off =, numel =}.
local function entries_of(self)
  local out, n = {}, 0
  for gi, g in ipairs(self.param_groups) do
    for j, p in ipairs(g.params) do
      if not p:is_contiguous() then
        fail("%s: shard_state: parameter %d of group %d is not contiguous", self.name, j, gi)
      end
      out[#out + 1] = {p = p, gi = gi, j = j, off = n, numel = p:numel()}
      n = n + p:numel()
    end
  end
  return out, n
end

-- The shard's views of the parameters, per group: {params =, grads =, offs =, js =}.
local function build(self, z)
  local entries, n = entries_of(self)
  local first, count = z.dist.shard_range(n)
  first = first - 1
  local buf = core.zeros(n)
  local shadow = {}
  for gi = 1, #self.param_groups do shadow[gi] = {params = {}, grads = {}, offs = {}, js = {}} end
  for _, e in ipairs(entries) do
    sharded[e.p] = true
    local lo, hi = math.max(e.off, first), math.min(e.off + e.numel, first + count)
    if hi > lo then
      local sh = shadow[e.gi]
      local k = #sh.params + 1
      sh.params[k] = e.p:view(-1):narrow(1, lo - e.off + 1, hi - lo)
      sh.grads[k] = buf:narrow(1, lo + 1, hi - lo)
      sh.offs[k], sh.js[k] = lo, e.j
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
  if not ELEMENTWISE[kernel] then
    fail("%s: shard_state = true needs an elementwise optimizer (LAMB, L-BFGS and "
         .. "ScheduleFreeAdamW are not; see docs/distributed.md)", self.name)
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

-- Steps 1 to 3 of the top of this file; false when some rank's part is not finite.
local function reduce(z)
  local buf = z.buf
  for _, e in ipairs(z.entries) do
    local g, dst = e.p.grad, buf:narrow(1, e.off + 1, e.numel)
    if g ~= nil then dst:view(e.p:shape()):copy_(g) else dst:zero_() end
  end
  z.mpi.reduce_scatter(buf, "sum")
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

--- step(opt, masks) -> stepped: one sharded step (the top of this file). Raises (on every
-- rank) a non-finite gradient unless opt.skip_nonfinite, which skips on every rank.
function M.step(self, masks)
  local z = self._zero
  local count = 0
  for _, g in ipairs(self.param_groups) do count = count + #g.params end
  if z.buf == nil or z.nparams ~= count then build(self, z) end
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
  local buf = z.buf
  for _, sh in ipairs(z.shadow) do
    for i, v in ipairs(sh.params) do buf:narrow(1, sh.offs[i] + 1, v:numel()):copy_(v) end
  end
  z.mpi.all_gather_parts(buf)
  for _, e in ipairs(z.entries) do e.p:view(-1):copy_(buf:narrow(1, e.off + 1, e.numel)) end
  return true
end

return M
