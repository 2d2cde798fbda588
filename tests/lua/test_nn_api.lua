-- mo.nn's module API: flat parameters, names, gradient accumulation and
-- zero_grad, train/evaluate with Dropout, buffer reuse, __tostring, state_dict.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"
local nn = mo.nn

local function values(t)
  return t:contiguous():view(-1):totable()
end

local function assert_values_close(a, b, tol, what)
  lu.assertEquals(#a, #b, what)
  for i = 1, #a do
    if math.abs(a[i] - b[i]) > tol * math.max(1, math.abs(b[i])) then
      lu.fail(string.format("%s[%d]: %.9g vs %.9g", what or "value", i, a[i], b[i]))
    end
  end
end

local function mlp()
  return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
end

---------------------------------------------------------------------------
local TestNnParams = {}

function TestNnParams.setUp()
  mo.manual_seed(7)
end

function TestNnParams.test_one_buffer_for_params_and_one_for_grads()
  local model = mlp()
  local p = model:parameters()
  lu.assertEquals(#p, 4)
  for i = 2, 4 do
    lu.assertTrue(p[1]:same_storage(p[i]))
    lu.assertTrue(p[1].grad:same_storage(p[i].grad))
    lu.assertFalse(p[i]:same_storage(p[i].grad))
  end
  local fp, fg = model:flat_parameters()
  lu.assertEquals(fp:numel(), 4 * 8 + 8 + 8 * 3 + 3)
  lu.assertEquals(model:num_parameters(), fp:numel())
  lu.assertTrue(fp:same_storage(p[3]))
  lu.assertTrue(fg:same_storage(p[3].grad))
  -- the layout is the parameters in order: weight 1, bias 1, weight 2, bias 2
  fp:fill(0)
  fp:view(-1):set(4 * 8 + 1, 5)        -- first element of the first bias
  fp:view(-1):set(4 * 8 + 8 + 1, 6)    -- first element of the second weight
  lu.assertEquals(p[2]:get(1), 5)
  lu.assertEquals(p[3]:get(1, 1), 6)
  fg:fill(2)
  lu.assertEquals(p[4].grad:get(3), 2)
end

function TestNnParams.test_parameters_are_stable()
  local model = mlp()
  local a, b = model:parameters(), model:parameters()
  for i = 1, #a do lu.assertTrue(rawequal(a[i], b[i])) end
  -- the same tensors as the layers' fields
  lu.assertTrue(rawequal(a[1], model.modules[1].weight))
  lu.assertTrue(rawequal(a[4], model.modules[3].bias))
  local g1 = a[1].grad
  model:forward(mo.randn(2, 4))
  model:backward(mo.randn(2, 4), mo.randn(2, 3))
  lu.assertTrue(rawequal(g1, model:parameters()[1].grad))
end

function TestNnParams.test_sequential_rehomes_preserving_values()
  local l1, l2 = nn.Linear(3, 2), nn.Linear(2, 2)
  local w1 = values(l1.weight)
  local b2 = values(l2.bias)
  local old_w = l1.weight
  local seq = nn.Sequential(l1, nn.Tanh(), l2)
  lu.assertTrue(rawequal(old_w, l1.weight))          -- same tensor object ...
  lu.assertEquals(values(l1.weight), w1)            -- ... same values ...
  lu.assertEquals(values(l2.bias), b2)
  local fp = seq:flat_parameters()
  lu.assertTrue(l1.weight:same_storage(fp))         -- ... new home
  lu.assertTrue(l2.bias:same_storage(fp))
  -- each child's own flat views are runs of the container's buffers
  local lp, lg = l2:flat_parameters()
  lu.assertTrue(lp:same_storage(fp))
  lu.assertEquals(lp:numel(), 6)
  lu.assertEquals(lg:numel(), 6)
end

function TestNnParams.test_named_parameters()
  local model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1),
                              nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)), nn.Linear(8, 2, false))
  local names = {}
  for i, np in ipairs(model:named_parameters()) do
    names[i] = np[1]
    lu.assertTrue(mo.is_tensor(np[2]))
  end
  lu.assertEquals(names, {"0.weight", "0.bias", "3.0.weight", "3.0.bias", "3.1.weight",
                          "3.1.bias", "4.weight"})
  local lone = {}
  for i, np in ipairs(nn.Linear(2, 3):named_parameters()) do lone[i] = np[1] end
  lu.assertEquals(lone, {"weight", "bias"})
  lu.assertEquals(#nn.ReLU():parameters(), 0)
end

function TestNnParams.test_linear_init_matches_pytorch_bounds()
  local m = nn.Linear(100, 50)
  local bound = 1 / math.sqrt(100)
  local w = values(m.weight)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(w) do lo, hi = math.min(lo, v), math.max(hi, v) end
  lu.assertTrue(lo >= -bound and hi <= bound)
  lu.assertTrue(lo < -0.9 * bound and hi > 0.9 * bound)   -- spread over the whole range
  for _, v in ipairs(values(m.bias)) do lu.assertTrue(math.abs(v) <= bound) end
  -- reproducible with the per-state generator
  mo.manual_seed(99)
  local a = values(nn.Linear(5, 3).weight)
  mo.manual_seed(99)
  lu.assertEquals(values(nn.Linear(5, 3).weight), a)
end

function TestNnParams.test_backward_accumulates()
  local model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.LayerNorm(6), nn.Linear(6, 3))
  local x, g = mo.randn(5, 4), mo.randn(5, 3)
  model:forward(x)
  model:zero_grad()
  model:backward(x, g)
  local _, fg = model:flat_parameters()
  local once = values(fg)
  model:backward(x, g)
  local twice = values(fg)
  local doubled = {}
  for i, v in ipairs(once) do doubled[i] = 2 * v end
  assert_values_close(twice, doubled, 1e-6, "grad after two backward calls")
  local nonzero = 0
  for _, v in ipairs(once) do if v ~= 0 then nonzero = nonzero + 1 end end
  lu.assertTrue(nonzero > #once / 2)
  model:zero_grad()
  lu.assertEquals(fg:abs():max():item(), 0)
end

function TestNnParams.test_zero_grad_set_to_none_and_reattach()
  local model = mlp()
  local x, g = mo.randn(2, 4), mo.randn(2, 3)
  model:forward(x)
  model:zero_grad()
  model:backward(x, g)
  local want = values(select(2, model:flat_parameters()))
  local old = model:parameters()[1].grad
  model:backward(x, g)                      -- stale gradient in the buffer
  model:zero_grad(true)
  for _, p in ipairs(model:parameters()) do lu.assertNil(p.grad) end
  model:backward(x, g)                      -- re-attached, zeroed, then accumulated
  local p = model:parameters()
  lu.assertTrue(rawequal(p[1].grad, old))
  assert_values_close(values(select(2, model:flat_parameters())), want, 1e-6, "fresh grad")
  -- zero_grad() after set_to_none gives the gradient views back as well
  model:zero_grad(true)
  model:zero_grad()
  for _, q in ipairs(model:parameters()) do lu.assertEquals(q.grad:abs():max():item(), 0) end
end

function TestNnParams.test_need_grad_input_false()
  local model = mlp()
  local x, g = mo.randn(2, 4), mo.randn(2, 3)
  model:forward(x)
  model:zero_grad()
  local gi = model:backward(x, g)
  lu.assertTrue(mo.is_tensor(gi))
  local _, fg = model:flat_parameters()
  local want = values(fg)
  model:zero_grad()
  lu.assertNil(model:backward(x, g, false))
  lu.assertEquals(values(fg), want)
end

function TestNnParams.test_add_reflattens()
  local seq = nn.Sequential(nn.Linear(2, 3))
  local w = values(seq.modules[1].weight)
  seq:add(nn.ReLU()):add(nn.Linear(3, 1))
  lu.assertEquals(#seq:parameters(), 4)
  lu.assertEquals(values(seq.modules[1].weight), w)
  local fp = seq:flat_parameters()
  lu.assertEquals(fp:numel(), 2 * 3 + 3 + 3 + 1)
  lu.assertTrue(seq.modules[3].bias:same_storage(fp))
  lu.assertEquals(seq._fuse[1], core.NN_ACT_RELU)
end

function TestNnParams.test_state_dict_round_trip()
  local a, b = mlp(), mlp()
  b:load_state_dict(a:state_dict())
  local x = mo.randn(3, 4)
  lu.assertEquals(values(b:forward(x)), values(a:forward(x)))
  local sd = a:state_dict()
  lu.assertTrue(rawequal(sd["2.bias"], a.modules[3].bias))
  -- a bad state changes nothing
  local before = values(b:flat_parameters())
  local bad = {["0.weight"] = mo.zeros(8, 4), ["0.bias"] = mo.zeros(8), ["2.weight"] = mo.zeros(2, 8),
               ["2.bias"] = mo.zeros(3)}
  local ok, err = pcall(b.load_state_dict, b, bad)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "2.weight")
  lu.assertStrContains(err, "{3, 8}")
  lu.assertStrContains(err, "{2, 8}")
  lu.assertEquals(values(b:flat_parameters()), before)
  sd = a:state_dict()
  sd["0.bias"] = nil
  ok, err = pcall(b.load_state_dict, b, sd)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "missing parameter '0.bias'")
