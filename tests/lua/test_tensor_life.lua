-- Lifetimes: views outlive a collected base, <close> and hand-called __gc free a
-- tensor and every view of it (which then raise "tensor has been freed" everywhere),
-- .grad lives as long as its parameter, and tensor memory paces the garbage collector.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
local core = require "moonopt.core"

local function full_gc()
  collectgarbage()
  collectgarbage()
end

local FREED = "tensor has been freed"

-- every method of the tensor API with arguments that would be valid for a live {2, 2} tensor
local function method_calls(other)
  return {
    shape = {}, size = {1}, stride = {}, numel = {}, dim = {}, is_contiguous = {},
    same_storage = {other}, get = {1, 1}, set = {1, 1, 0}, item = {}, totable = {},
    fill = {1}, fill_ = {1}, zero_ = {}, copy = {other}, copy_ = {other}, clone = {},
    contiguous = {}, view = {4}, reshape = {4}, narrow = {1, 1, 1}, transpose = {1, 2}, t = {},
    select = {1, 1}, add = {1}, add_ = {other}, sub = {1}, sub_ = {1}, mul = {other}, mul_ = {1},
    div = {1}, div_ = {1}, neg = {}, neg_ = {}, sqrt = {}, sqrt_ = {}, exp = {}, exp_ = {},
    log = {}, log_ = {}, tanh = {}, tanh_ = {}, sigmoid = {}, sigmoid_ = {}, relu = {},
    relu_ = {}, abs = {}, abs_ = {}, sign = {}, sign_ = {}, pow = {2}, pow_ = {2},
    clamp = {0, 1}, clamp_ = {0, 1}, addcmul = {1, other, other}, addcmul_ = {1, other, other},
    addcdiv = {1, other, other}, addcdiv_ = {1, other, other},
    add_row_bias = {mo.zeros(2)}, add_row_bias_ = {mo.zeros(2)},
    sum = {}, mean = {}, max = {}, min = {}, argmax = {1}, dot = {other}, norm = {},
    matmul = {other}, uniform_ = {}, normal_ = {},
  }
end

local TestTensorLife = {}

function TestTensorLife.test_view_outlives_collected_base()
  local weak = setmetatable({}, {__mode = "v"})
  local v, t
  do
    local base = mo.arange(6)
    weak[1] = base
    v = base:narrow(1, 2, 3)
    t = base:view(2, 3):t()
  end
  full_gc()
  lu.assertNil(weak[1], "the base was collected")
  lu.assertEquals(v:totable(), {2, 3, 4})
  lu.assertEquals(t:totable(), {{1, 4}, {2, 5}, {3, 6}})
  v:set(1, 20)
  lu.assertEquals(t:get(2, 1), 20)          -- the two views still share the storage
end

-- t:__gc() frees the storage: every view of it (views of views, the tensor a view was
-- taken from) raises from then on, instead of keeping the memory alive (docs/api.md)
function TestTensorLife.test_views_of_a_freed_tensor_raise()
  local base = mo.arange(6)
  local v = base:view(2, 3)
  local vv = v:t():narrow(1, 2, 2)
  local s = base:narrow(1, 2, 3)
  local other = mo.arange(6)
  base:__gc()
  fails(FREED, base.sum, base)
  fails(FREED, v.sum, v)
  fails(FREED, vv.totable, vv)
  fails(FREED, function() return s:get(1) end)
  fails(FREED, function() return v:view(6) end)
  fails(FREED, function() return other:add_(s) end)
  lu.assertEquals(tostring(vv), "moonopt.Tensor (freed)")
  lu.assertEquals(other:sum():item(), 21)
  -- freeing a view frees what it views
  local b2 = mo.ones(4)
  local w = b2:view(2, 2)
  w:__gc()
  fails(FREED, b2.sum, b2)
  -- <close> likewise
  local kept
  do
    local c <close> = mo.ones(3)
    kept = c:narrow(1, 1, 2)
  end
  fails(FREED, kept.sum, kept)
end

-- The collector's finalizer is not t:__gc(): it drops one handle, and views keep working.
function TestTensorLife.test_the_collector_only_drops_one_handle()
  local base = mo.arange(4)
  local v = base:view(2, 2)
  getmetatable(base).__gc(base)
  fails(FREED, base.sum, base)
  lu.assertEquals(v:sum():item(), 10)
end

function TestTensorLife.test_close_variable()
  local escaped
  do
    local t <close> = mo.zeros(3)
    t:fill(2)
    lu.assertEquals(t:sum():item(), 6)
    escaped = t
  end
  fails(FREED, function() return escaped:sum():item() end)
  lu.assertEquals(tostring(escaped), "moonopt.Tensor (freed)")
  -- also when the block is left by an error
  local ok = pcall(function()
    local t <close> = mo.ones(2)
    escaped = t
    error("boom")
  end)
  lu.assertFalse(ok)
  fails(FREED, function() return escaped:numel() end)
end

