-- Loss and activation values against PyTorch 1.13, and bad inputs of every mo.nn module.
--
-- The constants were computed with /usr/bin/python3 and torch 1.13:
--   x = torch.tensor([[1.5, -0.25, 0.75, 2.0, -1.0], [0.1, 0.2, 0.3, 0.4, 0.5],
--                     [-2.0, 3.0, 0.0, -0.5, 1.25]], requires_grad=True)
--   t = torch.tensor([4, 1, 2])                       # 0-based: Lua's {5, 2, 3}
--   l = F.cross_entropy(x, t, label_smoothing=ls); g, = torch.autograd.grad(l, x)
--   F.cross_entropy(x, t, reduction='sum')
--   F.cross_entropy(torch.tensor([[1e4, 0., -1e4], [5e3, 1e4, 1e4]]), torch.tensor([1, 0]))
--   F.gelu(torch.tensor([1.0, -0.5, 2.5])) and with approximate='tanh'
--   o = [[0.5, -1.0], [2.0, 0.25]], y = [[1., 0.], [0., 1.]]:
--   F.binary_cross_entropy_with_logits(o, y), F.mse_loss(o, y)
--   F.binary_cross_entropy_with_logits(torch.tensor([100., -100.]), torch.tensor([0., 1.]))
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"
local nn = mo.nn

local LOGITS = {{1.5, -0.25, 0.75, 2.0, -1.0}, {0.1, 0.2, 0.3, 0.4, 0.5}, {-2.0, 3.0, 0.0, -0.5, 1.25}}
local TARGET = {5, 2, 3}
local CE = 2.8892982006073
local CE_GRAD = {
  {0.0987084955, 0.0171529669, 0.0466265939, 0.162742794, -0.325230867},
  {0.0540401191, -0.273609787, 0.0660047531, 0.0729465336, 0.0806183815},
  {0.00178182404, 0.26444611, -0.320167333, 0.00798557978, 0.0459538363}}
local CE_LS = 2.820964813232422            -- label_smoothing = 0.1
local CE_LS_GRAD = {
  {0.0920418203, 0.0104862992, 0.0399599224, 0.156076118, -0.298564166},
  {0.0473734438, -0.246943086, 0.0593380779, 0.0662798509, 0.0739517063},
  {-0.00488484278, 0.25777939, -0.293500662, 0.00131891191, 0.0392871611}}
local CE_SUM = 8.66789436340332

