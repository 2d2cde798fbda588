-- tests/lua/test_lean_state.lua - lean optimizer state (issue 14; docs/optimizers.md "Lean
-- optimizer state", docs/design.md "Lean optimizer state"): the bfloat16 rounding (ties to
-- even, NaN and inf, stochastic rounding's probability), the int8 block quantization (error
-- bounds, block scales, zero and non-finite blocks), steps with lean state against the
-- float32-state step (stated tolerances), every refusal, state_dict conversion, checkpoints
-- (BF16 / I8 / U8 entries) and a resumed run bit-identical to the uninterrupted one, and a
-- small training run whose accuracy with lean state stays within 2 points of float32 state.
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
local core = require "moonopt.core"

local function max_abs(a, b) return (a - b):abs():max():item() end
local function same_bits(a, b) return max_abs(a:codes(), b:codes()) == 0 end

-- float32 values as Lua numbers (what a tensor holds, read back)
local function f32(x) return mo.tensor({x}):totable()[1] end
-- a 1-d tensor's elements as a Lua list
local function vals(t) return t:totable() end

local function bf16(list, rounding)
  return core.lean_encode(mo.tensor(list), "bfloat16", "signed", rounding)
end

-- ---- bfloat16 ------------------------------------------------------------------------------

local TestLeanBf16 = {}

function TestLeanBf16.test_nearest_ties_to_even()
  local x = {1 + 2 ^ -8,             -- halfway between 1 and 1 + 2^-7: down to the even 1
             1 + 3 * 2 ^ -8,         -- halfway between 1 + 2^-7 and 1 + 2^-6: up to the even one
             1 + 2 ^ -8 + 2 ^ -20,   -- above halfway: up
             1 + 2 ^ -8 - 2 ^ -20,   -- below halfway: down
             -(1 + 2 ^ -8), 0, -0.0, 2 ^ -130, 3.0}
  local s = bf16(x)
  local codes = vals(s:codes())
  local want = {0x3F80, 0x3F82, 0x3F81, 0x3F80, 0xBF80, 0, 0x8000}
  for i, c in ipairs(want) do lu.assertEquals(codes[i], c, "element " .. i) end
  local v = vals(s:float())
  lu.assertEquals(v[1], 1)
  lu.assertEquals(v[2], 1 + 2 ^ -6)
  lu.assertEquals(v[8], 2 ^ -130)   -- exact: bfloat16 has float32's exponent range
  lu.assertEquals(v[9], 3)
end

function TestLeanBf16.test_nan_and_inf()
  local big = f32(3.4028234663852886e38)   -- FLT_MAX rounds past the largest bfloat16: inf
  local s = bf16({0 / 0, math.huge, -math.huge, big, -big, 3.3895313892515355e38})
  local v, c = vals(s:float()), vals(s:codes())
  lu.assertTrue(v[1] ~= v[1], "NaN stays NaN")
  lu.assertEquals(c[1] & 0x7F80, 0x7F80)
  lu.assertTrue(c[1] & 0x7F ~= 0, "a NaN code, not inf")
  lu.assertEquals(v[2], math.huge)
  lu.assertEquals(v[3], -math.huge)
  lu.assertEquals(v[4], math.huge)
  lu.assertEquals(v[5], -math.huge)
  lu.assertEquals(c[6], 0x7F7F)   -- the largest bfloat16 is exact
  -- stochastic rounding keeps NaN and inf too
  local r = vals(bf16({0 / 0, math.huge}, "stochastic"):float())
  lu.assertTrue(r[1] ~= r[1])
  lu.assertEquals(r[2], math.huge)
end

function TestLeanBf16.test_stochastic_probability()
  -- 1 + 2^-9 is a quarter of the way from 1 to 1 + 2^-7: up with probability 1/4
  local n = 20000
  local x = mo.zeros{n}:fill(1 + 2 ^ -9)
  local v = vals(core.lean_encode(x, "bfloat16", "signed", "stochastic"):float())
  local up = 0
  for i = 1, n do
    local e = v[i]
    lu.assertTrue(e == 1 or e == 1 + 2 ^ -7, "only the two neighbours")
    if e > 1 then up = up + 1 end
  end
  -- 4.5 standard deviations of a binomial(20000, 1/4) is 0.0138
  lu.assertAlmostEquals(up / n, 0.25, 0.014)
  -- and nearest never rounds it up
  lu.assertEquals(core.lean_encode(x, "bfloat16", "signed"):float():max():item(), 1)
