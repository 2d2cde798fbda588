-- tests/lua/test_conv_nn.lua - the CNN modules (Conv2d, MaxPool2d, AvgPool2d,
-- AdaptiveAvgPool2d, BatchNorm1d/2d, Flatten, Dropout2d):
--   * PyTorch state_dicts (tests/golden/make_cnn_fixture.py, safetensors with PyTorch's
--     keys and an I64 num_batches_tracked) load unchanged and give PyTorch's logits,
--     loss, parameter gradients and updated running statistics;
--   * train/evaluate switching, BatchNorm's buffers (in state_dict and checkpoints, not in
--     parameters() nor touched by optimizers), Dropout2d's channel masks and seeding,
--     Flatten, PyTorch's default initialization, and the errors.
local lu = require "luaunit"
local mo = require "moonopt"
local helpers = require "helpers"

local nn = mo.nn
local fails = helpers.fails

local GOLDEN = "tests/golden/"

-- max |a - b| / (atol + rtol |b|) over the elements must stay <= 1
local function assert_close(a, b, what, atol, rtol)
  atol, rtol = atol or 1e-5, rtol or 1e-4
  lu.assertEquals(a:shape(), b:shape(), what .. ": shape")
  local fa, fb = helpers.flatten(a:totable()), helpers.flatten(b:totable())
  for i = 1, #fa do
    local tol = atol + rtol * math.abs(fb[i])
    local ok = math.abs(fa[i] - fb[i]) <= tol   -- false for NaN too
    if not ok then
      lu.fail(string.format("%s: element %d is %.9g, PyTorch %.9g", what, i, fa[i], fb[i]))
    end
  end
end

-- The fixture's tensors; its "model.<key>" entries as a state dict with PyTorch's keys.
local function fixture(name)
  local ts = mo.load_tensors(GOLDEN .. name)
  local sd = {}
  for k, v in pairs(ts) do
    local key = k:match("^model%.(.*)$")
    if key then sd[key] = v end
  end
  return ts, sd
end

local function plain_cnn()
  return nn.Sequential(
    nn.Conv2d(1, 8, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))
end