local function assert_matrix_close(t, want, tol)
  local got = t:totable()
  lu.assertEquals(#got, #want)
  for i = 1, #want do
    for j = 1, #want[i] do
      lu.assertAlmostEquals(got[i][j], want[i][j], tol, string.format("[%d][%d]", i, j))
    end
  end
end

local function assert_error(pattern_list, f, ...)
  local ok, err = pcall(f, ...)
  lu.assertFalse(ok, "expected an error")
  err = tostring(err)
  for _, p in ipairs(pattern_list) do lu.assertStrContains(err, p) end
  return err
end

---------------------------------------------------------------------------
local TestNnLossValues = {}

function TestNnLossValues.test_cross_entropy_matches_pytorch()
  local ce = nn.CrossEntropyLoss()
  local x = mo.tensor(LOGITS)
  lu.assertAlmostEquals(ce:forward(x, TARGET), CE, 1e-6)
  assert_matrix_close(ce:backward(x, TARGET), CE_GRAD, 1e-6)
  -- a tensor of class indices gives the same
  lu.assertAlmostEquals(ce:forward(x, mo.tensor(TARGET)), CE, 1e-6)
  lu.assertAlmostEquals(ce:forward(x, mo.tensor{{5}, {2}, {3}}), CE, 1e-6)
  lu.assertAlmostEquals(nn.CrossEntropyLoss{reduction = "sum"}:forward(x, TARGET), CE_SUM, 1e-5)
end

function TestNnLossValues.test_label_smoothing_matches_pytorch()
  local ce = nn.CrossEntropyLoss{label_smoothing = 0.1}
  local x = mo.tensor(LOGITS)
  lu.assertAlmostEquals(ce:forward(x, TARGET), CE_LS, 1e-6)
  assert_matrix_close(ce:backward(x, TARGET), CE_LS_GRAD, 1e-6)
  local loss, grad = ce:forward_backward(x, TARGET)
  lu.assertAlmostEquals(loss, CE_LS, 1e-6)
  assert_matrix_close(grad, CE_LS_GRAD, 1e-6)
end

function TestNnLossValues.test_cross_entropy_is_stable_for_huge_logits()
  local ce = nn.CrossEntropyLoss()
  local x = mo.tensor{{1e4, 0, -1e4}, {5e3, 1e4, 1e4}}
  local loss = ce:forward(x, {2, 1})
  lu.assertAlmostEquals(loss, 7500.3466796875, 1e-3)
  local g = ce:backward(x, {2, 1}):totable()
  -- softmax rows {1, 0, 0} and {0, 0.5, 0.5}, minus the one-hot, over B = 2
  assert_matrix_close(mo.tensor(g), {{0.5, -0.5, 0}, {-0.5, 0.25, 0.25}}, 1e-6)
  local huge = ce:forward(mo.tensor{{3e38, -3e38}}, {2})
  lu.assertTrue(huge == huge and huge < math.huge and huge > 1e38)
end

function TestNnLossValues.test_bce_and_mse_match_pytorch()
  local o = mo.tensor{{0.5, -1.0}, {2.0, 0.25}}
  local y = mo.tensor{{1, 0}, {0, 1}}
  lu.assertAlmostEquals(nn.BCEWithLogitsLoss():forward(o, y), 0.8725515007972717, 1e-6)
  lu.assertAlmostEquals(nn.MSELoss():forward(o, y), 1.453125, 1e-7)
  lu.assertAlmostEquals(nn.MSELoss{reduction = "sum"}:forward(o, y), 4 * 1.453125, 1e-6)
  -- stable for large logits: log(1 + exp(100)) computed without overflow
  lu.assertAlmostEquals(nn.BCEWithLogitsLoss():forward(mo.tensor{100, -100}, mo.tensor{0, 1}), 100,
                        1e-4)
  -- MSE gradient 2 (o - y) / N
  assert_matrix_close(nn.MSELoss():backward(o, y), {{-0.25, -0.5}, {1.0, -0.375}}, 1e-7)
end

function TestNnLossValues.test_activation_values_match_pytorch()
  local x = mo.tensor{1.0, -0.5, 2.5}
  local exact = nn.GELU():forward(x):totable()
  local approx = nn.GELU{approximate = "tanh"}:forward(x):totable()
  local want_exact = {0.8413447141647339, -0.1542687863111496, 2.48447585105896}
  local want_approx = {0.8411920070648193, -0.1542859971523285, 2.4849157333374023}
  for i = 1, 3 do
    lu.assertAlmostEquals(exact[i], want_exact[i], 1e-6)
    lu.assertAlmostEquals(approx[i], want_approx[i], 1e-6)
  end
  lu.assertEquals(nn.ReLU():forward(mo.tensor{-1, 0, 2}):totable(), {0, 0, 2})
  lu.assertEquals(nn.LeakyReLU():forward(mo.tensor{-1, 2}):totable()[1], mo.tensor{-0.01}:get(1))
  local s = nn.Sigmoid():forward(mo.tensor{-100, 0, 100}):totable()
  lu.assertEquals(s, {mo.tensor{math.exp(-100)}:get(1), 0.5, 1})
  local sm = nn.Softmax(2):forward(mo.tensor{{1, 2, 3}, {1000, 1000, 1000}}):totable()
  lu.assertAlmostEquals(sm[1][3], math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)), 1e-6)
  lu.assertAlmostEquals(sm[2][1], 1 / 3, 1e-6)
end

function TestNnLossValues.test_layernorm_values()
  local ln = nn.LayerNorm(4)
  local y = ln:forward(mo.tensor{{1, 2, 3, 4}, {10, 10, 10, 10}}):totable()
  local sd = math.sqrt(1.25 + 1e-5)
  for j = 1, 4 do lu.assertAlmostEquals(y[1][j], (j - 2.5) / sd, 1e-6) end
  for j = 1, 4 do lu.assertEquals(y[2][j], 0) end
  -- large common offsets do not cancel (statistics in double)
  local z = ln:forward(mo.tensor{{1e4 + 1, 1e4 + 2, 1e4 + 3, 1e4 + 4}}):totable()
  for j = 1, 4 do lu.assertAlmostEquals(z[1][j], (j - 2.5) / sd, 1e-3) end
