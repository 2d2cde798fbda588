-- tests/lua/test_nn_autograd.lua - the autograd path of nn modules (model(x) records one
-- node per module call, whose backward is the module's own) against the torch7 path
-- (model:forward, loss_fn:backward, model:backward): the same input gradient and the
-- same parameter .grad for every module; a module called twice before one backward; the
-- parameters as inputs of mo.autograd.grad; fit with a loss function.
local lu = require "luaunit"
local mo = require "moonopt"
local H = require "helpers"

local nn, F = mo.nn, mo.nn.functional

local function maxdiff(a, b)
  return (a - b):abs():max():item()
end

local function grads_of(m)
  local out = {}
  for i, p in ipairs(m:parameters()) do out[i] = p.grad:clone() end
  return out
end

-- The torch7 path and the autograd path on the same module, input and output weights:
-- f = sum(m(x) * w). Returns nothing; asserts equal gradients (exactly: the same kernels).
local function same_as_torch7(name, make, shape, seed)
  mo.manual_seed(seed or 1)
  local m = make()
  local x = mo.randn(table.unpack(shape))
  mo.manual_seed(7)
  local y0 = m:forward(x):clone()
  local w = mo.randn(table.unpack(y0:shape()))
  m:zero_grad()
  local gx0 = m:backward(x, w):clone()
  local g0 = grads_of(m)

  m:zero_grad()
  m:requires_grad_()
  local xa = x:clone():requires_grad_()
  mo.manual_seed(7)
  local y = m(xa)
  lu.assertNotNil(y.grad_fn, name .. ": model(x) recorded nothing")
  lu.assertEquals(y.grad_fn.name, m._class_name)
  lu.assertEquals(maxdiff(y, y0), 0, name .. ": output")
  ;(y * w):sum():backward()
  lu.assertEquals(maxdiff(xa.grad, gx0), 0, name .. ": input gradient")
  for i, p in ipairs(m:parameters()) do
    lu.assertEquals(maxdiff(p.grad, g0[i]), 0, name .. ": parameter " .. i)
  end
end

local T = {}

function T.test_every_layer()
  same_as_torch7("Linear", function() return nn.Linear(5, 3) end, {4, 5})
  same_as_torch7("Linear (no bias)", function() return nn.Linear(5, 3, false) end, {4, 5})
  same_as_torch7("ReLU", function() return nn.ReLU() end, {4, 5})
  same_as_torch7("LeakyReLU", function() return nn.LeakyReLU(0.2) end, {4, 5})
  same_as_torch7("GELU", function() return nn.GELU() end, {4, 5})
  same_as_torch7("GELU tanh", function() return nn.GELU("tanh") end, {4, 5})
  same_as_torch7("Tanh", function() return nn.Tanh() end, {4, 5})
  same_as_torch7("Sigmoid", function() return nn.Sigmoid() end, {4, 5})
  same_as_torch7("Softmax", function() return nn.Softmax(1) end, {4, 5})
  same_as_torch7("Dropout", function() return nn.Dropout(0.4) end, {6, 7})
  same_as_torch7("LayerNorm", function() return nn.LayerNorm(5) end, {4, 5})
  same_as_torch7("Sequential", function()
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.LayerNorm(8), nn.Linear(8, 6), nn.Tanh(),
                         nn.Dropout(0.2), nn.Linear(6, 3), nn.GELU())
  end, {4, 5})
end

