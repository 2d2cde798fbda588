-- tests/lua/test_fuzz_api.lua - hostile input across the whole Lua API.
--
-- Every public function of mo (the C module's functions, the tensor methods) and of
-- mo.nn, mo.optim, mo.sched, mo.data, mo.plot, mo.train, mo.progress, mo.json and the
-- checkpoint functions, every class constructor, and every method of an instance of
-- each class (modules, losses, optimizers, schedules, a loader, a plot, a progress bar)
-- is called many times with argument lists drawn from a pool of bad values: nil,
-- booleans, NaN, +-inf, negative and huge numbers (2^53, 2^63, maxinteger), 0, odd
-- strings, empty and nested tables, option tables with bad values, tables whose fields
-- raise, functions that raise, finalized tensors (after t:__gc()), foreign userdata (a
-- file handle, a closed one, a coroutine), and some valid tensors so calls get past the
-- first check. The test passes when the process survives (it also runs under ASan and
-- UBSan in `make check`) and every call that fails raises a string.
--
-- Deterministic: the argument lists come from a fixed linear congruential sequence, and
-- functions are visited in name order. Bounded: CALLS lists per function (fewer under
-- sanitizers). MOONOPT_FUZZ_TRACE=1 prints every call to stderr before making it (to
-- find the call that crashed), MOONOPT_FUZZ_CALLS=n overrides CALLS, MOONOPT_FUZZ_SEED=n the sequence.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) ~= nil or os.getenv("SANITIZE") == "1"
local CALLS = tonumber(os.getenv("MOONOPT_FUZZ_CALLS") or "") or (sanitized and 10 or 30)
local TRACE = os.getenv("MOONOPT_FUZZ_TRACE") == "1"