end

---------------------------------------------------------------------------
local TestNnErrors = {}

function TestNnErrors.test_linear_shape_errors_name_both_shapes()
  local m = nn.Linear(6, 4)
  assert_error({"Linear:forward", "{3, 5}", "{4, 6}"}, m.forward, m, mo.zeros(3, 5))
  assert_error({"Linear:forward", "2-d", "{6}"}, m.forward, m, mo.zeros(6))
  assert_error({"Linear:forward", "moonopt.Tensor expected, got nil"}, m.forward, m, nil)
  m:forward(mo.zeros(3, 6))
  assert_error({"Linear:backward", "{3, 5}", "{3, 4}"}, m.backward, m, mo.zeros(3, 6), mo.zeros(3, 5))
  local model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(2, 1))
  assert_error({"Linear:forward", "{5, 3}", "{1, 2}"}, model.forward, model, mo.zeros(5, 4))
end

function TestNnErrors.test_other_module_shape_errors()
  local ln = nn.LayerNorm(4)
  assert_error({"LayerNorm:forward", "{2, 5}", "normalized size 4"}, ln.forward, ln, mo.zeros(2, 5))
  ln:forward(mo.zeros(2, 4))
  assert_error({"LayerNorm:backward", "{2, 3}", "{2, 4}"}, ln.backward, ln, mo.zeros(2, 4), mo.zeros(2, 3))
  local r = nn.GELU()
  assert_error({"GELU:backward", "{2, 3}", "{3, 2}"}, r.backward, r, mo.zeros(3, 2), mo.zeros(2, 3))
  local sm = nn.Softmax(3)
  assert_error({"Softmax:forward", "dimension 3", "{2, 2}"}, sm.forward, sm, mo.zeros(2, 2))
  local relu = nn.ReLU()
  assert_error({"ReLU:backward", "call forward first"}, relu.backward, relu, mo.zeros(2), mo.zeros(2))
  local d = nn.Dropout(0.5)
  d:forward(mo.zeros(2, 2))
  assert_error({"Dropout:backward", "{3}", "{2, 2}"}, d.backward, d, mo.zeros(2, 2), mo.zeros(3))
end

function TestNnErrors.test_loss_shape_errors()
  local mse = nn.MSELoss()
  assert_error({"MSELoss:forward", "{3, 1}", "{3}"}, mse.forward, mse, mo.zeros(3, 1), mo.zeros(3))
  assert_error({"MSELoss:backward", "{3, 1}", "{3}"}, mse.backward, mse, mo.zeros(3, 1), mo.zeros(3))
  local bce = nn.BCEWithLogitsLoss()
  assert_error({"BCEWithLogitsLoss:forward", "{2}", "{4}"}, bce.forward, bce, mo.zeros(2), mo.zeros(4))
  local ce = nn.CrossEntropyLoss()
  assert_error({"CrossEntropyLoss:forward", "{4}", "{3, 5}"}, ce.forward, ce, mo.zeros(3, 5), mo.zeros(4))
  assert_error({"CrossEntropyLoss:forward", "2-d", "{5}"}, ce.forward, ce, mo.zeros(5), {1})
  assert_error({"CrossEntropyLoss:forward", "2 class indices for a batch of 3"}, ce.forward, ce,
               mo.zeros(3, 5), {1, 2})
  assert_error({"CrossEntropyLoss:forward", "table or moonopt.Tensor expected, got string"}, ce.forward,
               ce, mo.zeros(3, 5), "abc")
end