end

---------------------------------------------------------------------------
local TestNnModes = {}

function TestNnModes.setUp()
  mo.manual_seed(11)
end

function TestNnModes.test_dropout_train_and_evaluate()
  local model = nn.Sequential(nn.Dropout(0.25))
  lu.assertTrue(model.training)
  local x = mo.ones(100, 40)
  local y = values(model:forward(x))
  local zeros, kept = 0, 0
  for _, v in ipairs(y) do
    if v == 0 then zeros = zeros + 1 else
      kept = kept + 1
      lu.assertAlmostEquals(v, 1 / 0.75, 1e-6)
    end
  end
  -- 4000 draws at p = 0.25: the count of zeros is 1000 +- 27 (1 sd)
  lu.assertTrue(zeros > 880 and zeros < 1120, "zeros: " .. zeros)
  lu.assertEquals(zeros + kept, 4000)
  -- evaluate(): the identity, recursively, and backward passes the gradient through
  model:evaluate()
  lu.assertFalse(model.training)
  lu.assertFalse(model.modules[1].training)
  local out = model:forward(x)
  lu.assertTrue(rawequal(out, x))
  local g = mo.randn(100, 40)
  lu.assertTrue(rawequal(model:backward(x, g), g))
  model:train()
  lu.assertTrue(model.modules[1].training)
  lu.assertFalse(rawequal(model:forward(x), x))
