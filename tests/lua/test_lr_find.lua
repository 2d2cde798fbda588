-- tests/lua/test_lr_find.lua - mo.train.lr_find, the learning-rate range test: the lr
-- sweep is exponential from start_lr to end_lr, the loss falls then diverges on a tiny
-- model (the sweep stops early), the suggestion lies inside the descent, the model, the
-- optimizer and the generator are restored bit for bit, the SVG is written, bad options
-- are errors.
local lu = require "luaunit"
local mo = require "moonopt"
local helpers = require "helpers"

local core, nn = require "moonopt.core", mo.nn
local fails = helpers.fails

local function bits(t)
  local out = {}
  for _, v in ipairs(helpers.flatten(t:totable())) do out[#out + 1] = string.pack("<f", v) end
  return table.concat(out)
end

local function snapshot(model, opt)
  local out = {}
  for _, np in ipairs(model:named_parameters()) do out[#out + 1] = np[1] .. bits(np[2]) end
  for _, nb in ipairs(model:named_buffers()) do out[#out + 1] = nb[1] .. bits(nb[2]) end
  for i, g in ipairs(opt.param_groups) do out[#out + 1] = "lr" .. i .. "=" .. g.lr end
  for i, s in pairs(opt:state_dict().state) do
    for k, v in pairs(s) do out[#out + 1] = i .. k .. (mo.is_tensor(v) and bits(v) or tostring(v)) end
  end
  table.sort(out)
  return table.concat(out, ";")
end

local function setup()
  mo.manual_seed(3)
  local ds = mo.data.regression{n = 200, d = 5}
  local model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
  local opt = mo.optim.SGD(model:parameters(), {lr = 1e-3, momentum = 0.9})
  return ds, model, opt
end

local TestLrFind = {}

function TestLrFind.test_sweep_restores_and_suggests()
  local ds, model, opt = setup()
  -- one real step first, so the optimizer has state to restore
  local out = model:forward(ds.x)
  local _, g = nn.MSELoss():forward_backward(out, ds.y)
  model:backward(ds.x, g)
  opt:step()
  opt:zero_grad()
  model:evaluate()
  local before, rng = snapshot(model, opt), core.rng_get_state()
  local svg = os.tmpname()
  local r = mo.train.lr_find{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds,
                             batch_size = 50, start_lr = 1e-4, end_lr = 10, num_iter = 80, smooth = 0.9,
                             plot = svg}
  -- restored: parameters, buffers, optimizer state and lr, generator, evaluation mode
  lu.assertEquals(snapshot(model, opt), before)
  lu.assertEquals(core.rng_get_state(), rng)
  lu.assertFalse(model.training)
  -- the lrs grow by one constant factor per step from start_lr
  local factor = (10 / 1e-4) ^ (1 / 79)
  lu.assertAlmostEquals(r.lrs[1], 1e-4, 1e-17)
  for i = 2, #r.lrs do lu.assertAlmostEquals(r.lrs[i] / r.lrs[i - 1], factor, 1e-9) end
  -- SGD with momentum diverges long before lr 10: stopped early, the last smoothed loss > 4x the best
  lu.assertTrue(r.stopped_early)
  lu.assertTrue(#r.lrs < 80)
  local best = math.huge
  for i = 1, #r.losses - 1 do best = math.min(best, r.losses[i]) end
  lu.assertTrue(r.losses[#r.losses] > 4 * best or r.losses[#r.losses] ~= r.losses[#r.losses])
  lu.assertEquals(#r.raw_losses, #r.lrs)
  -- the loss fell (the best is well below the start); the suggestion is where it fell fastest
  -- (between 1e-3 and the lr of the minimum: measured 0.013 and 0.21), min_loss_lr a tenth of the
  -- minimum's lr
  lu.assertTrue(best < r.losses[1] * 0.7, ("the loss never fell: %g to %g"):format(r.losses[1], best))
  local min_i = 1
  for i = 2, #r.losses - 1 do if r.losses[i] < r.losses[min_i] then min_i = i end end
  lu.assertAlmostEquals(r.min_loss_lr, r.lrs[min_i] / 10, 1e-15)
  lu.assertTrue(r.suggested_lr > 1e-3 and r.suggested_lr < r.lrs[min_i], tostring(r.suggested_lr))
  -- the smoothing: the first smoothed loss is the first raw loss (bias correction)
  lu.assertAlmostEquals(r.losses[1], r.raw_losses[1], 1e-9)
  -- the figure
  local f = assert(io.open(svg))
  local text = f:read("a")
  f:close()
  os.remove(svg)
  lu.assertStrContains(text, "<svg")
  lu.assertStrContains(text, "suggested lr")
end

function TestLrFind.test_the_model_trains_the_same_after_it()
  -- a run after lr_find is bit-identical to a run without it
  local function run(with)
    local ds, model, opt = setup()
    if with then
      mo.train.lr_find{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, num_iter = 10}
    end
    mo.train.fit{model = model, loss = nn.MSELoss(), optimizer = opt, data = ds, epochs = 1,
                 batch_size = 50, progress = false}
    return snapshot(model, opt)
  end
  lu.assertEquals(run(true), run(false))
end

function TestLrFind.test_errors()
  local ds, model, opt = setup()
  local a = {model = model, loss = nn.MSELoss(), optimizer = opt, data = ds}
  local function with(k, v)
    local c = {}
    for key, val in pairs(a) do c[key] = val end
    c[k] = v
    return c
  end
  fails("lr_find: unknown option 'num_iters'", mo.train.lr_find, with("num_iters", 3))
  fails("lr_find: end_lr 1e-08 must be above start_lr 1e-07", mo.train.lr_find, with("end_lr", 1e-8))
  fails("lr_find: start_lr must be a positive finite number, got -1", mo.train.lr_find, with("start_lr", -1))
  fails("lr_find: num_iter must be an integer >= 2", mo.train.lr_find, with("num_iter", 1))
  fails("lr_find: smooth must be a number in [0, 1), got 1", mo.train.lr_find, with("smooth", 1))
  fails("lr_find: optimizer is required", mo.train.lr_find, with("optimizer", nil))
  fails("lr_find: plot must be a file name (string), got true", mo.train.lr_find, with("plot", true))
  fails("lr_find: expected one table of options", mo.train.lr_find, 3)
  -- an error inside the sweep still restores the model
  local before = snapshot(model, opt)
  fails("Linear", mo.train.lr_find, with("data", {x = mo.zeros(10, 4), y = mo.ones(10, 1)}))
  lu.assertEquals(snapshot(model, opt), before)
end

return {TestLrFind = TestLrFind}
