-- tests/lua/test_augment.lua - data augmentation (mo.data.augment, the loader's and fit's
-- `augment` option): random crop with zero padding and horizontal flip, checked against
-- a Lua reference of every candidate transform; seeded; part of exact resume (a pass
-- resumed at batch k, and mo.train.fit saved and resumed mid-epoch, are bit-identical to
-- the uninterrupted run).
local lu = require "luaunit"
local mo = require "moonopt"
local helpers = require "helpers"

local core, data, nn = mo.core or require "moonopt.core", mo.data, mo.nn
local fails = helpers.fails

-- The Lua reference: image img[c][y][x] (nested tables, {C, H, W}) cropped at offset (dy,
-- dx) from the image zero-padded by pad, then mirrored when flip.
local function transform(img, pad, dy, dx, flip)
  local C, H, W = #img, #img[1], #img[1][1]
  local out = {}
  for c = 1, C do
    out[c] = {}
    for y = 1, H do
      out[c][y] = {}
      for x = 1, W do
        local sx = (flip and (W + 1 - x) or x) + dx - pad
        local sy = y + dy - pad
        out[c][y][x] = (sy >= 1 and sy <= H and sx >= 1 and sx <= W) and img[c][sy][sx] or 0
      end
    end
  end
  return out
end

local function same(a, b)
  if type(a) ~= "table" then return a == b end
  for i = 1, #a do if not same(a[i], b[i]) then return false end end
  return #a == #b
end

-- Which transform (dy, dx, flip) turns img into out; nil when none does. With distinct
-- pixel values the answer is unique.
local function which(img, out, pad, flips)
  local found
  for dy = 0, 2 * pad do
    for dx = 0, 2 * pad do
      for _, f in ipairs(flips and {false, true} or {false}) do
        if same(transform(img, pad, dy, dx, f), out) then
          lu.assertNil(found, "two transforms give the same output")
          found = {dy, dx, f}
        end
      end
    end
  end
  return found
end

