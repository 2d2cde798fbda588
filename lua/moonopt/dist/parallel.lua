--- moonopt.dist.parallel: dist.DataParallel (loaded by moonopt.dist; docs/distributed.md).
--
--   local ddp = dist.DataParallel(model [, {bucket_mb = 1, ordered = true}])
--
-- Wraps a model whose parameters are views into one flat buffer (every moonopt.nn model:
-- see moonopt.nn.module, "Flat parameters"). At wrap time rank 1's parameters are
-- broadcast, so every rank starts from the same weights. ddp:backward(...) runs the
-- model's backward and leaves in the flat gradient buffer the MEAN over ranks of every
-- rank's gradient: the buffer is cut into buckets of bucket_mb MiB from its end, and each
-- bucket's sum is started with a non-blocking all-reduce as soon as its gradients are
-- final: the rank-order sum of moonopt.dist_core (every element added in rank order, so a
-- ZeRO-1 run is bit for bit the same), or with ordered = false MPI_Iallreduce (MPI's
-- order; faster at 3+ ranks on one machine). For a model with a `modules` list
-- (Sequential) that is while backward still runs: the children's backward run last to
-- first, and the flat layout keeps the children in order, so once child i is done every
-- gradient from child i's first parameter to the end is final. Between children the
-- pending requests are moved on (progress), which is what lets Open MPI (no progress
-- thread by default) advance them. Backward ends by waiting for every bucket and dividing
-- by the number of ranks.
--
-- Gradient accumulation: ddp:set_sync(false) makes backward purely local (gradients keep
-- adding up); set_sync(true) before the last micro-batch's backward reduces the
-- accumulated sum once. mo.train.fit does this itself with `accumulate`.
local apierror = require "moonopt.apierror"

local fail, show, api = apierror.fail, apierror.show, apierror.api

