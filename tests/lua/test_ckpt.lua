-- tests/lua/test_ckpt.lua - checkpoints: mo.save_tensors/load_tensors (bit-exact, the
-- Python-written fixture), mo.save/mo.load of model + optimizer + scheduler + generator +
-- extra (exact resume for every optimizer class; mo.train.fit resumed mid-epoch), the
-- all-or-nothing rule of mo.load on bad files, and fit's non-finite gradient report.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"
local ck = require "moonopt.checkpoint"

local nn, data, train = mo.nn, mo.data, mo.train
-- mo.save / mo.load once init.lua exports them, the module's own functions until then
local save, load = mo.save or ck.save, mo.load or ck.load

-- ---------------------------------------------------------------------------
-- helpers

local made = {}
local function tmpfile()
  local p = os.tmpname()
  made[#made + 1] = p
  return p
end

local function cleanup()
  for _, p in ipairs(made) do
    os.remove(p)
  end
  made = {}
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Every element as a float32 bit pattern, row-major (so -0 and NaN compare exactly).
local function bits(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, x in ipairs(v) do walk(x) end
    else
      out[#out + 1] = string.pack("<f", v)
    end
  end
  walk(t:totable())
  return (table.concat(out):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function assert_same_tensor(a, b, what)
  lu.assertEquals(a:shape(), b:shape(), what)
  lu.assertTrue(bits(a) == bits(b), (what or "") .. ": values differ")
end

local function params_bits(model)
  local out = {}
  for _, np in ipairs(model:named_parameters()) do out[#out + 1] = np[1] .. "=" .. bits(np[2]) end
  return table.concat(out, ";")
end

local function error_of(f, ...)
  local ok, msg = pcall(f, ...)
  lu.assertFalse(ok, "expected an error")
  return tostring(msg)
end

-- ---------------------------------------------------------------------------
-- plain tensor files

local TestCkptTensors = {}
TestCkptTensors.tearDown = cleanup

function TestCkptTensors.test_round_trip_is_bit_exact()
  local a = mo.tensor{{1, -0.0, 1 / 0}, {-1 / 0, 1e-45, 3.4028234663852886e38}}
  local nan = mo.tensor{0 / 0, 1 / 3}
  local base = mo.tensor{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}
  local ts = {a = a, nan = nan, scalar = mo.tensor(2.5), empty = mo.zeros(0, 3),
              transposed = base:t(), narrowed = base:narrow(2, 2, 2), ["model.0.weight"] = mo.randn(4, 5)}
  local p = tmpfile()
  ck.save_tensors(p, ts, {note = "héllo", empty = ""})
  local back, meta = ck.load_tensors(p)
  for name, t in pairs(ts) do
    lu.assertNotNil(back[name], name)
    assert_same_tensor(back[name], t:contiguous(), name)
    lu.assertTrue(back[name]:is_contiguous())
  end
  lu.assertEquals(back.transposed:totable(), {{1, 4, 7}, {2, 5, 8}, {3, 6, 9}})
  lu.assertEquals(meta.note, "héllo")
  lu.assertEquals(meta.empty, "")
  lu.assertStrMatches(meta["moonopt.crc32"], "%x%x%x%x%x%x%x%x")
  -- the loaded tensors own their memory: changing them does not touch the originals
  back.a:fill(0)
  lu.assertEquals(a:get(1, 1), 1)
end

function TestCkptTensors.test_layout_is_safetensors()
  local p = tmpfile()
  ck.save_tensors(p, {w = mo.tensor{1, -2}})
  local s = slurp(p)
  local n = string.unpack("<I8", s)
  lu.assertEquals((8 + n) % 8, 0)               -- data 8-byte aligned
  lu.assertEquals(#s, 8 + n + 8)
  local header = s:sub(9, 8 + n)
  lu.assertStrContains(header, '"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}')
  lu.assertEquals(s:sub(9 + n), string.pack("<ff", 1, -2))
  lu.assertEquals(string.format("%08x", core.crc32(s:sub(9 + n))),
                  header:match('"moonopt.crc32":"(%x+)"'))
end

-- Written by tests/golden/make_ckpt_fixture.py (NumPy, the format by hand, data ordered
-- by dtype size then name as the safetensors library orders it).
function TestCkptTensors.test_reads_python_fixture()
  local ts, meta = ck.load_tensors("tests/golden/ckpt_fixture.safetensors")
  lu.assertEquals(meta.format, "pt")
  local w = {}
  for i = 0, 5 do w[#w + 1] = i / 7 - 0.25 end
  assert_same_tensor(ts.weight, mo.tensor(w, {2, 3}), "weight")
  assert_same_tensor(ts.bias, mo.tensor{1.5, -0.0, 3.25}, "bias")
  assert_same_tensor(ts.scalar, mo.tensor(math.pi), "scalar")
  lu.assertEquals(ts.empty:shape(), {0, 2})
  -- F64 rounds to float32 (1/3), overflows to -inf, underflows to 0
  assert_same_tensor(ts.double, mo.tensor{{1 / 3, -1 / 0}, {2.5, 0}}, "double")
  assert_same_tensor(ts.half, mo.tensor{1, -2.5, 65504, 2 ^ -24}, "half")
  assert_same_tensor(ts.bf, mo.tensor{1, -3, 1.0078125}, "bf")
  assert_same_tensor(ts["layers.0.w"], mo.tensor{{2, 4}}, "layers.0.w")
  local n = 0
  for _ in pairs(ts) do n = n + 1 end
  lu.assertEquals(n, 8)
end

function TestCkptTensors.test_bad_arguments()
  local p = tmpfile()
  os.remove(p)
  lu.assertStrContains(error_of(ck.save_tensors, 3, {}), "mo.save_tensors: path must be a string, got 3")
  lu.assertStrContains(error_of(ck.save_tensors, p, {w = 3}), "mo.save_tensors: 'w' must be a tensor, got 3")
  lu.assertStrContains(error_of(ck.save_tensors, p, {[1] = mo.zeros(1)}), "names must be strings")
  lu.assertStrContains(error_of(ck.save_tensors, p, {w = mo.zeros(1)}, {["moonopt.crc32"] = "0"}), "reserved")
  lu.assertStrContains(error_of(ck.save_tensors, p, {w = mo.zeros(1)}, {k = 1}), "strings to strings")
  lu.assertStrContains(error_of(ck.save_tensors, p, {["\xff"] = mo.zeros(1)}), "not valid UTF-8")
  local dead = mo.zeros(2)
  dead:__gc()
  lu.assertStrContains(error_of(ck.save_tensors, p, {w = dead}), "freed")
  lu.assertFalse(exists(p))
  lu.assertStrContains(error_of(ck.load_tensors, p), "mo.load_tensors: " .. p .. ": cannot open")
  -- the error is raised at the caller's line, not inside checkpoint.lua
  lu.assertNil(error_of(ck.load_tensors, p):find("checkpoint.lua", 1, true))
end

-- ---------------------------------------------------------------------------
-- save / load of training state

local TestCkptResume = {}
TestCkptResume.tearDown = cleanup

local function small_model()
  return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Dropout(0.2), nn.Linear(5, 2))
end

-- n training steps with batches drawn from the default generator (so the generator
-- state matters); the scheduler steps after every optimizer step.
local function run_steps(model, opt, sched, n)
  local loss_fn = nn.MSELoss()
  for _ = 1, n do
    local x, y = mo.randn(4, 3), mo.randn(4, 2)
    if opt.name == "LBFGS" then
      opt:step(function()
        opt:zero_grad()
        local out = model:forward(x)
        local l = loss_fn:forward(out, y)
        model:backward(x, loss_fn:backward(out, y))
        return l
      end)
    else
      opt:zero_grad()
      local out = model:forward(x)
      loss_fn:forward(out, y)
      model:backward(x, loss_fn:backward(out, y))
      opt:step()
    end
    if sched then sched:step() end
  end
end

local optimizer_cases = {
  {"SGD", {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 1e-3}},
  {"Adam", {lr = 0.01, amsgrad = true}},
  {"AdamW", {lr = 0.01}},
  {"AdamW", {lr = 0.01, flavor = "mxnet"}},
  {"Adamax", {lr = 0.01}},
  {"NAdam", {lr = 0.01}},
  {"RAdam", {lr = 0.01}},
  {"RMSprop", {lr = 0.01, centered = true, momentum = 0.5}},
  {"Adagrad", {lr = 0.1}},
  {"Adadelta", {}},
  {"Lion", {lr = 1e-3}},
  {"LAMB", {lr = 0.01}},
  {"LBFGS", {lr = 0.5, max_iter = 2}},
}

function TestCkptResume.test_every_optimizer_resumes_bit_exactly()
  for _, case in ipairs(optimizer_cases) do
    local cls, opts = mo.optim[case[1]], case[2]
    local label = case[1] .. (opts.flavor and ("/" .. opts.flavor) or "")
    -- the uninterrupted run: 3 steps, save, 3 more steps
    mo.manual_seed(11)
    local m1 = small_model()
    local o1 = cls(m1:parameters(), opts)
    local s1 = case[1] ~= "LBFGS" and mo.sched.WarmupCosine(o1, {warmup = 2, total = 10}) or nil
    run_steps(m1, o1, s1, 3)
    local p = tmpfile()
    save(p, {model = m1, optimizer = o1, scheduler = s1, extra = {step = 3}})
    run_steps(m1, o1, s1, 3)
    local rng1 = core.rng_get_state()
    -- a fresh process would start from other weights and another generator state
    mo.manual_seed(999)
    local m2 = small_model()
    local o2 = cls(m2:parameters(), opts)
    local s2 = s1 and mo.sched.WarmupCosine(o2, {warmup = 2, total = 10}) or nil
    local extra = load(p, {model = m2, optimizer = o2, scheduler = s2})
    lu.assertEquals(extra, {step = 3}, label)
    run_steps(m2, o2, s2, 3)
    lu.assertTrue(params_bits(m1) == params_bits(m2), label .. ": resumed run differs")
    lu.assertEquals(core.rng_get_state(), rng1, label)
    if s1 then lu.assertEquals(o2.param_groups[1].lr, o1.param_groups[1].lr, label) end
  end
end

function TestCkptResume.test_tensor_names()
  mo.manual_seed(1)
  local model = small_model()
  local opt = mo.optim.AdamW(model:parameters(), {lr = 0.01})
  run_steps(model, opt, nil, 1)
  local p = tmpfile()
  save(p, {model = model, optimizer = opt, extra = {w = mo.tensor{1, 2}, list = {mo.zeros(1)}}})
  local ts, meta = ck.load_tensors(p)
  for _, name in ipairs{"model.0.weight", "model.0.bias", "model.3.weight", "model.3.bias",
                        "optimizer.state.1.exp_avg", "optimizer.state.4.exp_avg_sq", "extra.w", "extra.list.1"} do
    lu.assertNotNil(ts[name], name)
  end
  lu.assertEquals(meta["moonopt.optimizer_class"], "AdamW")
  lu.assertEquals(meta["moonopt.format"], "1")
  lu.assertStrMatches(meta["moonopt.rng"], "xoshiro256%*%*:%x+:[01]:%x+")
  -- the optimizer's JSON: step counts stay integers, tensors are references
  local sd = require("moonopt.json").decode(meta["moonopt.optimizer"], {tensor = function(n) return n end})
  lu.assertEquals(sd.state[1].exp_avg, "optimizer.state.1.exp_avg")
  lu.assertEquals(math.type(sd.param_groups[1].params[1]), "integer")
end

function TestCkptResume.test_extra_round_trip()
  local extra = {epoch = 3, lr = 1e-3, third = 1 / 3, name = "run é", bytes = "\0\1x",
                 flags = {true, false}, nested = {a = {b = {c = 1.5}}}, inf = 1 / 0, ninf = -1 / 0,
                 nan = 0 / 0, neg0 = -0.0, big = 2 ^ 53, maxint = math.maxinteger, minint = math.mininteger,
                 sparse = {[1] = 1, [5] = 5}, mixed = {1, 2, x = 3}, fkeys = {[0.5] = "half", [true] = "yes"},
                 t = mo.tensor{{1, 2}}, empty = {}}
  local p = tmpfile()
  save(p, {extra = extra})
  local back = load(p, {})
  for k, v in pairs(extra) do
    local w = back[k]
    if k == "t" then
      assert_same_tensor(w, v, k)
    elseif type(v) == "number" then
      lu.assertEquals(math.type(w), math.type(v), k)
      if v ~= v then lu.assertTrue(w ~= w, k) else lu.assertEquals(w, v, k) end
    else
      lu.assertEquals(w, v, k)
    end
  end
  lu.assertEquals(1 / back.neg0, -1 / 0)
  for k in pairs(back.sparse) do lu.assertEquals(math.type(k), "integer") end
  lu.assertEquals(back.fkeys[0.5], "half")
  -- what cannot be stored is an error naming the place, and nothing is written
  local q = tmpfile()
  os.remove(q)
  lu.assertStrContains(error_of(save, q, {extra = {f = print}}), "mo.save: extra: f: cannot store a function")
  local cyc = {}
  cyc.self = cyc
  lu.assertStrContains(error_of(save, q, {extra = {c = cyc}}), "cycle")
  lu.assertStrContains(error_of(save, q, {extra = {s = "\xff"}}), "extra: s: the string is not valid UTF-8")
  lu.assertStrContains(error_of(save, q, {extra = {io.stdout}}), "cannot store a userdata")
  lu.assertStrContains(error_of(save, q, {bogus = 1}), "mo.save: unknown field 'bogus'")
  lu.assertFalse(exists(q))
end

-- mo.train.fit with dropout, shuffling, accumulation and a per-batch schedule, stopped in
-- the middle of an epoch (with one batch accumulated) and resumed in fresh objects:
-- the weights and the history end up exactly as in the uninterrupted run.
local function fit_setup(seed)
  mo.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 3))
  local opt = mo.optim.AdamW(model:parameters(), {lr = 0.02})
  local sched = mo.sched.WarmupCosine(opt, {warmup = 3, total = 30})
  return model, opt, sched
end

local function fit_args(model, opt, sched, ds, ev, state, on_step, on_epoch)
  return {model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched, data = ds, eval = ev,
          epochs = 3, batch_size = 16, accumulate = 2, progress = false, state = state, on_step = on_step,
          on_epoch = on_epoch}
end

local function history_without_time(h)
  local out = {}
  for i, e in ipairs(h) do
    out[i] = {e.train_loss, e.train_acc, e.eval_loss, e.eval_acc, e.lr, e.batches, e.steps}
  end
  return out
end

function TestCkptResume.test_fit_resumes_mid_epoch_bit_exactly()
  mo.manual_seed(5)
  local ds, ev = data.spirals{n = 90, classes = 3}, data.spirals{n = 30, classes = 3}
  -- uninterrupted
  local m1, o1, s1 = fit_setup(21)
  local h1 = train.fit(fit_args(m1, o1, s1, ds, ev, {}))
  local rng_after = core.rng_get_state()
  -- interrupted at epoch 2, batch 3 (one batch accumulated, not yet stepped)
  local p, pe = tmpfile(), tmpfile()
  local m2, o2, s2 = fit_setup(21)
  local st2 = {}
  local saved_pending
  train.fit(fit_args(m2, o2, s2, ds, ev, st2, function(info)
    if info.epoch == 2 and info.batch == 3 then
      saved_pending = info.state.pending
      save(p, {model = m2, optimizer = o2, scheduler = s2, fit = info.state})
      return false
    end
  end, function(e)
    if e.epoch == 1 then save(pe, {model = m2, optimizer = o2, scheduler = s2, fit = st2}) end
  end))
  lu.assertEquals(saved_pending, 1)
  for _, file in ipairs{p, pe} do
    -- resumed in fresh objects, after the generator moved on
    local m3, o3, s3 = fit_setup(77)
    mo.randn(10)
    local st3 = {}
    load(file, {model = m3, optimizer = o3, scheduler = s3, fit = st3})
    local h3 = train.fit(fit_args(m3, o3, s3, ds, ev, st3))
    lu.assertTrue(params_bits(m1) == params_bits(m3), file == p and "mid-epoch" or "epoch end")
    lu.assertEquals(history_without_time(h3), history_without_time(h1))
    lu.assertEquals(h3.steps, h1.steps)
    lu.assertEquals(core.rng_get_state(), rng_after)
    -- a finished state resumes to nothing
    local before = params_bits(m3)
    local h4 = train.fit(fit_args(m3, o3, s3, ds, ev, st3))
    lu.assertEquals(#h4, 3)
    lu.assertEquals(params_bits(m3), before)
  end
  -- a state for another data layout is refused
  local m5, o5, s5 = fit_setup(1)
  local st5 = {}
  load(p, {model = m5, optimizer = o5, scheduler = s5, fit = st5})
  local args = fit_args(m5, o5, s5, data.subset(ds, 1, 40), ev, st5)
  lu.assertStrContains(error_of(train.fit, args), "fit: state: the run had 90 examples in 6 batches per epoch")
  args = fit_args(m5, o5, s5, ds, ev, st5)
  args.batch_size = 8
  lu.assertStrContains(error_of(train.fit, args), "fit: state: the run used batch_size 16")
end

-- ---------------------------------------------------------------------------
-- mo.load changes nothing unless the whole file is good

local TestCkptLoadErrors = {}
TestCkptLoadErrors.tearDown = cleanup

local function snapshot(model, opt, sched)
  local sd = sched and sched:state_dict() or nil
  local lrs = {}
  for i, g in ipairs(opt.param_groups) do lrs[i] = g.lr end
  local osd = opt:state_dict()
  local obits = {}
  for i, s in pairs(osd.state) do
    for k, v in pairs(s) do obits[i .. "." .. k] = mo.is_tensor(v) and bits(v) or v end
  end
  return {params = params_bits(model), sched = sd, lrs = lrs, opt = obits, rng = core.rng_get_state()}
end

local function trained(seed)
  mo.manual_seed(seed)
  local model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
  local opt = mo.optim.Adam(model:parameters(), {lr = 0.01})
  local sched = mo.sched.Step(opt, {step_size = 2, gamma = 0.5})
  run_steps(model, opt, sched, 3)
  return model, opt, sched
end

function TestCkptLoadErrors.test_damaged_files_change_nothing()
  local model, opt, sched = trained(1)
  local p = tmpfile()
  save(p, {model = model, optimizer = opt, scheduler = sched})
  local good = slurp(p)
  local n = string.unpack("<I8", good)
  local m2, o2, s2 = trained(2)
  local before = snapshot(m2, o2, s2)
  local function expect(bytes, part)
    spit(p, bytes)
    local msg = error_of(load, p, {model = m2, optimizer = o2, scheduler = s2})
    lu.assertStrContains(msg, "mo.load: " .. p .. ": ")
    lu.assertStrContains(msg, part)
    lu.assertEquals(snapshot(m2, o2, s2), before, part)
  end
  expect(good:sub(1, 5), "too short for the 8-byte header length")
  expect(string.pack("<I8", #good) .. good:sub(9), "exceeds the")
  expect(good:sub(1, -2), "truncated")
  expect(good .. "x", "trailing bytes")
  local flipped = good:sub(1, #good - 10) .. string.char(good:byte(#good - 9) ~ 1) .. good:sub(#good - 8)
  expect(flipped, "checksum mismatch")
  local header = good:sub(9, 8 + n)
  local function with_header(h)
    h = h .. string.rep(" ", n - #h)
    assert(#h == n)
    return good:sub(1, 8) .. h .. good:sub(9 + n)
  end
  expect(with_header((header:gsub('"F32"', '"F17"', 1))), "unknown dtype 'F17'")
  expect(with_header((header:gsub('^{', '[', 1))), "header JSON: expected '{'")
  expect(with_header((header:gsub('"data_offsets":%[0,', '"data_offsets":[4,', 1))), "data_offsets [4,")
  expect(with_header((header:gsub('"shape":%[4,3%]', '"shape":[4,4]', 1))), "needs 64")
end

function TestCkptLoadErrors.test_mismatches_change_nothing()
  local model, opt, sched = trained(1)
  local p, q = tmpfile(), tmpfile()
  save(p, {model = model, optimizer = opt, scheduler = sched})
  save(q, {model = model})
  -- a model of another shape
  mo.manual_seed(3)
  local wide = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2))
  local wbits = params_bits(wide)
  lu.assertStrContains(error_of(load, p, {model = wide}),
                       "mo.load: " .. p .. ": model.0.weight: file has {4, 3}, model has {6, 3}")
  lu.assertEquals(params_bits(wide), wbits)
  -- another optimizer class, no optimizer state, a missing parameter, an unexpected one
  local m2, o2, s2 = trained(2)
  local before = snapshot(m2, o2, s2)
  local sgd = mo.optim.SGD(m2:parameters(), {lr = 0.1})
  local deeper = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Linear(2, 2))
  local shallow = nn.Sequential(nn.Linear(3, 4))
  before.rng = core.rng_get_state()   -- making models drew from the generator
  lu.assertStrContains(error_of(load, p, {model = m2, optimizer = sgd}),
                       "the file holds Adam state, the optimizer is SGD")
  lu.assertStrContains(error_of(load, q, {model = m2, optimizer = o2}), "the file holds no optimizer state")
  lu.assertStrContains(error_of(load, q, {model = m2, scheduler = s2}), "the file holds no scheduler state")
  lu.assertStrContains(error_of(load, q, {model = deeper}), "the file has no tensor 'model.3.weight'")
  lu.assertStrContains(error_of(load, q, {model = shallow}), "unexpected tensor 'model.2.")
  lu.assertEquals(snapshot(m2, o2, s2), before)
  -- strict = false loads what matches
  load(q, {model = shallow, strict = false})
  assert_same_tensor(shallow:parameters()[1], model:parameters()[1])
  -- the optimizer refuses its state AFTER the scheduler took its own: the scheduler is put back
  -- (one group each, so the scheduler's state fits; the optimizer has 2 params, not 4)
  local m3 = nn.Linear(3, 4)
  local o3 = mo.optim.Adam(m3:parameters(), {lr = 0.01})
  local s3 = mo.sched.Step(o3, {step_size = 1, gamma = 0.5})
  s3:step()
  o3.param_groups[1].lr = 0.123   -- set by hand: must survive the failed load too
  local before3 = snapshot(m3, o3, s3)
  lu.assertStrContains(error_of(load, p, {optimizer = o3, scheduler = s3}),
                       "optimizer: Adam: load_state_dict: param group 1 has 4 params in the state dict, 2 in")
  lu.assertEquals(snapshot(m3, o3, s3), before3)
  lu.assertEquals(o3.param_groups[1].lr, 0.123)
end

function TestCkptLoadErrors.test_bad_metadata_changes_nothing()
  local model, opt, sched = trained(1)
  local p = tmpfile()
  save(p, {model = model, optimizer = opt, scheduler = sched})
  local ts, meta, names = core.ckpt_read(p)
  local list = {}
  for i, name in ipairs(names) do list[i] = ts[name] end
  local m2, o2, s2 = trained(2)
  local before = snapshot(m2, o2, s2)
  local function expect(key, value, part)
    local m = {}
    for k, v in pairs(meta) do m[k] = v end
    m["moonopt.crc32"] = nil
    m[key] = value
    core.ckpt_write(p, names, list, m)
    local msg = error_of(load, p, {model = m2, optimizer = o2, scheduler = s2})
    lu.assertStrContains(msg, "mo.load: " .. p .. ": ")
    lu.assertStrContains(msg, part)
    lu.assertEquals(snapshot(m2, o2, s2), before, part)
  end
  expect("moonopt.rng", "junk", "metadata 'moonopt.rng'")
  expect("moonopt.rng", "xoshiro256**:" .. string.rep("0", 64) .. ":0:" .. string.rep("0", 16), "all zero")
  expect("moonopt.optimizer", "{", "metadata 'moonopt.optimizer': JSON error at byte")
  expect("moonopt.optimizer", '{"state":{"1":{"__tensor__":"model.0.weight"}},"param_groups":[]}',
         "refers to tensor 'model.0.weight'")
  expect("moonopt.optimizer", '{"state":{},"param_groups":[]}', "param groups")
  expect("moonopt.scheduler", '{"schedule":"Step","last_epoch":-1}', "scheduler: ")
  expect("moonopt.scheduler", "[1, 2", "JSON error")
  expect("moonopt.optimizer_class", "SGD", "the file holds SGD state")
end

-- ---------------------------------------------------------------------------
-- numerical safety in mo.train.fit

local TestCkptNumerics = {}

-- A loss whose gradient (not its value) turns NaN at its `at`-th backward call.
local function nan_grad_loss(at)
  local inner = nn.MSELoss()
  local calls = 0
  return {
    forward = function(_, out, y) return inner:forward(out, y) end,
    backward = function(_, out, y)
      calls = calls + 1
      local g = inner:backward(out, y)
      if calls == at then g:fill(0 / 0) end
      return g
    end,
  }
end

function TestCkptNumerics.test_fit_reports_nonfinite_gradients()
  mo.manual_seed(6)
  local ds = data.regression{n = 40, d = 2}
  local model = nn.Linear(2, 1)
  local opt = mo.optim.SGD(model:parameters(), {lr = 0.01})
  local msg = error_of(train.fit, {model = model, loss = nan_grad_loss(3), optimizer = opt, data = ds, epochs = 1,
                                   batch_size = 10, progress = false})
  lu.assertStrContains(msg, "fit: non-finite gradient (nan) at epoch 1, batch 3, step 3")
  lu.assertNil(msg:find("train.lua", 1, true), msg)
  -- skip_nonfinite: the step is dropped, the weights stay finite, the rest trains
  local h = train.fit{model = model, loss = nan_grad_loss(2), optimizer = opt, data = ds, epochs = 1,
                      batch_size = 10, progress = false, skip_nonfinite = true}
  lu.assertEquals(h.skipped_batches, 1)
  lu.assertEquals(h.steps, 3)
  for _, p in ipairs(model:parameters()) do
    for _, v in ipairs(p:view(-1):totable()) do lu.assertTrue(v == v and math.abs(v) < math.huge) end
  end
end

function TestCkptNumerics.test_cross_entropy_stays_finite_for_large_logits()
  local loss = nn.CrossEntropyLoss()
  local out = mo.tensor{{1e4, 0, -1e4}, {-1e4, 1e4, 1e4}}
  local v = loss:forward(out, mo.tensor{2, 1})
  lu.assertTrue(v == v and v < math.huge)
  lu.assertAlmostEquals(v, (1e4 + 2e4 + math.log(2)) / 2, 0.01)
  local g = loss:backward(out, mo.tensor{2, 1}):view(-1):totable()
  for _, x in ipairs(g) do lu.assertTrue(x == x and math.abs(x) <= 1) end
end

-- ---------------------------------------------------------------------------
-- the JSON of the metadata

local TestCkptJson = {}

function TestCkptJson.test_numbers_round_trip_exactly()
  local json = require "moonopt.json"
  local values = {0, 1, -1, math.maxinteger, math.mininteger, 0.0, -0.0, 0.1, 1 / 3, 1e300, 5e-324, 2 ^ 53, -2 ^ 63,
                  1 / 0, -1 / 0, 1e16, 123456789.125}
  for _, v in ipairs(values) do
    local text = json.encode(v)
    local back = json.decode(text)
    lu.assertEquals(math.type(back), math.type(v), text)
    lu.assertTrue(back == v and (v ~= 0 or 1 / back == 1 / v), text)
  end
  local nan = json.decode(json.encode(0 / 0))
  lu.assertTrue(nan ~= nan)
  -- the shortest text that reads back, floats always marked as floats (Python reads the same)
  lu.assertEquals(json.encode{0.1, 1.0, 1e300, 3, -0.0, 1 / 0, 0 / 0}, "[0.1,1.0,1e+300,3,-0.0,Infinity,NaN]")
end

function TestCkptJson.test_tables_and_strings()
  local json = require "moonopt.json"
  lu.assertEquals(json.encode{b = 1, a = {true, false}, c = {}}, '{"a":[true,false],"b":1,"c":{}}')
  lu.assertEquals(json.encode{[2] = "x"}, '{"__pairs__":[[2,"x"]]}')
  lu.assertEquals(json.encode{__tensor__ = "x"}, '{"__pairs__":[["__tensor__","x"]]}')
  lu.assertEquals(json.encode("a\"\\\n\0\127é"), '"a\\"\\\\\\n\\u0000\\u007fé"')
  lu.assertEquals(json.decode('"\\u00e9\\ud83d\\ude00\\/"'), "é😀/")
  lu.assertEquals(json.decode(' {"a" : [1, 2.5e1, "x", null, true]} '), {a = {1, 25.0, "x", nil, true}})
  for _, bad in ipairs{"", "[1,]", "{\"a\"}", "[1 2]", "01", "1.", "\"\\ud800\"", "\"\1\"", "[]x", "tru", "\"\xff\""} do
    local ok, msg = pcall(json.decode, bad)
    lu.assertFalse(ok, bad)
    lu.assertStrContains(msg, "JSON error", false)
  end
end

return {TestCkptJson = TestCkptJson, TestCkptTensors = TestCkptTensors, TestCkptResume = TestCkptResume,
        TestCkptLoadErrors = TestCkptLoadErrors, TestCkptNumerics = TestCkptNumerics}