local function bn_cnn()
  return nn.Sequential(
    nn.Conv2d(1, 8, 3, {padding = 1, bias = false}), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, {padding = 2, dilation = 2, groups = 2}), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout2d(0.25),
    nn.AvgPool2d(3, {stride = 2, padding = 1, count_include_pad = false}), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
    nn.Linear(144, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
end

local function check_grads(model, ts, what)
  for _, np in ipairs(model:named_parameters()) do
    assert_close(np[2].grad, ts["grad." .. np[1]], what .. " grad " .. np[1], 1e-6, 2e-4)
  end
end

local TestCnnFixture = {}

function TestCnnFixture.test_plain_cnn_matches_pytorch()
  local ts, sd = fixture("cnn_fixture.safetensors")
  local model = plain_cnn()
  model:load_state_dict(sd)      -- strict: the keys are exactly PyTorch's
  local out = model:forward(ts.input)
  assert_close(out, ts.logits, "logits")
  local loss, g = nn.CrossEntropyLoss():forward_backward(out, ts.target)
  lu.assertAlmostEquals(loss, ts.loss:item(), 1e-5)
  model:zero_grad()
  model:backward(ts.input, g)
  check_grads(model, ts, "cnn")
end

function TestCnnFixture.test_bn_cnn_matches_pytorch()
  local ts, sd = fixture("cnn_bn_fixture.safetensors")
  local model = bn_cnn()
  model:load_state_dict(sd)
  lu.assertEquals(model.modules[2].num_batches_tracked:item(), 3)   -- read from an I64
  -- evaluation: the running statistics
  model:evaluate()
  assert_close(model:forward(ts.input), ts.logits_eval, "eval logits")
  -- training (Dropout2d alone in evaluation mode, as the fixture): batch statistics
  model:train()
  model.modules[8]:evaluate()
  local out = model:forward(ts.input)
  assert_close(out, ts.logits_train, "train logits", 1e-5, 2e-4)
  local loss, g = nn.CrossEntropyLoss():forward_backward(out, ts.target)
  lu.assertAlmostEquals(loss, ts.loss_train:item(), 1e-5)
  model:zero_grad()
  model:backward(ts.input, g)
  check_grads(model, ts, "cnn_bn")
  -- the running statistics moved as PyTorch's (unbiased variance, momentum 0.1)
  for _, nb in ipairs(model:named_buffers()) do
    local want = ts["after." .. nb[1]]
    lu.assertNotNil(want, nb[1])
    assert_close(nb[2], want, "after " .. nb[1], 1e-6, 1e-5)
  end
  lu.assertEquals(model.modules[2].num_batches_tracked:item(), 4)
end

function TestCnnFixture.test_state_dict_keys_are_pytorchs()
  local _, sd = fixture("cnn_bn_fixture.safetensors")
  local keys, want = {}, {}
  for k in pairs(bn_cnn():state_dict()) do keys[#keys + 1] = k end
  for k in pairs(sd) do want[#want + 1] = k end
  table.sort(keys)
  table.sort(want)
  lu.assertEquals(keys, want)
end

-- ---------------------------------------------------------------------------------------

local TestConvModules = {}

function TestConvModules.test_default_init_is_pytorchs()
  mo.manual_seed(5)
  local c = nn.Conv2d(6, 4, {3, 2}, {groups = 2})
  lu.assertEquals(c.weight:shape(), {4, 3, 3, 2})
  lu.assertEquals(c.bias:shape(), {4})
  -- fan_in = 6/2 * 3 * 2 = 18; weight first, then bias, both U(-1/sqrt(18), 1/sqrt(18))
  local bound = 1 / math.sqrt(18)
  mo.manual_seed(5)
  local w = mo.empty(4, 3, 3, 2):uniform_(-bound, bound)
  local b = mo.empty(4):uniform_(-bound, bound)
  lu.assertEquals(c.weight:totable(), w:totable())
  lu.assertEquals(c.bias:totable(), b:totable())
  lu.assertNil(nn.Conv2d(1, 2, 3, {bias = false}).bias)
  local bn = nn.BatchNorm2d(3)
  lu.assertEquals(bn.weight:totable(), {1, 1, 1})
  lu.assertEquals(bn.bias:totable(), {0, 0, 0})
  lu.assertEquals(bn.running_mean:totable(), {0, 0, 0})
  lu.assertEquals(bn.running_var:totable(), {1, 1, 1})
  lu.assertEquals(bn.num_batches_tracked:item(), 0)
  lu.assertNil(nn.BatchNorm1d(3, {affine = false}).weight)
  lu.assertNil(nn.BatchNorm1d(3, {track_running_stats = false}).running_mean)
end

function TestConvModules.test_buffers_are_not_parameters()
  local model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 1))
  local names = {}
  for _, np in ipairs(model:named_parameters()) do names[#names + 1] = np[1] end
  lu.assertEquals(names, {"0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"})
  local bnames = {}
  for _, nb in ipairs(model:named_buffers()) do bnames[#bnames + 1] = nb[1] end
  lu.assertEquals(bnames, {"1.running_mean", "1.running_var", "1.num_batches_tracked"})
  lu.assertEquals(#model:parameters(), 6)
  lu.assertEquals(model:num_parameters(), 20 + 4 + 3)
  local sd = model:state_dict()
  lu.assertTrue(rawequal(sd["1.running_var"], model.modules[2].running_var))
  -- an optimizer step changes parameters, and the running statistics only through forward
  local opt = mo.optim.SGD(model:parameters(), {lr = 0.1, weight_decay = 0.5})
  local x = mo.randn(4, 1, 3, 3)
  model:evaluate()
  local out = model:forward(x)
  model:backward(x, mo.ones_like(out))
  opt:step()
  lu.assertEquals(model.modules[2].running_mean:totable(), {0, 0})
  lu.assertEquals(model.modules[2].running_var:totable(), {1, 1})
  lu.assertEquals(model.modules[2].num_batches_tracked:item(), 0)
  -- load_state_dict checks buffers too
  sd = {}
  for k, v in pairs(model:state_dict()) do sd[k] = v:clone() end
  sd["1.running_mean"] = mo.zeros(3)
  fails("shape mismatch for '1.running_mean'", model.load_state_dict, model, sd)
  sd["1.running_mean"] = nil
  fails("missing parameter '1.running_mean'", model.load_state_dict, model, sd)
end

function TestConvModules.test_train_and_evaluate_switch_bn_and_dropout2d()
  mo.manual_seed(8)
  local model = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout2d(0.5))
  local bn = model.modules[1]
  local x = mo.randn(4, 3, 2, 2):mul_(3):add_(1)
  -- training: batch statistics (each channel of the output has mean 0 before dropout)
  model:train()
  local y = bn:forward(x)
  for c = 1, 3 do
    lu.assertAlmostEquals(y:narrow(2, c, 1):mean():item(), 0, 1e-5)
  end
  lu.assertEquals(bn.num_batches_tracked:item(), 1)
  local rm = bn.running_mean:clone()
  -- evaluation: running statistics, which do not move, and dropout is the identity
  model:eval()
  lu.assertFalse(bn.training)
  lu.assertFalse(model.modules[2].training)
  local y1 = model:forward(x):clone()
  local y2 = model:forward(x)
  lu.assertEquals(y1:totable(), y2:totable())
  lu.assertEquals(bn.running_mean:totable(), rm:totable())
  lu.assertEquals(bn.num_batches_tracked:item(), 1)
  -- y = (x - running_mean) / sqrt(running_var + eps) in evaluation mode
  local rv = bn.running_var
  local want = x:sub(rm:view(1, 3, 1, 1)):div(rv:view(1, 3, 1, 1):add(1e-5):sqrt())
  assert_close(y2, want, "eval BN", 1e-5, 1e-5)
  model:train()
  lu.assertTrue(bn.training and model.modules[2].training)
end

function TestConvModules.test_bn_running_stats_survive_a_checkpoint()
  mo.manual_seed(9)
  local function make()
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Flatten(), nn.BatchNorm1d(12))
  end
  local model = make()
  for _ = 1, 3 do model:forward(mo.randn(5, 2, 2, 2)) end
  local path = os.tmpname()
  mo.save(path, {model = model})
  local ts = mo.load_tensors(path)
  lu.assertNotNil(ts["model.1.running_mean"])
  lu.assertNotNil(ts["model.3.num_batches_tracked"])
  local other = make()
  mo.load(path, {model = other})
  os.remove(path)
  for name, t in pairs(model:state_dict()) do
    lu.assertEquals(other:state_dict()[name]:totable(), t:totable(), name)
  end
  lu.assertEquals(other.modules[4].num_batches_tracked:item(), 3)
  model:evaluate()
  other:evaluate()
  local x = mo.randn(2, 2, 2, 2)
  lu.assertEquals(other:forward(x):totable(), model:forward(x):totable())
end

function TestConvModules.test_dropout2d_zeroes_whole_channels()
  local d = nn.Dropout2d(0.4)
  local x = mo.randn(50, 8, 3, 3):add_(5)      -- no zero inputs
  mo.manual_seed(12)
  local y = d:forward(x):clone()
  local kept, scale = 0, 1 / 0.6
  for n = 1, 50 do
    for c = 1, 8 do
      local plane, src = y[n][c], x[n][c]
      local zeros = plane:eq(0):sum():item()
      lu.assertTrue(zeros == 0 or zeros == 9, "a channel is zeroed whole or not at all")
      if zeros == 0 then
        kept = kept + 1
        assert_close(plane, src:mul(scale), "kept channel", 1e-5, 1e-6)
      end
    end
  end
  -- 400 channels, keep probability 0.6: 240 +- 4 sd (sd ~ 9.8)
  lu.assertTrue(math.abs(kept - 240) < 40, "kept " .. kept)
  -- backward applies the same mask
  local g = d:backward(x, mo.ones_like(x))
  lu.assertEquals(g:ne(0):totable(), y:ne(0):totable())
  -- seeded
  mo.manual_seed(12)
  lu.assertEquals(d:forward(x):totable(), y:totable())
  lu.assertNotEquals(d:forward(x):totable(), y:totable())
  -- p = 0 and evaluation mode: identity; p = 1: all zero
  lu.assertTrue(rawequal(nn.Dropout2d(0):forward(x), x))
  lu.assertTrue(rawequal(nn.Dropout2d(0.5):evaluate():forward(x), x))
  lu.assertEquals(nn.Dropout2d(1):forward(x):abs():sum():item(), 0)
  -- {C, H, W} input: one mask per channel
  local y3 = nn.Dropout2d(0.5):forward(mo.ones(6, 2, 2))
  for c = 1, 6 do lu.assertTrue(y3[c]:sum():item() == 0 or y3[c]:sum():item() == 8) end
end

function TestConvModules.test_flatten()
  local x = mo.arange(2 * 3 * 4 * 5):view(2, 3, 4, 5)
  local f = nn.Flatten()
  local y = f:forward(x)
  lu.assertEquals(y:shape(), {2, 60})
  lu.assertTrue(y:same_storage(x))
  lu.assertEquals(f:backward(x, y):shape(), {2, 3, 4, 5})
  lu.assertEquals(nn.Flatten(2, 3):forward(x):shape(), {2, 12, 5})
  lu.assertEquals(nn.Flatten(1):forward(x):shape(), {120})
  lu.assertEquals(nn.Flatten(-2):forward(x):shape(), {2, 3, 20})
  lu.assertEquals(tostring(f), "Flatten(start_dim=2, end_dim=-1)")
  fails("Flatten: start_dim must be a non-zero integer", nn.Flatten, 0)
  fails("Flatten:forward: dimensions 3 .. 2 do not fit input {2, 3, 4, 5}",
        function() nn.Flatten(3, 2):forward(x) end)
  fails("Flatten:forward: dimensions 2 .. -1 do not fit input {6}", function() f:forward(mo.zeros(6)) end)
end

function TestConvModules.test_pool_shapes_and_repr()
  local x = mo.randn(2, 3, 7, 6)
  lu.assertEquals(nn.MaxPool2d(2):forward(x):shape(), {2, 3, 3, 3})
  lu.assertEquals(nn.MaxPool2d({3, 2}, {stride = 1, padding = {1, 0}}):forward(x):shape(), {2, 3, 7, 5})
  lu.assertEquals(nn.AvgPool2d(3, {stride = 2, padding = 1}):forward(x):shape(), {2, 3, 4, 3})
  lu.assertEquals(nn.AdaptiveAvgPool2d({2, 4}):forward(x):shape(), {2, 3, 2, 4})
  lu.assertEquals(nn.Conv2d(3, 5, 3, {stride = 2, padding = 1, dilation = 2}):forward(x):shape(), {2, 5, 3, 2})
  lu.assertEquals(tostring(nn.MaxPool2d(2)), "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))")
  lu.assertStrContains(tostring(nn.Conv2d(3, 6, 3, {padding = 1, groups = 3})),
                       "Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=3)")
  -- a mean pool of ones is one (count_include_pad = false), a ninth at a padded corner when true
  local ones = mo.ones(1, 1, 4, 4)
  lu.assertEquals(nn.AvgPool2d(3, {stride = 1, padding = 1, count_include_pad = false}):forward(ones):min():item(), 1)
  lu.assertAlmostEquals(nn.AvgPool2d(3, {stride = 1, padding = 1}):forward(ones):get(1, 1, 1, 1), 4 / 9, 1e-6)
end

function TestConvModules.test_errors_name_the_module_and_shapes()
  local conv = nn.Conv2d(3, 4, 3)
  fails("Conv2d:forward: expected input {N, 3, H, W}, got {2, 1, 8, 8}",
        function() conv:forward(mo.zeros(2, 1, 8, 8)) end)
  fails("Conv2d:forward: expected input {N, 3, H, W}, got {3, 8, 8}", function() conv:forward(mo.zeros(3, 8, 8)) end)
  fails("Conv2d:forward: input {1, 3, 2, 5} with padding (0, 0) is smaller than the (dilated) kernel (3, 3): "
        .. "the output would be 0x3", function() conv:forward(mo.zeros(1, 3, 2, 5)) end)
  fails("kernel (5, 5)", function() nn.Conv2d(1, 1, 3, {dilation = 2}):forward(mo.zeros(1, 1, 4, 9)) end)
  fails("MaxPool2d:forward: input {1, 1, 1, 4} with padding (0, 0) is smaller than the kernel (2, 2)",
        function() nn.MaxPool2d(2):forward(mo.zeros(1, 1, 1, 4)) end)
  fails("MaxPool2d:forward: expected input {N, C, H, W}, got {4, 4}",
        function() nn.MaxPool2d(2):forward(mo.zeros(4, 4)) end)
  fails("BatchNorm2d:forward: expected input {N, 3, H, W}, got {2, 4, 5, 5}",
        function() nn.BatchNorm2d(3):forward(mo.zeros(2, 4, 5, 5)) end)
  fails("BatchNorm1d:forward: expected input {N, 3} or {N, 3, L}, got {2, 4}",
        function() nn.BatchNorm1d(3):forward(mo.zeros(2, 4)) end)
  fails("BatchNorm1d:forward: expected more than 1 value per channel when training, got input {1, 3}",
        function() nn.BatchNorm1d(3):forward(mo.zeros(1, 3)) end)
  fails("Dropout2d:forward: expected input {N, C, H, W} or {C, H, W}, got {4, 4}",
        function() nn.Dropout2d():forward(mo.zeros(4, 4)) end)
  fails("Conv2d:forward: input must be a tensor {N, 3, H, W}, got a table", function() conv:forward({}) end)
  -- constructors
  fails("Conv2d: in_channels must be a positive integer, got 0", nn.Conv2d, 0, 4, 3)
  fails("Conv2d: kernel_size must be an integer >= 1 or a list {h, w} of them, got 0", nn.Conv2d, 1, 4, 0)
  fails("Conv2d: padding must be an integer >= 0 or a list {h, w} of them, got {1, -1}", nn.Conv2d, 1, 4, 3,
        {padding = {1, -1}})
  fails("Conv2d: stride must be an integer >= 1", nn.Conv2d, 1, 4, 3, {stride = 1.5})
  fails("Conv2d: in_channels 3 and out_channels 4 must both be divisible by groups 2", nn.Conv2d, 3, 4, 3, {groups = 2})
  fails("Conv2d: unknown option 'pad'", nn.Conv2d, 1, 4, 3, {pad = 1})
  fails("Conv2d: bias must be a boolean, got 0", nn.Conv2d, 1, 4, 3, {bias = 0})
  fails("MaxPool2d: padding (2, 2) must be at most half of kernel_size (3, 3)", nn.MaxPool2d, 3, {padding = 2})
  fails("AvgPool2d: count_include_pad must be a boolean", nn.AvgPool2d, 2, {count_include_pad = 1})
  fails("AdaptiveAvgPool2d: output_size must be an integer >= 1", nn.AdaptiveAvgPool2d, 0)
  fails("BatchNorm2d: momentum must be a number in [0, 1], got 2", nn.BatchNorm2d, 3, {momentum = 2})
  fails("BatchNorm2d: eps must be a positive number, got 0", nn.BatchNorm2d, 3, {eps = 0})
  fails("BatchNorm1d: unknown option 'affin'", nn.BatchNorm1d, 3, {affin = false})
  fails("Dropout2d: p (the dropout probability) must be a number in [0, 1], got 1.5", nn.Dropout2d, 1.5)
end

-- model:double() converts BatchNorm's running statistics with the parameters (they were
-- left float32 once, and the float64 model's forward failed with a dtype mismatch); the
-- float64 model then computes what the float32 one does, to float32's precision.
function TestConvModules.test_double_converts_batchnorm_buffers()
  mo.manual_seed(3)
  local bn2, bn1 = nn.BatchNorm2d(3), nn.BatchNorm1d(2)
  local model = nn.Sequential(nn.Conv2d(2, 3, 3, {padding = 1}), bn2, nn.ReLU(),
                              nn.Flatten(), nn.Linear(3 * 4 * 4, 2), bn1)
  local x = mo.randn(4, 2, 4, 4)
  model:train()
  model:forward(x)                               -- running statistics away from 0 and 1
  model:evaluate()
  local y32 = model:forward(x)
  model:double()
  for _, nb in ipairs(model:named_buffers()) do lu.assertEquals(nb[2].dtype, "float64", nb[1]) end
  lu.assertEquals(#model:named_buffers(), 6)
  local y64 = model:forward(x:double())
  lu.assertEquals(y64.dtype, "float64")
  lu.assertTrue((y64:float() - y32):abs():max():item() < 1e-5)
  model:float()
  lu.assertEquals(bn2.running_mean.dtype, "float32")
  lu.assertEquals(bn1.running_var.dtype, "float32")
  lu.assertEquals(bn2.num_batches_tracked.dtype, "float64")   -- a count stays float64
  lu.assertEquals(bn2.num_batches_tracked:item(), 1)
end

return {TestCnnFixture = TestCnnFixture, TestConvModules = TestConvModules}