return function(dist, mpi)
  local DataParallel = {}
  DataParallel.__name = "moonopt.dist.DataParallel"
  DataParallel._is_data_parallel = true

  -- Methods of the model that take it as self (ddp:parameters() is model:parameters()).
  local PASS = {"parameters", "named_parameters", "flat_parameters", "num_parameters", "zero_grad",
                "state_dict", "load_state_dict", "children", "extra_repr"}
  for _, name in ipairs(PASS) do
    DataParallel[name] = function(self, ...) return self.module[name](self.module, ...) end
  end

  function DataParallel:train(mode)
    self.module:train(mode)
    return self
  end

  function DataParallel:evaluate()
    self.module:evaluate()
    return self
  end
  DataParallel.eval = DataParallel.evaluate

  function DataParallel:forward(...)
    return self.module:forward(...)
  end

  -- Buckets (0-based first, count) over n elements, from the end of the buffer: the last
  -- layers' gradients are final first.
  local function make_buckets(n, size)
    local b, hi = {}, n
    while hi > 0 do
      local lo = math.max(0, hi - size)
      b[#b + 1] = {lo, hi - lo}
      hi = lo
    end
    return b
  end

  -- Starts every bucket that lies at or above element `from` (0-based) and is not started.
  local function launch(self, from)
    local bs, reqs = self._buckets, self._reqs
    local i = #reqs + 1
    while bs[i] and bs[i][1] >= from do
      reqs[i] = mpi.iall_reduce(self._fg, bs[i][1], bs[i][2], self._ordered)
      i = i + 1
    end
    -- lets MPI move the running ones on; in start order, stopping at the first whose parts
    -- are still being exchanged, so every rank starts the gathers in the same order
    for j = 1, #reqs do
      if reqs[j]:progress() == 1 then break end
    end
  end

  -- child -> its first element (0-based) in the flat buffer, for a model whose `modules`
  -- list holds its parameters in order (Sequential); nil otherwise (no overlap then).
  local function child_starts(model, total)
    local mods = model.modules
    if type(mods) ~= "table" then return nil end
    local starts, off = {}, 0
    for _, m in ipairs(mods) do
      if starts[m] then return nil end  -- a module used twice: its gradient is final later
      local n = m.num_parameters and m:num_parameters() or 0
      if n > 0 then starts[m] = off end
      off = off + n
    end
    if off ~= total then return nil end
    return starts
  end

  -- Makes each child's backward start the buckets its gradients complete, while this
  -- DataParallel's backward runs (outside it, the child behaves as before).
  local function hook_children(self, starts)
    for m, first in pairs(starts) do
      local inner = m.backward
      m.backward = function(mod, ...)
        local gi = inner(mod, ...)
        if self._in_backward then launch(self, first) end
        return gi
      end
    end
  end

  --- backward(x, grad_output [, need_grad_input]): the model's backward, then (when
  -- sync is on, the default) the mean over ranks of the flat gradient buffer.
  function DataParallel:backward(x, g, need)
    if not self._sync or self._size == 1 or self:_left_to_optimizer() then
      return self.module:backward(x, g, need)
    end
    self._reqs = {}
    self._in_backward = true
    local ok, gi = pcall(self.module.backward, self.module, x, g, need)
    self._in_backward = false
    if not ok then
      -- the started reductions still end (every rank takes part), then the error goes on
      for _, r in ipairs(self._reqs) do r:wait() end
      error(gi, 0)
    end
    launch(self, 0)
    local fg, n = self._fg, self._size
    for i, r in ipairs(self._reqs) do
      r:wait()
      local b = self._buckets[i]
      fg:narrow(1, b[1] + 1, b[2]):div_(n)
    end
    self._reqs = {}
    self.reductions = self.reductions + 1
    return gi
  end

  -- Whether a sharded optimizer (shard_state = true) owns the parameters: its step
  -- reduce-scatters the gradients itself, so backward stays local.
  function DataParallel:_left_to_optimizer()
    local zero = package.loaded["moonopt.dist.zero"]
    return zero ~= nil and self._first ~= nil and zero.sharded[self._first] == true
  end

  --- set_sync(on): whether backward averages the gradients (false for all but the last
  -- micro-batch of an accumulated step). Returns the DataParallel.
  function DataParallel:set_sync(on)
    if type(on) ~= "boolean" then fail("DataParallel:set_sync: on must be a boolean, got %s", show(on)) end
    self._sync = on
    return self
  end
  DataParallel.set_sync = api(DataParallel.set_sync)

  function DataParallel:__call(...)
    return self:forward(...)
  end

  function DataParallel:__tostring()
    return "DataParallel(" .. tostring(self.module) .. ")"
  end

  -- Fields and other methods come from the model (a model method called on the
  -- DataParallel gets the model as self).
  function DataParallel.__index(self, k)
    local v = DataParallel[k]
    if v ~= nil then return v end
    local m = rawget(self, "module")
    v = m[k]
    if type(v) == "function" then
      return function(s, ...)
        if rawequal(s, self) then s = m end
        return v(s, ...)
      end
    end
    return v
  end

  local known = {bucket_mb = true, ordered = true}
  local function new(model, opts)
    opts = apierror.check_options("DataParallel", opts, known)
    if type(model) ~= "table" or type(model.flat_parameters) ~= "function"
       or type(model.backward) ~= "function" then
      fail("DataParallel: model must be a moonopt.nn module (with flat parameters), got %s", show(model))
    end
    local mb = opts.bucket_mb or 1
    if type(mb) ~= "number" or mb ~= mb or mb <= 0 or mb == math.huge then
      fail("DataParallel: bucket_mb must be a positive number, got %s", show(mb))
    end
    if opts.ordered ~= nil and type(opts.ordered) ~= "boolean" then
      fail("DataParallel: ordered must be a boolean, got %s", show(opts.ordered))
    end
    local size = dist.size()
    local fp, fg = model:flat_parameters()
    dist.broadcast_(fp, 1)
    local self = setmetatable({module = model, _fg = fg, _size = size, _sync = true, _reqs = {},
                               _in_backward = false, reductions = 0, _ordered = opts.ordered ~= false},
                          DataParallel)
    self._first = model:parameters()[1]
    local elems = math.max(1, math.floor(mb * 1048576 / 4))
    self._buckets = make_buckets(fg:numel(), elems)
    local starts = child_starts(model, fg:numel())
    if starts and size > 1 then hook_children(self, starts) end
    self.overlaps = starts ~= nil
    return self
  end

  return api(new)
end