local function bits(t)
  local out = {}
  for _, v in ipairs(helpers.flatten(t:totable())) do out[#out + 1] = string.pack("<f", v) end
  return table.concat(out)
end

local TestAugment = {}

function TestAugment.test_every_example_is_one_crop_and_flip()
  -- 40 images {2, 4, 5} of distinct positive values; pad 2, flip
  local n, pad = 40, 2
  local x = mo.arange(n * 2 * 4 * 5):view(n, 2, 4, 5)
  mo.manual_seed(11)
  local y = data.augment(x, {crop = pad, flip = true})
  lu.assertEquals(y:shape(), {n, 2, 4, 5})
  local xs, ys = x:totable(), y:totable()
  local offsets, flips = {}, 0
  for i = 1, n do
    local t = which(xs[i], ys[i], pad, true)
    lu.assertNotNil(t, "example " .. i .. " is no crop/flip of its input")
    offsets[t[1] .. "," .. t[2]] = true
    if t[3] then flips = flips + 1 end
  end
  -- both flips and several offsets occur (40 draws: a fixed outcome would be a bug)
  lu.assertTrue(flips > 5 and flips < 35, "flips: " .. flips)
  local distinct = 0
  for _ in pairs(offsets) do distinct = distinct + 1 end
  lu.assertTrue(distinct >= 8, "distinct offsets: " .. distinct)
  -- the input is unchanged
  lu.assertEquals(x:get(3, 2, 4, 5), 3 * 40 - 0)
end

function TestAugment.test_crop_only_and_identity()
  local x = mo.arange(6 * 3 * 3):view(6, 3, 3)     -- {n, H, W}: one channel
  mo.manual_seed(2)
  local y = data.augment(x, {crop = 1})
  for i = 1, 6 do
    local t = which({x:totable()[i]}, {y:totable()[i]}, 1, false)
    lu.assertNotNil(t, "example " .. i)
  end
  -- no crop, no flip: a copy
  local z = data.augment(x, {})
  lu.assertEquals(bits(z), bits(x))
  lu.assertFalse(z:same_storage(x))
end

function TestAugment.test_flat_rows_with_shape()
  local x = mo.arange(4 * 12):view(4, 12)
  mo.manual_seed(5)
  local y = data.augment(x, {crop = 1, flip = true, shape = {3, 4}})
  lu.assertEquals(y:shape(), {4, 12})
  mo.manual_seed(5)
  local y2 = data.augment(x:view(4, 1, 3, 4), {crop = 1, flip = true})
  lu.assertEquals(bits(y), bits(y2))
end

-- float64 images get the same crops and flips as their float32 copies (same seed).
function TestAugment.test_float64_same_as_float32()
  local x = mo.randn(8, 2, 5, 5):double()
  mo.manual_seed(11)
  local a = data.augment(x, {crop = 2, flip = true})
  mo.manual_seed(11)
  local b = data.augment(x:float(), {crop = 2, flip = true})
  lu.assertEquals(a.dtype, "float64")
  lu.assertEquals(bits(a:float()), bits(b))
  lu.assertEquals(a:sum():item() ~= 0, true)
end

function TestAugment.test_seeded()
  local x = mo.randn(16, 1, 6, 6)
  mo.manual_seed(7)
  local a = data.augment(x, {crop = 2, flip = true})
  mo.manual_seed(7)
  local b = data.augment(x, {crop = 2, flip = true})
  lu.assertEquals(bits(a), bits(b))
  local c = data.augment(x, {crop = 2, flip = true})
  lu.assertNotEquals(bits(a), bits(c))
end

-- the batches of a loader with augmentation, as bit strings (x and y)
local function pass(l, first)
  local out = {}
  for xb, yb, i in l:epoch(first) do out[i] = bits(xb) .. "|" .. bits(yb) end
  return out
end

function TestAugment.test_loader_same_seed_same_batches_and_resume()
  local ds = {x = mo.randn(50, 1, 5, 5), y = mo.arange(50)}
  for _, shuffle in ipairs{true, false} do
    local l = data.loader(ds, {batch_size = 8, shuffle = shuffle, augment = {crop = 2, flip = true}})
    mo.manual_seed(3)
    local start = core.rng_get_state()
    local p1 = pass(l)
    local after = core.rng_get_state()
    lu.assertEquals(#p1, 7)
    core.rng_set_state(start)
    lu.assertEquals(pass(l), p1)
    lu.assertEquals(core.rng_get_state(), after)
    -- a pass resumed at batch 4 from the pass's start state: batches 4.. identical
    core.rng_set_state(start)
    local p2 = pass(l, 4)
    for i = 4, 7 do lu.assertEquals(p2[i], p1[i], "batch " .. i) end
    lu.assertNil(p2[3])
    -- the next pass augments differently
    core.rng_set_state(after)
    local p3 = pass(l)
    lu.assertNotEquals(p3[1], p1[1])
  end
  -- the labels follow their images: an unshuffled, unaugmented first batch is rows 1..8
  local l = data.loader(ds, {batch_size = 8, shuffle = false, augment = {crop = 0}})
  local xb, yb = l:epoch()()
  lu.assertEquals(bits(xb), bits(ds.x:narrow(1, 1, 8)))
  lu.assertEquals(yb:totable(), {1, 2, 3, 4, 5, 6, 7, 8})
end

function TestAugment.test_last_short_batch_and_batches()
  local ds = {x = mo.arange(10 * 9):view(10, 1, 3, 3), y = mo.arange(10)}
  mo.manual_seed(4)
  local sizes = {}
  for xb, yb in data.batches(ds, 4, {augment = {crop = 1, flip = true}}) do
    sizes[#sizes + 1] = xb:size(1)
    for i = 1, xb:size(1) do
      local src = ds.x:totable()[yb:get(i)]
      lu.assertNotNil(which(src, xb:totable()[i], 1, true))
    end
  end
  lu.assertEquals(sizes, {4, 4, 2})
end

-- fit with augmentation and Dropout, saved mid-epoch and resumed in fresh objects
local function setup(seed)
  mo.manual_seed(seed)
  local model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
  local opt = mo.optim.AdamW(model:parameters(), {lr = 0.01})
  return model, opt
end

local function params_bits(model)
  local out = {}
  for _, np in ipairs(model:named_parameters()) do out[#out + 1] = bits(np[2]) end
  return table.concat(out)
end

function TestAugment.test_fit_resumes_mid_epoch_bit_exactly()
  mo.manual_seed(9)
  local ds = {x = mo.randn(60, 1, 4, 4), y = mo.randint(1, 3, {60})}
  local aug = {crop = 1, flip = true}
  local function args(model, opt, state, on_step)
    return {model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, data = ds, epochs = 2,
            batch_size = 8, augment = aug, progress = false, state = state, on_step = on_step}
  end
  local m1, o1 = setup(21)
  mo.train.fit(args(m1, o1, {}))
  local rng_after = core.rng_get_state()
  local path = os.tmpname()
  local m2, o2 = setup(21)
  mo.train.fit(args(m2, o2, {}, function(info)
    if info.epoch == 2 and info.batch == 3 then
      mo.save(path, {model = m2, optimizer = o2, fit = info.state})
      return false
    end
  end))
  local m3, o3 = setup(77)
  mo.randn(10)
  local st = {}
  mo.load(path, {model = m3, optimizer = o3, fit = st})
  os.remove(path)
  mo.train.fit(args(m3, o3, st))
  lu.assertTrue(params_bits(m1) == params_bits(m3), "the resumed run differs")
  lu.assertEquals(core.rng_get_state(), rng_after)
  -- and augmentation changed the run (the option is not ignored)
  local m4, o4 = setup(21)
  local a4 = args(m4, o4, {})
  a4.augment = nil
  mo.train.fit(a4)
  lu.assertFalse(params_bits(m4) == params_bits(m1))
end

function TestAugment.test_errors()
  local x = mo.zeros(4, 1, 3, 3)
  fails("augment: augment: unknown option 'crp'", data.augment, x, {crp = 1})
  fails("augment: augment.crop (the padding of the random crop) must be a non-negative integer, got -1",
        data.augment, x, {crop = -1})
  fails("augment: augment.flip must be a boolean, got 1", data.augment, x, {flip = 1})
  fails("augment needs images: x {4, 9} is not {n, C, H, W} or {n, H, W}", data.augment, mo.zeros(4, 9), {crop = 1})
  fails("augment.shape {1, 2, 2} does not hold the 9 values", data.augment, mo.zeros(4, 9), {shape = {2, 2}})
  fails("augment: x must be a tensor", data.augment, {}, {})
  fails("loader: augment needs images", data.loader, {x = mo.zeros(4, 9)}, {augment = {crop = 1}})
  fails("augment needs images", mo.train.fit, {model = nn.Linear(9, 2), loss = nn.MSELoss(),
        optimizer = mo.optim.SGD(nn.Linear(9, 2):parameters(), {lr = 0.1}), data = {x = mo.zeros(4, 9)},
        augment = {crop = 1}, progress = false})
  fails("augment_crop_flip", core.augment_crop_flip, mo.zeros(2, 1, 3, 3),
        mo.zeros({2, 1, 3, 3}, {dtype = "float64"}), 1, true, 1)   -- mixed dtypes
  -- the kernel refuses shape mismatches and aliasing
  fails("augment_crop_flip", core.augment_crop_flip, mo.zeros(2, 1, 3, 3), mo.zeros(2, 1, 3, 4), 1, true, 1)
  fails("share memory", core.augment_crop_flip, x, x, 1, true, 1)
end

return {TestAugment = TestAugment}