function TestNnErrors.test_class_index_errors_name_the_index()
  local ce = nn.CrossEntropyLoss()
  local x = mo.zeros(3, 5)
  assert_error({"target[2] = 0 is not a class index in 1..5"}, ce.forward, ce, x, {1, 0, 3})
  assert_error({"target[3] = 6 is not a class index in 1..5"}, ce.forward, ce, x, {1, 2, 6})
  assert_error({"target[1] = 2.5 is not a class index"}, ce.forward, ce, x, {2.5, 1, 1})
  assert_error({"target[2] must be a class index, got string"}, ce.forward, ce, x, {1, "2", 3})
  assert_error({"CrossEntropyLoss:backward", "target[3] = 6 is not a class index in 1..5"},
               ce.backward, ce, x, mo.tensor{1, 2, 6})
  assert_error({"target[1] = 0 is not a class index in 1..5"}, ce.forward, ce, x, mo.tensor{0, 2, 3})
  assert_error({"target[2] = -1 is not"}, ce.forward, ce, x, mo.tensor{1, -1, 3})
  -- nothing was written: the gradient buffer keeps the last good gradient
  local g = ce:backward(x, {1, 2, 3})
  local before = g:totable()
  pcall(ce.backward, ce, x, {1, 2, 9})
  lu.assertEquals(g:totable(), before)
end

function TestNnErrors.test_constructor_errors()
  assert_error({"Linear: in_features must be a positive integer, got 0"}, nn.Linear, 0, 3)
  assert_error({"Linear: out_features must be a positive integer, got 2.5"}, nn.Linear, 3, 2.5)
  assert_error({"Linear: in_features must be a positive integer, got nil"}, nn.Linear)
  assert_error({"Linear: bias must be a boolean, got 1"}, nn.Linear, 2, 2, 1)
  assert_error({"Linear: unknown option 'biass'"}, nn.Linear, 2, 2, {biass = false})
  assert_error({"Dropout: p (the dropout probability) must be a number in [0, 1], got 1.5"}, nn.Dropout, 1.5)
  assert_error({"Dropout: p", "got nan"}, nn.Dropout, 0 / 0)
  assert_error({"LayerNorm: normalized_shape must be a positive integer, got 0"}, nn.LayerNorm, 0)
  assert_error({"LayerNorm: eps must be a positive number, got -1"}, nn.LayerNorm, 4, -1)
  assert_error({"LayerNorm: unknown option 'affine'"}, nn.LayerNorm, 4, {affine = false})
  assert_error({"GELU: approximate must be 'none' or 'tanh', got string \"fast\""}, nn.GELU, "fast")
  assert_error({"Softmax: dim must be a non-zero integer"}, nn.Softmax, 0)
  assert_error({"LeakyReLU: negative_slope must be a number"}, nn.LeakyReLU, "x")
  assert_error({"CrossEntropyLoss: unknown option 'label_smothing'"}, nn.CrossEntropyLoss,
               {label_smothing = 0.1})
  assert_error({"CrossEntropyLoss: label_smoothing must be a number in [0, 1], got 2"},
               nn.CrossEntropyLoss, {label_smoothing = 2})
  assert_error({"MSELoss: reduction must be 'mean' or 'sum', got string \"none\""}, nn.MSELoss, {reduction = "none"})
  assert_error({"Sequential: argument #2 must be a module, got 1"}, nn.Sequential, nn.ReLU(), 1)
  assert_error({"Sequential:add: expected a module, got nil"}, nn.Sequential().add, nn.Sequential())
end

function TestNnErrors.test_freed_tensors()
  local m = nn.Linear(2, 2)
  local x = mo.zeros(1, 2)
  x:__gc()
  assert_error({"Linear:forward", "tensor has been freed"}, m.forward, m, x)
  local ce = nn.CrossEntropyLoss()
  local y = mo.tensor{1}
  y:__gc()
  assert_error({"CrossEntropyLoss:forward", "tensor has been freed"}, ce.forward, ce, mo.zeros(1, 2), y)
end

function TestNnErrors.test_flat_parameters_errors()
  lu.assertErrorMsgContains("has no parameters", function() nn.ReLU():flat_parameters() end)
  lu.assertErrorMsgContains("expected a table", function() nn.Linear(2, 2):load_state_dict(3) end)
  local ok, err = pcall(core.nn_flatten, {mo.zeros(2), 5})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "parameter #2 is not a live moonopt.Tensor")
  local t = mo.zeros(2)
  ok, err = pcall(core.nn_flatten, {t, t})
  lu.assertFalse(ok)
  lu.assertStrContains(err, "parameter #2 appears twice")
end

return {TestNnLossValues = TestNnLossValues, TestNnErrors = TestNnErrors}