-- ---------------------------------------------------------------------------
-- deterministic choices (math.random's state is left alone)

local lcg = tonumber(os.getenv("MOONOPT_FUZZ_SEED") or "") or 12345
local function pick(n)
  lcg = (lcg * 1103515245 + 12345) % 2147483648
  return (lcg >> 8) % n + 1
end

local NIL = setmetatable({}, {__tostring = function() return "nil" end})

local tmpdir
local function tmp_path(k)
  return tmpdir .. "/f" .. k
end

-- foreign userdata: an open and a closed file handle (made once)
local open_file, closed_file
local function files()
  if not open_file then
    open_file = io.tmpfile()
    closed_file = io.tmpfile()
    closed_file:close()
  end
  return open_file, closed_file
end

-- A fresh pool for each call: calls may free or change its tensors and tables.
local function make_pool()
  local dead = mo.zeros(2)
  dead:__gc()
  local open, closed = files()
  local raising = setmetatable({}, {__index = function() error("field access raised") end})
  return {
    NIL, false, true,
    0, 1, 2, 3, -1, 0.5, -0.0, 0 / 0, 1 / 0, -1 / 0, 2 ^ 53, 2 ^ 63, -2 ^ 63, math.maxinteger,
    math.mininteger, 1e308, 4.9e-324,
    "", "abc", "1", "-1", "nan", "0x10", string.rep("x", 300), "a\0b", "\xff\xfe",
    {}, {1, 2}, {{1, 2}, {3, 4}}, {0 / 0, 1 / 0}, {-1}, {2 ^ 53}, {2 ^ 63}, {"a"}, {{}}, {1, nil, 3}, {x = 1},
    {lr = 0 / 0}, {lr = -1, momentum = 2, betas = {2, -1}}, {n = -1, p = 2, dim = 0, classes = 2 ^ 53},
    {batch_size = 2 ^ 63, epochs = 1 / 0, total = -1, warmup = 0 / 0}, {shape = {-1}}, {params = {}},
    {x = mo.zeros(3, 2), y = mo.zeros(3)}, raising,
    function() end, function() error("callback raised") end, function() return 0 / 0 end,
    open, closed, coroutine.create(function() end),
    dead, dead, mo.zeros(2, 3), mo.zeros(0), mo.tensor(1.5), mo.ones(3), mo.zeros(3, 2):t(), mo.randn(2, 2),
    mo.zeros(1, 1, 1, 1, 1, 1, 1, 1), mo.tensor{0 / 0, 1 / 0, -1 / 0}, mo.ones(3, 2), mo.tensor{1, 2},
  }
end

-- Plausible arguments, so that calls get past the first checks into deeper code; one of
-- them is then replaced by a pool value.
local function make_plausible()
  return {
    1, 2, 3, 0.5, 0.1, 1e-3, true, "mean", "float32", {2, 3}, {1, 2, 3}, {{1, 2}, {3, 4}},
    mo.randn(2, 3), mo.randn(3, 2), mo.randn(3), mo.randn(2), mo.ones(2, 2), mo.zeros(3, 3), mo.tensor{1, 2, 1},
    mo.randn(2, 3):t(), mo.randn(4, 3):narrow(1, 2, 2), {lr = 0.1}, {n = 4}, {batch_size = 2},
    function() return 1 end, {x = mo.randn(4, 2), y = mo.tensor{1, 2, 1, 2}},
  }
end

local function describe(v)
  if v == NIL then return "nil" end
  local t = type(v)
  if t == "number" then return string.format("%.17g", v) end
  if t == "string" then return string.format("%q", #v > 20 and v:sub(1, 20) .. "..." or v) end
  if core.is_tensor(v) then
    local ok, s = pcall(tostring, v)
    return ok and s or "tensor"
  end
  return t
end

-- ---------------------------------------------------------------------------
-- what to call

local targets = {}
local function add(name, f, opts)
  targets[#targets + 1] = {name = name, f = f, opts = opts or {}}
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(v) == "table" and type(mt) == "table" and mt.__call ~= nil
end

-- Every function (and callable class) in a module table, by name.
local function add_module(prefix, t, opts)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and callable(v) then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = t[k]
    local f = type(v) == "function" and v or function(...) return v(...) end
    add(prefix .. k, f, opts)
  end
end

-- Every method reachable from obj through __index tables; self is obj (or sometimes a
-- pool value, so methods also meet the wrong receiver). Not _init: a class's constructor
-- hook, whose public entry point is the class call (nn.Linear(...), fuzzed above); it raises
-- apierror's internal errors, which that call turns into messages at the caller's line.
local function add_methods(prefix, make)
  local obj = make()
  local names, seen = {}, {}
  local t = getmetatable(obj)
  local depth = 0
  while type(t) == "table" and depth < 10 do
    for k, v in next, t do
      if type(k) == "string" and type(v) == "function" and not seen[k] and k ~= "__gc" and k ~= "__index"
          and k ~= "__newindex" and k ~= "_init" then
        seen[k] = true
        names[#names + 1] = k
      end
    end
    local idx = rawget(t, "__index")
    if type(idx) == "table" and idx ~= t then
      t = idx
    else
      local mt = getmetatable(t)
      t = type(mt) == "table" and rawget(mt, "__index") or nil
    end
    depth = depth + 1
  end
  table.sort(names)
  for _, k in ipairs(names) do
    add(prefix .. k, function(self_is_obj, ...)
      local o = make()
      local f = o[k]
      if type(f) ~= "function" then return end
      if self_is_obj then return f(o, ...) end
      return f(...)
    end, {method = true})
  end
end

local function build_targets()
  local nn, optim, sched, data = mo.nn, mo.optim, mo.sched, mo.data
  local writers = {save = true, save_tensors = true, write_idx = true, ckpt_write = true,
                   write_file = true}
  -- the C module and everything mo adds to it (files are written only in tmpdir)
  add_module("mo.", core, {writers = writers, skip = {fashion_mnist = true}})
  add_module("Tensor:", core.Tensor, {tensor_self = true})
  add_module("mo.nn.", nn)
  add_module("mo.optim.", optim)
  add_module("mo.sched.", sched)
  add_module("mo.data.", data, {writers = writers})
  add_module("mo.plot.", mo.plot)
  add_module("mo.train.", mo.train)
  add_module("mo.progress.", mo.progress)
  add_module("mo.json.", require("moonopt.json"))
  add_module("mo.checkpoint.", require("moonopt.checkpoint"), {writers = writers})

  -- instances
  local function model()
    return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout(0.5), nn.LayerNorm(3), nn.Linear(3, 2))
  end
  add_methods("Sequential:", model)
  for _, cls in ipairs{"Linear", "ReLU", "LeakyReLU", "GELU", "Tanh", "Sigmoid", "Softmax", "Dropout",
                       "LayerNorm", "MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss"} do
    local c = nn[cls]
    if c then
      add_methods(cls .. ":", function()
        if cls == "Linear" then return c(2, 3) end
        if cls == "LayerNorm" then return c(3) end
        return c()
      end)
    end
  end
  local opts = {SGD = {lr = 0.1, momentum = 0.9}, LBFGS = {lr = 1}, Lion = {lr = 1e-4}}
  -- every optimizer class mo.optim has (no hand-kept list to forget a new one in)
  local classes = {}
  for name, v in pairs(optim) do
    if type(v) == "table" and rawget(v, "spec") then classes[#classes + 1] = name end
  end
  table.sort(classes)
  for _, cls in ipairs(classes) do
    if optim[cls] then
      add_methods(cls .. ":", function()
        local p = mo.randn(2, 3)
        p.grad = mo.randn(2, 3)
        return optim[cls]({p}, opts[cls] or {lr = 1e-3})
      end)
    end
  end
  local function opt()
    local p = mo.zeros(2)
    p.grad = mo.ones(2)
    return optim.SGD({p}, {lr = 0.1})
  end
  local sched_args = {
    Constant = {}, Step = {step_size = 2}, MultiStep = {milestones = {2, 4}}, Exponential = {gamma = 0.9},
    Linear = {}, Polynomial = {total_iters = 5}, Lambda = {lr_lambda = function(t) return 1 / (1 + t) end},
    CosineAnnealing = {T_max = 10}, CosineAnnealingWarmRestarts = {T_0 = 3}, WarmupCosine = {warmup = 2, total = 10},
    WarmupLinear = {warmup = 2, total = 10}, OneCycle = {max_lr = 0.1, total_steps = 10},
    Cyclic = {base_lr = 0.01, max_lr = 0.1}, ReduceLROnPlateau = {},
  }
  local snames = {}
  for k in pairs(sched_args) do snames[#snames + 1] = k end
  table.sort(snames)
  for _, k in ipairs(snames) do
    if sched[k] then
      local ok = pcall(sched[k], opt(), sched_args[k])
      if ok then add_methods(k .. ":", function() return sched[k](opt(), sched_args[k]) end) end
    end
  end
  add_methods("Loader:", function() return data.loader({x = mo.zeros(5, 2), y = mo.zeros(5)}, {batch_size = 2}) end)
  add_methods("LinePlot:", function() return mo.plot.line{series = {{x = {1, 2}, y = {3, 4}}}} end)
  add_methods("Heatmap:", function() return mo.plot.heatmap{values = {{1, 2}, {3, 4}}} end)
  add_methods("Progress:", function() return mo.progress.new{total = 3, live = false, write = function() end} end)
end

-- ---------------------------------------------------------------------------
-- the run

local TestFuzzApi = {}

function TestFuzzApi.setUp()
  local p = assert(io.popen("mktemp -d /tmp/moonopt-fuzz-XXXXXX"))
  tmpdir = p:read("l")
  p:close()
end

function TestFuzzApi.tearDown()
  if tmpdir and tmpdir:find("^/tmp/moonopt%-fuzz%-") then os.execute("rm -rf '" .. tmpdir .. "'") end
end

function TestFuzzApi.test_every_function_survives_bad_arguments()
  local rng_before = core.rng_get_state()
  targets = {}
  build_targets()
  lu.assertTrue(#targets > 300, "only " .. #targets .. " functions found")
  local bad_errors, calls, failed_calls = {}, 0, 0
  for ti, tg in ipairs(targets) do
    local short = tg.name:match("[%.:]([%w_]+)$") or tg.name
    local writer = tg.opts.writers and tg.opts.writers[short] or short == "save"
    for _ = 1, CALLS do
      local pool = make_pool()
      local args, n = {}, pick(5) - 1
      if pick(2) == 1 then
        for i = 1, n do args[i] = pool[pick(#pool)] end
      else
        local good = make_plausible()
        for i = 1, n do args[i] = good[pick(#good)] end
        if n > 0 and pick(4) > 1 then args[pick(n)] = pool[pick(#pool)] end
      end
      -- file writers only ever see paths inside tmpdir
      if writer then
        for i = 1, n do
          if type(args[i]) == "string" then args[i] = tmp_path(i) end
        end
      end
      if tg.opts.skip and tg.opts.skip[short] and (n == 0 or args[1] == NIL or type(args[1]) == "table") then
        args[1] = 1
        n = math.max(n, 1)
      end
      if tg.opts.tensor_self and pick(5) > 1 then
        table.insert(args, 1, pool[#pool - pick(8) + 1])
        n = n + 1
      end
      if tg.opts.method then
        table.insert(args, 1, pick(5) > 1)
        n = n + 1
      end
      for i = 1, n do
        if args[i] == NIL then args[i] = nil end
      end
      if TRACE then
        local shown = {}
        for i = 1, n do shown[i] = args[i] == nil and "nil" or describe(args[i]) end
        io.stderr:write(string.format("[%d] %s(%s)\n", ti, tg.name, table.concat(shown, ", ")))
        io.stderr:flush()
      end
      calls = calls + 1
      local ok, err = pcall(tg.f, table.unpack(args, 1, n))
      if not ok then
        failed_calls = failed_calls + 1
        if type(err) ~= "string" then
          bad_errors[#bad_errors + 1] = tg.name .. " raised a " .. type(err) .. " instead of a message"
        end
      end
    end
    if ti % 50 == 0 then collectgarbage() end
  end
  collectgarbage()
  collectgarbage()
  core.rng_set_state(rng_before)
  if os.getenv("MOONOPT_FUZZ_STATS") == "1" then
    io.stderr:write(string.format("fuzz: %d functions, %d calls, %d raised\n", #targets, calls, failed_calls))
  end
  lu.assertEquals(bad_errors, {})
  lu.assertTrue(failed_calls > calls / 2, "most hostile calls must fail")
  -- the module still works afterwards
  lu.assertEquals(mo.tensor{1, 2}:add(1):totable(), {2, 3})
end

return {TestFuzzApi = TestFuzzApi}