end

-- PyTorch 1.13 (tests/golden/make_lean_golden.py): torch.bfloat16 conversion bits, and an
-- AdamW run whose moments are torch.bfloat16 tensors between steps
local GOLDEN = "tests/golden/lean_golden.lua"

function TestLeanBf16.test_codes_match_pytorch()
  local gd = dofile(GOLDEN).codes
  local codes = vals(bf16(gd.x):codes())
  lu.assertEquals(#codes, #gd.bits)
  for i, b in ipairs(gd.bits) do
    if gd.x[i] ~= gd.x[i] then
      -- a NaN: PyTorch writes its own canonical NaN (0xFFFF); ours keeps the sign and the top
      -- of the payload. Both must be NaN codes
      lu.assertTrue(codes[i] & 0x7F80 == 0x7F80 and codes[i] & 0x7F ~= 0 and b & 0x7F ~= 0)
    else
      lu.assertEquals(codes[i], b, string.format("element %d (%.17g)", i, gd.x[i]))
    end
  end
end

function TestLeanBf16.test_adamw_matches_pytorch_bfloat16_moments()
  local gd = dofile(GOLDEN).adamw
  local w = mo.tensor(gd.w0)
  local opt = mo.optim.AdamW({w}, {lr = gd.lr, state_dtype = "bfloat16"})
  for t = 1, #gd.grads do
    w.grad = mo.tensor(gd.grads[t])
    opt:step()
    local got, want = vals(w), gd.w[t]
    for i = 1, #want do
      -- PyTorch's operation order, float32: the same bits but for a last-place difference in
      -- a few elements (its addcdiv), which a later bfloat16 rounding may carry on
      lu.assertTrue(math.abs(got[i] - want[i]) <= 1e-6 * math.max(1, math.abs(want[i])),
                    string.format("step %d element %d: %.9g vs %.9g", t, i, got[i], want[i]))
    end
  end
end

-- ---- int8 ----------------------------------------------------------------------------------

local TestLeanInt8 = {}

-- values spanning 6 decades, both signs (or >= 0 for the unsigned map)
local function wide(n, signed)
  mo.manual_seed(5)
  local mag = mo.rand{n}:mul(-14):exp()       -- e^-14 .. 1
  if not signed then return mag end
  return mag:mul(mo.rand{n}:sub(0.5):sign())
end

local function check_bounds(x, signed)
  local s = core.lean_encode(x, "int8", signed and "signed" or "unsigned")
  local n = x:numel()
  lu.assertEquals(s:absmax():shape(), {math.ceil(n / 256)})
  local back, scales = vals(s:float()), vals(s:absmax())
  x = vals(x)
  local floor = signed and 2 ^ -17 or 2 ^ -33   -- the map's smallest step, relative to absmax
  for b = 1, #scales do
    local lo, hi = (b - 1) * 256 + 1, math.min(b * 256, n)
    local a = 0
    for i = lo, hi do a = math.max(a, math.abs(x[i])) end
    lu.assertEquals(scales[b], a, "the block scale is the block's largest magnitude, exactly")
    for i = lo, hi do
      local err = math.abs(back[i] - x[i])
      -- within 1/16 relative (3 mantissa bits, to nearest), or the floor step near 0
      lu.assertTrue(err <= math.abs(x[i]) / 16 + a * floor,
                    string.format("element %d: %.9g stored as %.9g", i, x[i], back[i]))
    end
  end
  local codes = s:codes()
  if signed then
    lu.assertTrue(codes:min():item() >= -120 and codes:max():item() <= 120)
  else
    lu.assertTrue(codes:min():item() >= 0 and codes:max():item() <= 248)
  end
  return s
end

function TestLeanInt8.test_error_bounds_and_block_scales()
  check_bounds(wide(1000, true), true)     -- 4 blocks, the last one partial
  check_bounds(wide(700, false), false)
end

function TestLeanInt8.test_largest_is_exact_and_sign_kept()
  local s = core.lean_encode(mo.tensor({-3, 1.5, 0, 0.25}), "int8", "signed")
  local v = vals(s:float())
  lu.assertEquals(v[1], -3)        -- the block's absmax itself decodes exactly
  lu.assertEquals(v[3], 0)
  lu.assertTrue(v[2] > 0 and v[4] > 0)
  lu.assertEquals(vals(s:codes())[1], -120)
end

function TestLeanInt8.test_zero_and_nonfinite_blocks()
  local x = mo.zeros{768}
  x[300] = 0 / 0   -- block 2 holds a NaN
  x[600] = 1.5
  local s = core.lean_encode(x, "int8", "signed")
  local v, scales = vals(s:float()), vals(s:absmax())
  lu.assertEquals(scales[1], 0)
  lu.assertEquals(v[1], 0)
  lu.assertTrue(scales[2] ~= scales[2], "a non-finite block stores absmax NaN")
  lu.assertTrue(v[257] ~= v[257], "all of it reads NaN")
  lu.assertEquals(v[600], 1.5)
  x[300] = math.huge
  local u = vals(core.lean_encode(x:abs(), "int8", "unsigned"):absmax())
  lu.assertTrue(u[2] ~= u[2], "inf makes the block NaN too")
  lu.assertEquals(u[3], 1.5)
end

function TestLeanInt8.test_from_codes_round_trip_and_refusals()
  local s = check_bounds(wide(300, true), true)
  local t = core.lean_from_codes("int8", "signed", s:codes(), s:absmax())
  lu.assertTrue(same_bits(s, t))
  lu.assertEquals(max_abs(s:float(), t:float()), 0)
  local c = s:codes()
  c[7] = 1.5
  fails("code #7 is 1.5", core.lean_from_codes, "int8", "signed", c, s:absmax())
  c[7] = 121
  fails("not an integer code of signed int8", core.lean_from_codes, "int8", "signed", c, s:absmax())
  local u = core.lean_encode(mo.ones{10}, "int8", "unsigned")
  local uc = u:codes()
  uc[7] = -1
  fails("code #7 is -1.0, not an integer code of unsigned int8 state", core.lean_from_codes, "int8",
        "unsigned", uc, u:absmax())
  local bad = s:absmax()
  bad[1] = -1
  fails("block scale #1", core.lean_from_codes, "int8", "signed", s:codes(), bad)
  fails("float32 tensor {2}", core.lean_from_codes, "int8", "signed", s:codes(), mo.zeros{3})
end

-- ---- steps ---------------------------------------------------------------------------------

local TestLeanStep = {}

-- n params, `steps` steps of a fixed gradient sequence; returns the param and the optimizer.
local function run(cls, opts, steps, shape)
  mo.manual_seed(11)
  local w = mo.randn(shape or {40, 25})
  local opt = mo.optim[cls]({w}, opts)
  for k = 1, steps do
    w.grad = w:clone():mul(0.5):add(mo.randn(w:shape()):mul(0.1)):add(0.01 * k)
    opt:step()
  end
  return w, opt
end

local function with(opts, extra)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

-- First step: the update reads the moments before they are stored, so it is the float32 step
-- exactly. After 20 steps the weights stay within `tol` of float32 state's, and each lean
-- buffer within `REL` of the float32 one (relative to its largest element). Why these
-- bounds: each store rounds a moment by at most 2^-9 (bfloat16) or 1/16 (int8) of itself, and
-- the error of a first moment decays by beta1 per step, so it settles at a few times one
-- rounding (measured: bfloat16 <= 0.009, int8 <= 0.14 of the largest element); the weights
-- move by lr per step (0.2 in all here; SGD's Nesterov steps are larger) and the measured gaps
-- are 1e-3 (bfloat16) and 2.2e-2 (int8) for Adam, 2e-3 / 4e-3 for Lion (whole sign flips of
-- 2*lr) and 4.5e-3 / 7.7e-2 for SGD: the bounds are about twice those.
local CASES = {
  {"AdamW", {lr = 1e-2}, {bfloat16 = 2e-3, int8 = 4e-2}},
  {"Adam", {lr = 1e-2, amsgrad = true, weight_decay = 1e-3}, {bfloat16 = 2e-3, int8 = 4e-2}},
  {"AdamW", {lr = 1e-2, flavor = "mxnet"}, {bfloat16 = 2e-3, int8 = 4e-2}},
  {"Lion", {lr = 1e-3}, {bfloat16 = 6e-3, int8 = 1e-2}},
  {"SGD", {lr = 1e-2, momentum = 0.9, nesterov = true}, {bfloat16 = 1e-2, int8 = 0.15}},
}
local REL = {bfloat16 = 0.02, int8 = 0.25}

function TestLeanStep.test_first_step_is_the_float32_step()
  for _, c in ipairs(CASES) do
    local w32 = run(c[1], c[2], 1)
    for _, sdt in ipairs{"bfloat16", "int8"} do
      local w = run(c[1], with(c[2], {state_dtype = sdt}), 1)
      lu.assertEquals(max_abs(w, w32), 0, c[1] .. " " .. sdt)
    end
  end
end

function TestLeanStep.test_close_to_float32_state()
  for _, c in ipairs(CASES) do
    local w32, o32 = run(c[1], c[2], 20)
    for _, sdt in ipairs{"bfloat16", "int8"} do
      local w, o = run(c[1], with(c[2], {state_dtype = sdt}), 20)
      local gap = max_abs(w, w32)
      lu.assertTrue(gap <= c[3][sdt], string.format("%s %s: %g > %g", c[1], sdt, gap, c[3][sdt]))
      lu.assertTrue(gap > 0, c[1] .. " " .. sdt .. ": lean state must round something")
      for key, v in pairs(o.state[w]) do
        if core.is_lean(v) then
          lu.assertEquals(v:dtype(), sdt)
          local ref = o32.state[w32][key]
          local rel = max_abs(v:float(), ref) / ref:abs():max():item()
          lu.assertTrue(rel < REL[sdt], c[1] .. " " .. key .. " " .. rel)
        end
      end
    end
  end
end

function TestLeanStep.test_stochastic_rounding_differs_and_is_close()
  local w1 = run("AdamW", {lr = 1e-2, state_dtype = "bfloat16"}, 10)
  local w2 = run("AdamW", {lr = 1e-2, state_dtype = "bfloat16", state_rounding = "stochastic"}, 10)
  local w3 = run("AdamW", {lr = 1e-2, state_dtype = "bfloat16", state_rounding = "stochastic"}, 10)
  lu.assertTrue(max_abs(w1, w2) > 0)
  lu.assertTrue(max_abs(w1, w2) < 2e-3)
  lu.assertEquals(max_abs(w2, w3), 0, "the stream is a function of the state: reproducible")
end

function TestLeanStep.test_strided_param()
  -- a transposed (strided) param steps through the driver's contiguous copy
  mo.manual_seed(2)
  local base = mo.randn{30, 20}
  local wt = base:t()
  local ref = wt:clone()
  local o1 = mo.optim.AdamW({wt}, {lr = 1e-2, state_dtype = "int8"})
  local o2 = mo.optim.AdamW({ref}, {lr = 1e-2, state_dtype = "int8"})
  for _ = 1, 3 do
    wt.grad = wt:clone():mul(0.3)
    ref.grad = ref:clone():mul(0.3)
    o1:step()
    o2:step()
  end
  lu.assertEquals(max_abs(wt, ref), 0)
end

-- ---- refusals ------------------------------------------------------------------------------

local TestLeanRefusals = {}

function TestLeanRefusals.test_other_optimizers_refuse()
  local w = mo.zeros{3}
  for _, c in ipairs{{"RMSprop", {}}, {"Adagrad", {}}, {"Adadelta", {}}, {"NAdam", {}},
                     {"RAdam", {}}, {"Adamax", {}}, {"LAMB", {}}, {"ScheduleFreeAdamW", {}},
                     {"LBFGS", {}}} do
    local opts = with(c[2], {state_dtype = "int8"})
    local msg = fails(c[1] .. ": state_dtype = string \"int8\" is not supported", mo.optim[c[1]], {w}, opts)
    lu.assertStrContains(msg, "Adam, AdamW, Lion and SGD")
  end
  fails("RMSprop: state_rounding", mo.optim.RMSprop, {w}, {state_rounding = "stochastic"})
end

function TestLeanRefusals.test_bad_values()
  local w = mo.zeros{3}
  fails("AdamW: option 'state_dtype' must be \"float32\", \"bfloat16\" or \"int8\", got string \"float16\"",
        mo.optim.AdamW, {w}, {state_dtype = "float16"})
  fails("option 'state_rounding' must be \"nearest\" or \"stochastic\", got 1", mo.optim.Lion, {w},
        {state_rounding = 1})
  fails("state_rounding \"stochastic\" applies to bfloat16 state", mo.optim.AdamW, {w},
        {state_dtype = "int8", state_rounding = "stochastic"})
  fails("SGD: state_dtype string \"bfloat16\" keeps the momentum buffer, and momentum is 0",
        mo.optim.SGD, {w}, {lr = 0.1, state_dtype = "bfloat16"})
end

function TestLeanRefusals.test_float64_params()
  local w = mo.zeros({3}, {dtype = "float64"})
  w.grad = mo.ones({3}, {dtype = "float64"})
  local opt = mo.optim.AdamW({w}, {state_dtype = "bfloat16"})
  fails("AdamW: param #1 is float64: state_dtype 'bfloat16' needs float32 params", opt.step, opt)
  lu.assertNil(next(opt.state), "nothing made")
  lu.assertEquals(w:sum():item(), 0)
end

function TestLeanRefusals.test_tampered_state()
  local w, opt = run("AdamW", {lr = 1e-2, state_dtype = "int8"}, 2, {5})
  local st = opt.state[w]
  local before = w:clone()
  local m = st.exp_avg
  -- a float tensor where int8 state belongs
  st.exp_avg = m:float()
  fails("'exp_avg' is a float tensor, the group's state_dtype is 'int8'", opt.step, opt)
  -- the map of the other moment
  st.exp_avg = core.lean_encode(m:float(), "int8", "unsigned")
  fails("'exp_avg' is unsigned lean state, this buffer is signed", opt.step, opt)
  -- another dtype
  st.exp_avg = core.lean_encode(m:float(), "bfloat16", "signed")
  fails("'exp_avg' is bfloat16 state, the group's state_dtype is 'int8'", opt.step, opt)
  -- another shape
  st.exp_avg = core.lean_encode(mo.zeros{4}, "int8", "signed")
  fails("'exp_avg' has a shape other than the param's", opt.step, opt)
  st.exp_avg = m
  -- state_dtype changed in the group mid-run
  opt.param_groups[1].state_dtype = "float32"
  fails("'exp_avg' is int8 state, the group's state_dtype is 'float32'", opt.step, opt)
  lu.assertEquals(max_abs(w, before), 0, "nothing changed")
  opt.param_groups[1].state_dtype = "int8"
  opt:step()
  lu.assertTrue(max_abs(w, before) > 0)
end

-- Finalizers that run inside opt:step() while lean state is made (every allocation runs a
-- whole collector cycle) and free or replace lean state: a clean error or a finished step,
-- never a crash or a read of freed codes (ASan in make check).
function TestLeanRefusals.test_hostile_finalizers_during_step()
  collectgarbage("incremental", 1, 1000, 63)
  collectgarbage()
  local ok_runs, errors = 0, 0
  for round = 1, 24 do
    local ps = {mo.randn{300}, mo.randn{4, 5}, mo.randn{7}}
    for _, p in ipairs(ps) do p.grad = p:clone() end
    local opt = mo.optim.AdamW(ps, {state_dtype = round % 2 == 0 and "int8" or "bfloat16"})
    if round % 3 == 0 then opt:step() end   -- some rounds attack existing state
    local k = round % 4
    setmetatable({}, {__gc = function()
      local p = ps[1 + round % 3]
      local st = opt.state[p]
      if k == 0 and st then
        for key, v in pairs(st) do if core.is_lean(v) then st[key] = mo.zeros(1) end end
      elseif k == 1 and st then
        for _, v in pairs(st) do if core.is_lean(v) then getmetatable(v).__gc(v) end end
      elseif k == 2 then opt.state[p] = nil
      elseif p.grad then p.grad:__gc() end
    end})
    local ok, e = pcall(opt.step, opt)
    if ok then ok_runs = ok_runs + 1 else
      errors = errors + 1
      lu.assertEquals(type(e), "string")
    end
  end
  collectgarbage("incremental", 200, 100, 13)
  collectgarbage()
  lu.assertEquals(ok_runs + errors, 24)
  lu.assertTrue(errors > 0, "the finalizers never hit a step")
  -- a freed lean state object refuses everything
  local s = core.lean_encode(mo.ones{4}, "int8", "signed")
  getmetatable(s).__gc(s)
  fails("the lean state has been freed", s.float, s)
end

function TestLeanRefusals.test_not_a_tensor()
  local s = core.lean_encode(mo.ones{4}, "bfloat16", "signed")
  lu.assertFalse(mo.is_tensor(s))
  lu.assertFalse(pcall(mo.add, s, s))
  lu.assertFalse(pcall(function() return mo.ones{4} + s end))
  lu.assertEquals(tostring(s), "moonopt.LeanState(bfloat16, {4})")
  lu.assertEquals(s:shape(), {4})
  lu.assertEquals(s:numel(), 4)
  fails("bfloat16 state has no block scales", s.absmax, s)
  fails("expected a float32 tensor", core.lean_encode, mo.ones({2}, {dtype = "float64"}), "int8", "signed")
end

-- ---- state_dict and checkpoints ------------------------------------------------------------

local TestLeanCheckpoint = {}

local function states_equal(o1, w1, o2, w2)
  for key, v in pairs(o1.state[w1]) do
    local u = o2.state[w2][key]
    if core.is_lean(v) then
      lu.assertTrue(core.is_lean(u), key)
      lu.assertTrue(same_bits(v, u), key)
      if v:dtype() == "int8" then lu.assertEquals(max_abs(v:absmax(), u:absmax()), 0, key) end
    elseif mo.is_tensor(v) then
      lu.assertEquals(max_abs(v, u), 0, key)
    else
      lu.assertEquals(u, v, key)
    end
  end
end

function TestLeanCheckpoint.test_state_dict_round_trip_and_conversion()
  local w, opt = run("AdamW", {lr = 1e-2, state_dtype = "int8", amsgrad = true}, 3)
  local sd = opt:state_dict()
  lu.assertTrue(core.is_lean(sd.state[1].exp_avg))
  lu.assertFalse(rawequal(sd.state[1].exp_avg, opt.state[w].exp_avg), "a copy")
  local w2, o2 = run("AdamW", {lr = 1e-2, state_dtype = "int8", amsgrad = true}, 0)
  w2:copy(w)
  o2:load_state_dict(sd)
  states_equal(opt, w, o2, w2)
  -- int8 -> float32: the values it holds
  local w3, o3 = run("AdamW", {lr = 1e-2, amsgrad = true}, 0)
  sd.param_groups[1].state_dtype = "float32"
  o3:load_state_dict(sd)
  lu.assertTrue(mo.is_tensor(o3.state[w3].exp_avg))
  lu.assertEquals(max_abs(o3.state[w3].exp_avg, opt.state[w].exp_avg:float()), 0)
  -- float32 -> bfloat16
  local sd3 = o3:state_dict()
  sd3.param_groups[1].state_dtype = "bfloat16"
  local w4, o4 = run("AdamW", {lr = 1e-2, amsgrad = true, state_dtype = "bfloat16"}, 0)
  o4:load_state_dict(sd3)
  lu.assertEquals(o4.state[w4].exp_avg_sq:dtype(), "bfloat16")
  lu.assertTrue(max_abs(o4.state[w4].exp_avg_sq:float(), o3.state[w3].exp_avg_sq) <=
                o3.state[w3].exp_avg_sq:abs():max():item() * 2 ^ -8)
  -- lean state for a float64 param is refused, nothing changed
  local w5 = mo.zeros({40, 25}, {dtype = "float64"})
  local o5 = mo.optim.AdamW({w5}, {state_dtype = "int8"})
  fails("needs float32 params", o5.load_state_dict, o5, sd)
  lu.assertNil(next(o5.state))
end

-- Steps 1..10 uninterrupted against 1..5, mo.save, mo.load into a fresh optimizer, 6..10.
local function resume_case(cls, opts)
  local function make()
    mo.manual_seed(21)
    local w = mo.randn{300, 3}
    return w, mo.optim[cls]({w}, opts)
  end
  local function steps(w, opt, a, b)
    for k = a, b do
      w.grad = w:clone():mul(1.5):add(0.02 * k):sin()
      opt:step()
    end
  end
  local w1, o1 = make()
  steps(w1, o1, 1, 10)
  local w2, o2 = make()
  steps(w2, o2, 1, 5)
  local path = os.tmpname()
  mo.save(path, {optimizer = o2, extra = {w = w2}})
  local _, _, names, dtypes = core.ckpt_read(path)
  local w3, o3 = make()
  local extra = mo.load(path, {optimizer = o3})
  os.remove(path)
  w3:copy(extra.w)
  steps(w3, o3, 6, 10)
  lu.assertEquals(max_abs(w3, w1), 0, cls .. " resumed")
  states_equal(o1, w1, o3, w3)
  return names, dtypes
end

function TestLeanCheckpoint.test_exact_resume()
  local names, dtypes = resume_case("AdamW", {lr = 1e-2, state_dtype = "int8", amsgrad = true})
  lu.assertEquals(dtypes["optimizer.state.1.exp_avg"], "I8")
  lu.assertEquals(dtypes["optimizer.state.1.exp_avg_sq"], "U8")
  lu.assertEquals(dtypes["optimizer.state.1.max_exp_avg_sq"], "U8")
  lu.assertEquals(dtypes["optimizer.state.1.exp_avg.absmax"], "F32")
  lu.assertTrue(#names >= 7)
  local _, dtypes2 = resume_case("AdamW", {lr = 1e-2, state_dtype = "bfloat16", state_rounding = "stochastic"})
  lu.assertEquals(dtypes2["optimizer.state.1.exp_avg"], "BF16")
  resume_case("Lion", {lr = 1e-3, state_dtype = "int8"})
  resume_case("SGD", {lr = 1e-2, momentum = 0.9, state_dtype = "bfloat16"})
  resume_case("Adam", {lr = 1e-2, flavor = "keras", state_dtype = "bfloat16"})
end

function TestLeanCheckpoint.test_missing_scales_refused()
  local w, opt = run("AdamW", {lr = 1e-2, state_dtype = "int8"}, 2, {5})
  local path = os.tmpname()
  mo.save(path, {optimizer = opt})
  local tensors, meta, names = core.ckpt_read(path)
  local keep_names, keep = {}, {}
  for _, n in ipairs(names) do
    if n ~= "optimizer.state.1.exp_avg.absmax" then
      keep_names[#keep_names + 1] = n
      -- the codes go back as the lean objects they were
      keep[#keep + 1] = n:match("exp_avg$") and opt.state[w].exp_avg
                        or n:match("exp_avg_sq$") and opt.state[w].exp_avg_sq or tensors[n]
    end
  end
  meta["moonopt.crc32"] = nil
  core.ckpt_write(path, keep_names, keep, meta)
  local _, o2 = run("AdamW", {lr = 1e-2, state_dtype = "int8"}, 0, {5})
  fails("int8 state 'optimizer.state.1.exp_avg' has no block scales", mo.load, path, {optimizer = o2})
  os.remove(path)
end

-- ---- threads -----------------------------------------------------------------------------------

local TestOptimThreads = {}

-- Every optimizer kernel on the pool (docs/design.md "Threads"): 3 steps on params of 100003
-- elements (4 chunks; LAMB's norms from 4 partials in chunk order) in float32 and float64,
-- and every lean state dtype, give the same bits at 1, 2 and 3 threads.
function TestOptimThreads.test_every_kernel_same_bits_at_1_2_3_threads()
  local CASES3 = {
    {"SGD", {lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.01}},
    {"Adam", {amsgrad = true, weight_decay = 0.01}}, {"AdamW", {flavor = "mxnet"}},
    {"Adamax", {}}, {"NAdam", {}}, {"RAdam", {}}, {"RMSprop", {centered = true, momentum = 0.5}},
    {"Adagrad", {lr_decay = 0.1}}, {"Adadelta", {}}, {"Lion", {weight_decay = 0.1}}, {"LAMB", {}},
    {"ScheduleFreeAdamW", {}},
    {"AdamW", {state_dtype = "bfloat16", state_rounding = "stochastic"}},
    {"Adam", {state_dtype = "int8", amsgrad = true}},
    {"Lion", {state_dtype = "int8"}}, {"SGD", {lr = 0.1, momentum = 0.9, state_dtype = "bfloat16"}},
  }
  local saved = mo.get_num_threads()
  for _, c in ipairs(CASES3) do
    for _, dtype in ipairs{"float32", "float64"} do
      if dtype == "float32" or (c[2].state_dtype or "float32") == "float32" then
        local first
        for _, threads in ipairs{1, 2, 3} do
          mo.set_num_threads(threads)
          mo.manual_seed(8)
          local w = mo.randn({100003}, {dtype = dtype})
          local opt = mo.optim[c[1]]({w}, c[2])
          for k = 1, 3 do
            w.grad = (w * 0.5 + k * 0.01):sin()
            opt:step()
          end
          local bits = w:totable()
          if first == nil then first = bits
          else
            for i = 1, #bits do
              if bits[i] ~= first[i] and (bits[i] == bits[i] or first[i] == first[i]) then
                mo.set_num_threads(saved)
                lu.fail(string.format("%s %s: element %d differs at %d threads", c[1], dtype, i, threads))
              end
            end
          end
        end
      end
    end
  end
  mo.set_num_threads(saved)
end

-- ---- a small training run ------------------------------------------------------------------

local TestLeanTraining = {}

-- Spirals, an MLP, AdamW for 10 epochs: test accuracy with bfloat16 and int8 state within
-- 2 points of float32 state's (the Fashion-MNIST comparison, 3 seeds within 0.3 points, is
-- bench/lean_accuracy.lua).
function TestLeanTraining.test_accuracy_close_to_float32()
  local nn = mo.nn
  mo.manual_seed(3)
  local train, test = mo.data.split(mo.data.spirals{n = 600, classes = 3, noise = 0.1}, 0.75)
  local function acc(sdt)
    mo.manual_seed(4)
    local model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    local opt = mo.optim.AdamW(model:parameters(), {lr = 1e-2, state_dtype = sdt})
    local h = mo.train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, data = train,
                           eval = test, epochs = 10, batch_size = 16, progress = false}
    return h.eval_acc[#h.eval_acc]
  end
  local a32 = acc("float32")
  lu.assertTrue(a32 > 0.8, "the task is learnt: " .. tostring(a32))
  for _, sdt in ipairs{"bfloat16", "int8"} do
    local a = acc(sdt)
    lu.assertTrue(math.abs(a - a32) <= 0.02, string.format("%s: %.4f vs float32 %.4f", sdt, a, a32))
  end
end

return {TestLeanBf16 = TestLeanBf16, TestLeanInt8 = TestLeanInt8, TestLeanStep = TestLeanStep,
        TestLeanRefusals = TestLeanRefusals, TestLeanCheckpoint = TestLeanCheckpoint,
        TestLeanTraining = TestLeanTraining, TestOptimThreads = TestOptimThreads}