end

function TestNnModes.test_dropout_is_seeded()
  local d = nn.Dropout(0.5)
  local x = mo.ones(64)
  mo.manual_seed(3)
  local a = values(d:forward(x))
  mo.manual_seed(3)
  local b = values(d:forward(x))
  lu.assertEquals(a, b)
  local c = values(d:forward(x))
  lu.assertNotEquals(a, c)
end

function TestNnModes.test_dropout_edge_probabilities()
  local x = mo.randn(3, 3)
  lu.assertTrue(rawequal(nn.Dropout(0):forward(x), x))
  local y = nn.Dropout(1):forward(x)
  lu.assertEquals(y:abs():max():item(), 0)
end

function TestNnModes.test_buffers_are_reused()
  local model = mlp()
  local ce = nn.CrossEntropyLoss()
  local x1, x2 = mo.randn(5, 4), mo.randn(5, 4)
  local y = mo.tensor{1, 2, 3, 1, 2}
  local o1 = model:forward(x1)
  local g1 = ce:backward(o1, y)
  local gi1 = model:backward(x1, g1)
  local o2 = model:forward(x2)
  local g2 = ce:backward(o2, y)
  local gi2 = model:backward(x2, g2)
  lu.assertTrue(rawequal(o1, o2))
  lu.assertTrue(rawequal(g1, g2))
  lu.assertTrue(rawequal(gi1, gi2))
  -- a new batch size gets new buffers, with the right shape
  local o3 = model:forward(mo.randn(2, 4))
  lu.assertFalse(rawequal(o3, o1))
  lu.assertEquals(o3:shape(), {2, 3})
end

function TestNnModes.test_tostring_lists_layers_and_counts()
  local s = tostring(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2),
                                   nn.Linear(256, 10)))
  lu.assertStrContains(s, "Sequential(")
  lu.assertStrContains(s, "(0): Linear(in_features=784, out_features=256, bias=true)  -- 200,960 params")
  lu.assertStrContains(s, "(1): ReLU()")
  lu.assertStrContains(s, "(2): Dropout(p=0.2)")
  lu.assertStrContains(s, "(3): Linear(in_features=256, out_features=10, bias=true)  -- 2,570 params")
  lu.assertStrContains(s, ")  -- 203,530 parameters")
  lu.assertStrContains(tostring(nn.LayerNorm(8)), "LayerNorm(8, eps=1e-05, elementwise_affine=true)")
  lu.assertStrContains(tostring(nn.CrossEntropyLoss{label_smoothing = 0.1}), "label_smoothing=0.1")
end

function TestNnModes.test_call_is_forward()
  local m = nn.Linear(3, 2)
  local x = mo.randn(4, 3)
  lu.assertEquals(values(m(x)), values(m:forward(x)))
  local ce = nn.CrossEntropyLoss()
  local out = mo.randn(2, 2)
  lu.assertEquals(ce(out, {1, 2}), ce:forward(out, {1, 2}))
end

function TestNnModes.test_custom_module()
  -- a user-defined module with a parameter, built with nn.class
  local Scale = nn.class("Scale")
  function Scale:_init(n)
    self:register_parameter("alpha", mo.ones(n))
    self:flatten_parameters()
  end
  function Scale:forward(x)
    self.output = x:mul(self.alpha:view(1, -1):contiguous():view(-1):get(1))
    return self.output
  end
  local s = Scale(3)
  local model = nn.Sequential(nn.Linear(2, 3), s)
  lu.assertEquals(#model:parameters(), 3)
  lu.assertEquals(model:named_parameters()[3][1], "1.alpha")
  lu.assertTrue(s.alpha:same_storage((model:flat_parameters())))
  local ok, err = pcall(s.backward, s, mo.zeros(1), mo.zeros(1))
  lu.assertFalse(ok)
  lu.assertStrContains(err, "Scale:backward is not implemented")
end

return {TestNnParams = TestNnParams, TestNnModes = TestNnModes}