-- The convolutional modules: model(x) + backward equals the torch7 path for each (training
-- mode: batch statistics, Dropout2d's channel mask drawn from the same seed), evaluation
-- mode for BatchNorm (running statistics), and a small CNN.
function T.test_every_conv_layer()
  same_as_torch7("Conv2d", function() return nn.Conv2d(3, 4, 3, {padding = 1}) end, {2, 3, 6, 5})
  same_as_torch7("Conv2d strided, grouped, no bias", function()
    return nn.Conv2d(4, 6, {3, 2}, {stride = 2, padding = {1, 0}, dilation = {1, 2}, groups = 2,
                                   bias = false})
  end, {2, 4, 7, 8})
  same_as_torch7("MaxPool2d", function() return nn.MaxPool2d(2) end, {2, 3, 6, 6})
  same_as_torch7("MaxPool2d padded", function() return nn.MaxPool2d(3, {stride = 2, padding = 1}) end,
                 {2, 3, 7, 6})
  same_as_torch7("AvgPool2d", function() return nn.AvgPool2d(2) end, {2, 3, 6, 6})
  same_as_torch7("AvgPool2d padded", function()
    return nn.AvgPool2d(3, {stride = 2, padding = 1, count_include_pad = false})
  end, {2, 3, 7, 6})
  same_as_torch7("AdaptiveAvgPool2d", function() return nn.AdaptiveAvgPool2d({2, 3}) end, {2, 3, 7, 8})
  same_as_torch7("BatchNorm2d", function() return nn.BatchNorm2d(3) end, {4, 3, 5, 5})
  same_as_torch7("BatchNorm2d eval", function() return nn.BatchNorm2d(3):evaluate() end, {4, 3, 5, 5})
  same_as_torch7("BatchNorm1d", function() return nn.BatchNorm1d(5) end, {8, 5})
  same_as_torch7("BatchNorm1d {N, C, L}", function() return nn.BatchNorm1d(3) end, {4, 3, 6})
  same_as_torch7("Flatten", function() return nn.Flatten() end, {2, 3, 4, 5})
  same_as_torch7("Dropout2d", function() return nn.Dropout2d(0.4) end, {3, 5, 4, 4})
  same_as_torch7("CNN", function()
    return nn.Sequential(nn.Conv2d(2, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.Dropout2d(0.2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
  end, {3, 2, 8, 8})
end

-- fit with an autograd loss on a small CNN: the same run as the torch7 path.
function T.test_fit_autograd_path_cnn()
  local function run(autograd)
    mo.manual_seed(12)
    local X = mo.randn(24, 1, 6, 6)
    local Y = {}
    for i = 1, 24 do Y[i] = (i % 2) + 1 end
    local ds = mo.data.dataset(X, mo.tensor(Y))
    local m = nn.Sequential(nn.Conv2d(1, 3, 3, {padding = 1}), nn.BatchNorm2d(3), nn.ReLU(),
                            nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 2))
    local opt = mo.optim.SGD(m:parameters(), {lr = 0.05, momentum = 0.9})
    local loss = nn.CrossEntropyLoss()
    if autograd then
      loss = function(model, xb, yb)
        local out = model(xb)
        return F.cross_entropy(out, yb), out
      end
    end
    mo.manual_seed(13)
    local h = mo.train.fit{model = m, loss = loss, optimizer = opt, data = ds, eval = ds, epochs = 2,
                           batch_size = 8, progress = false}
    return h, m
  end
  local h0, m0 = run(false)
  local h1, m1 = run(true)
  for e = 1, 2 do
    lu.assertAlmostEquals(h1.train_loss[e], h0.train_loss[e], 1e-6)
    lu.assertAlmostEquals(h1.eval_loss[e], h0.eval_loss[e], 1e-6)
  end
  for i, p in ipairs(m1:parameters()) do lu.assertTrue(maxdiff(p, m0:parameters()[i]) < 1e-6) end
  -- the running statistics moved the same way (they are buffers, not parameters)
  lu.assertTrue(maxdiff(m1.modules[2].running_mean, m0.modules[2].running_mean) < 1e-6)
end

-- A loss module called on a recorded output returns a 0-d tensor recorded with one node.
function T.test_every_loss()
  local cases = {
    {nn.CrossEntropyLoss(), function() return {1, 3, 2, 3} end},
    {nn.CrossEntropyLoss({reduction = "sum", label_smoothing = 0.2}), function() return {2, 2, 1, 3} end},
    {nn.MSELoss(), function() return mo.randn(4, 3) end},
    {nn.MSELoss({reduction = "sum"}), function() return mo.randn(4, 3) end},
    {nn.BCEWithLogitsLoss(), function() return mo.rand(4, 3) end},
  }
  for _, c in ipairs(cases) do
    local lf = c[1]
    local out, t = mo.randn(4, 3), c[2]()
    local l0 = lf:forward(out, t)
    local g0 = lf:backward(out, t):clone()
    local oa = out:clone():requires_grad_()
    local l = lf(oa, t)
    lu.assertEquals(l:dim(), 0)
    lu.assertAlmostEquals(l:item(), l0, 1e-6)
    l:backward()
    lu.assertEquals(maxdiff(oa.grad, g0), 0, lf._class_name)
    -- not recording: the number, as before
    lu.assertEquals(type(lf(out, t)), "number")
  end
end

-- model(x) + a loss module + loss:backward() gives the torch7 path's .grad; so do F's loss
-- and mo.autograd.grad with the parameters as inputs (which leaves .grad alone).
function T.test_model_and_loss_as_torch7()
  mo.manual_seed(3)
  local m = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
  local lf = nn.CrossEntropyLoss()
  local x, y = mo.randn(8, 6), {1, 2, 3, 4, 4, 3, 2, 1}
  m:zero_grad()
  local out = m:forward(x)
  m:backward(x, lf:backward(out, y))
  local g0 = grads_of(m)
  m:requires_grad_():zero_grad()
  lf(m(x), y):backward()
  for i, p in ipairs(m:parameters()) do lu.assertEquals(maxdiff(p.grad, g0[i]), 0) end
  m:zero_grad()
  local gs = mo.autograd.grad(F.cross_entropy(m(x), y), m:parameters())
  for i, p in ipairs(m:parameters()) do
    lu.assertEquals(maxdiff(gs[i], g0[i]), 0)
    lu.assertEquals(p.grad:abs():max():item(), 0)   -- grad() accumulates nothing
  end
end

-- A module called twice before one backward: each call has its own buffers and state.
function T.test_called_twice_before_backward()
  mo.manual_seed(4)
  local m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.LayerNorm(6), nn.Linear(6, 2))
  m:requires_grad_()
  local x1, x2 = mo.randn(3, 5), mo.randn(3, 5)
  m:zero_grad()
  local y1 = m(x1)
  local y1v = y1:clone()
  local y2 = m(x2)
  lu.assertEquals(maxdiff(y1, y1v), 0, "the second call changed the first output")
  ;(y1:sum() + (y2 * 2):sum()):backward()
  local both = grads_of(m)
  m:zero_grad()
  m:forward(x1)
  m:backward(x1, mo.ones(3, 2))
  m:forward(x2)
  m:backward(x2, mo.full({3, 2}, 2))
  for i, p in ipairs(m:parameters()) do lu.assertTrue(maxdiff(p.grad, both[i]) < 1e-6) end
  -- a torch7 forward in between does not write into a recorded call's buffers either
  local y3 = m(x1)
  local y3v = y3:clone()
  m:forward(x2)
  lu.assertEquals(maxdiff(y3, y3v), 0)
end

function T.test_parameters_require_grad_by_default()
  local m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
  for _, p in ipairs(m:parameters()) do
    lu.assertTrue(p.requires_grad)
    lu.assertTrue(p.is_leaf)
  end
  -- the snippet of docs/autograd.md works as written: no opt-in
  local opt = mo.optim.SGD(m:parameters(), {lr = 0.1})
  local w0 = m:parameters()[1]:clone()
  local loss = F.cross_entropy(m(mo.randn(5, 3)), {1, 2, 1, 2, 2})
  lu.assertNotNil(loss.grad_fn)
  loss:backward()
  lu.assertTrue(m:parameters()[1].grad:abs():sum():item() > 0)
  opt:step()
  lu.assertTrue(maxdiff(m:parameters()[1], w0) > 0)
  -- the flag survives a conversion and a container's re-flattening
  local l = nn.Linear(2, 2):double()
  lu.assertTrue(l.weight.requires_grad)
  nn.Sequential(l)
  lu.assertTrue(l:parameters()[1].requires_grad)
end

function T.test_no_record_without_grad()
  local m = nn.Linear(3, 2)
  lu.assertNotNil(m(mo.randn(2, 3)).grad_fn)   -- parameters require grad by default
  lu.assertNil(mo.no_grad(function() return m(mo.randn(2, 3)) end).grad_fn)
  m:requires_grad_(false)                       -- frozen: nothing records
  lu.assertFalse(m.weight.requires_grad)
  lu.assertNil(m(mo.randn(2, 3)).grad_fn)
  lu.assertNotNil(m(mo.randn(2, 3):requires_grad_()).grad_fn)   -- unless the input needs grad
  -- the torch7 path never records, with or without the flag
  m:requires_grad_()
  lu.assertNil(m:forward(mo.randn(2, 3)).grad_fn)
  H.fails("Linear:requires_grad_: flag must be a boolean, got 1", function() m:requires_grad_(1) end)
end

function T.test_loss_call_with_a_target_needing_grad_is_an_error()
  local out, t = mo.randn(3, 2):requires_grad_(), mo.randn(3, 2):requires_grad_()
  H.fails("MSELoss: a module call does not differentiate the target", function() nn.MSELoss()(out, t) end)
  F.mse_loss(out, t):backward()        -- the functional form differentiates both
  lu.assertTrue(maxdiff(out.grad, -t.grad) < 1e-7)
end

function T.test_double_backward_through_a_module_is_an_error()
  local m = nn.Linear(3, 2):requires_grad_()
  local x = mo.randn(2, 3):requires_grad_()
  H.fails("Linear: double backward (create_graph) through a module call is not supported",
          function() mo.autograd.grad(m(x):sum(), {x}, {create_graph = true}) end)
end

-- A module without a backward of its own (written with F) just runs its forward.
function T.test_functional_module()
  local MLP = nn.class("MLP")
  function MLP:_init()
    self:add_module("fc", nn.Linear(4, 3))
    self.fc = self._children[1][2]
  end
  function MLP:forward(x) return F.relu(F.linear(x, self.fc.weight, self.fc.bias)) end
  mo.manual_seed(2)
  local m = MLP():requires_grad_()
  local x = mo.randn(5, 4)
  local y = m(x)
  lu.assertEquals(y.grad_fn.name, "relu")
  y:sum():backward()
  lu.assertNotNil(m.fc.weight.grad)
end

-- fit with a loss function of (model, xb, yb): the same run as the torch7 path.
function T.test_fit_autograd_path()
  local function run(autograd)
    mo.manual_seed(9)
    local X = mo.randn(64, 6)
    local Y = {}
    for i = 1, 64 do Y[i] = (i % 3) + 1 end
    local ds = mo.data.dataset(X, mo.tensor(Y))
    local m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    local opt = mo.optim.SGD(m:parameters(), {lr = 0.1})
    local loss = nn.CrossEntropyLoss()
    if autograd then
      m:requires_grad_()
      loss = function(model, xb, yb)
        local out = model(xb)
        return F.cross_entropy(out, yb), out
      end
    end
    local h = mo.train.fit{model = m, loss = loss, optimizer = opt, data = ds, eval = ds, epochs = 2,
                           batch_size = 16, progress = false, accumulate = 2}
    return h, m
  end
  local h0, m0 = run(false)
  local h1, m1 = run(true)
  for e = 1, 2 do
    lu.assertAlmostEquals(h1.train_loss[e], h0.train_loss[e], 1e-6)
    lu.assertAlmostEquals(h1.eval_loss[e], h0.eval_loss[e], 1e-6)
    lu.assertEquals(h1.train_acc[e], h0.train_acc[e])
  end
  for i, p in ipairs(m1:parameters()) do lu.assertTrue(maxdiff(p, m0:parameters()[i]) < 1e-6) end
  H.fails("fit: the loss function must return a one-element tensor, got 3", mo.train.fit,
          {model = m1, loss = function() return 3 end, optimizer = mo.optim.SGD(m1:parameters(), {lr = 0.1}),
           data = mo.data.dataset(mo.randn(4, 6), mo.tensor({1, 2, 3, 1})), progress = false})
end

return {TestNnAutograd = T}