function TestTensorLife.test_gc_by_hand_twice_is_safe()
  local t = mo.ones(2, 2)
  t:__gc()
  t:__gc()
  getmetatable(t).__gc(t)
  getmetatable(t).__close(t, nil)
  t:__close()
  lu.assertTrue(mo.is_tensor(t))
  lu.assertEquals(tostring(t), "moonopt.Tensor (freed)")
  full_gc()                                 -- the real finalizer later is harmless too
end

function TestTensorLife.test_every_method_raises_on_a_freed_tensor()
  local t = mo.ones(2, 2)
  getmetatable(t).__gc(t)
  local other = mo.ones(2, 2)
  for name, args in pairs(method_calls(other)) do
    lu.assertEquals(type(t[name]), "function", name)
    fails(FREED, function() return t[name](t, table.unpack(args)) end)
  end
  fails(FREED, function() return #t end)
  fails(FREED, function() return t + 1 end)
  fails(FREED, function() return 1 - t end)
  fails(FREED, function() return other * t end)
  fails(FREED, function() return -t end)
  fails(FREED, function() return t.grad end)
  fails(FREED, function() t.grad = nil end)
  lu.assertEquals(other:sum():item(), 4)
end

function TestTensorLife.test_freed_tensor_as_an_argument()
  local a = mo.ones(2, 2)
  local dead = mo.ones(2, 2)
  dead:__gc()
  fails(FREED, function() return a:add(dead) end)
  fails(FREED, function() return a:add_(dead) end)
  fails(FREED, function() return a:copy(dead) end)
  fails(FREED, function() return a + dead end)
  fails(FREED, function() return a:addcmul_(1, a, dead) end)
  fails(FREED, function() return mo.matmul(a, dead) end)
  fails(FREED, function() return mo.matmul(a, a, {out = dead}) end)
  fails(FREED, function() return core.norm_many{a, dead} end)
  fails(FREED, function() return mo.tensor(dead) end)
  fails(FREED, function() a.grad = dead end)
  lu.assertEquals(a:sum():item(), 4)
  lu.assertNil(a.grad)
end

function TestTensorLife.test_grad_is_kept_alive_by_its_parameter()
  local weak = setmetatable({}, {__mode = "v"})
  local p = mo.zeros(3)
  lu.assertNil(p.grad)
  do
    local g = mo.ones(3)
    p.grad = g
    weak[1] = g
  end
  full_gc()
  lu.assertNotNil(weak[1])
  lu.assertIs(p.grad, weak[1])
  lu.assertEquals(p.grad:sum():item(), 3)
  -- a view of a parameter has its own (empty) .grad
  lu.assertNil(p:view(3).grad)
  p.grad = nil
  full_gc()
  lu.assertNil(weak[1])
  lu.assertNil(p.grad)
end

function TestTensorLife.test_freeing_a_parameter_drops_its_grad()
  local weak = setmetatable({}, {__mode = "v"})
  local p = mo.zeros(2)
  p.grad = mo.ones(2)
  weak[1] = p.grad
  p:__gc()
  full_gc()
  lu.assertNil(weak[1])
end

function TestTensorLife.test_grad_may_be_a_view()
  local flat = mo.zeros(6)
  local p = mo.zeros(2, 3)
  p.grad = flat:view(2, 3)
  p.grad:fill(1)
  lu.assertEquals(flat:sum():item(), 6)
end

function TestTensorLife.test_tensor_memory_paces_the_collector()
  -- ~400 MB of 1 MB temporaries: the collector must run long before that
  -- piles up. (Skipped under ASan, whose quarantine keeps freed blocks.)
  local preload = os.getenv("LD_PRELOAD") or ""
  local f = io.open("/proc/self/statm")
  if preload:find("asan") or not f then
    if f then f:close() end
    return
  end
  local function rss_mb()
    local h = assert(io.open("/proc/self/statm"))
    local _, rss = h:read("n", "n")
    h:close()
    return rss * 4096 / 2 ^ 20
  end
  f:close()
  full_gc()
  local before = rss_mb()
  for _ = 1, 400 do
    local t = mo.zeros(256 * 1024)
    t:add_(1)
  end
  local grown = rss_mb() - before
  lu.assertTrue(grown < 150, string.format("RSS grew by %.0f MB", grown))

  -- chains of large temporaries that are still referenced when the next one is made:
  -- reported one by one, each tensor started a minor cycle in generational mode, the
  -- temporaries turned old and ~230 of them (900 MB here) waited for a major cycle
  local mode = collectgarbage("generational")
  full_gc()
  before = rss_mb()
  local x = mo.ones(1024, 1024)
  for _ = 1, 120 do
    local y = x:add(1):mul(2):sub(x):abs():sqrt()
    lu.assertAlmostEquals(y:get(1, 1), math.sqrt(3), 1e-6)
  end
  grown = rss_mb() - before
  collectgarbage(mode)
  lu.assertTrue(grown < 250, string.format("RSS grew by %.0f MB with 4 MB temporaries", grown))
end

return {TestTensorLife = TestTensorLife}
