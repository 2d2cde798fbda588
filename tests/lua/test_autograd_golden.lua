-- tests/lua/test_autograd_golden.lua - autograd against PyTorch 1.13's: gradients of
-- composite functions (broadcasting, indexing, reductions, matmul, softmax, losses) and
-- double backward (gradient penalties, Hessian-vector products), float64.
-- tests/golden/autograd_golden.lua comes from tests/golden/make_autograd_golden.py, which
-- writes the same functions in PyTorch (0-based indices there, 1-based here).
local lu = require "luaunit"
local mo = require "moonopt"

local D = {dtype = "float64"}
local function idx(t) return mo.tensor(t, D) end

local function bce_logits(x, y)
  return (x:clamp(0, nil) - x * y + (-x:abs()):exp():log1p()):mean()
end

local F = {
  broadcast = function(a, b, c)
    return ((a * b + c) / (b * b + 1) - 2 / (c * c + 1)):exp():sum()
  end,
  broadcast_minmax = function(a, b)
    return (mo.maximum(a, b) * mo.minimum(a, 0.3 * b)):sum() + mo.where(a:gt(0), a, b * 2):sum()
  end,
  indexing = function(a, w)
    return (a[2] * w):sum() + a[{{1, 3}, 3}]:pow(2):sum()
      + a:index_select(2, idx{3, 1, 3}):sin():sum()
      + a:gather(2, idx{{1, 2}, {4, 4}, {3, 1}, {2, 2}}):exp():sum()
      + mo.cat({a:narrow(1, 2, 2), a[{{4, 4}}]}, 1):tanh():sum()
      + mo.stack({a[1], w}, 2):prod(2):sum()
      + a:chunk(2, 2)[2]:pow(3):sum()
  end,
  scatter = function(a, s)
    return a:scatter_add(2, idx{{1, 1, 3}, {2, 4, 4}}, s):pow(2):sum()
  end,
  reductions = function(a)
    return a:sum(2):pow(2):sum() + a:mean(1, true):exp():sum() + a:prod(2):sum()
      + a:std(1):sum() + a:var(2, false):sum() + (a:max(2)):sum()
      + (a:min(1, true)):pow(2):sum() + a:norm() + a:norm(1, 2):sum() + a:logsumexp(2):sum()
      + a:cumsum(2):sin():sum() + (a:sort(2, true))[{{}, 1}]:sum()
      + (a:topk(2, 2)):pow(2):sum()
  end,
  matmul = function(a, b, c, v)
    return mo.matmul(a, b):tanh():sum() + mo.matmul(c, b):pow(2):sum()
      + mo.matmul(v, b):exp():sum() + mo.matmul(a, v[{{1, 4}}]):sum()
      + mo.matmul(c, c:transpose(2, 3)):sum()
  end,
  softmax = function(x, t)
    return -(x:log_softmax(2) * t):sum(2):mean() + (x:softmax(1) * t):pow(2):sum()
      + x:softmax(2):max()
  end,
  losses = function(x, y)
    local d = x - y
    return d:pow(2):mean() + d:abs():mean() + bce_logits(x, y:sigmoid())
      + (x:sigmoid() - 0.5):pow(2):sum()
      + mo.where(d:abs():lt(1), 0.5 * d:pow(2), d:abs() - 0.5):mean()
  end,
  shapes = function(a)
    return a:t():reshape{2, 6}:transpose(1, 2):permute(2, 1):flatten():unsqueeze(1)
      :expand(3, 12):pow(2):sum() + a:view{12}:squeeze():sin():sum()
      + a:reshape{1, 3, 4}:squeeze(1):contiguous():clone():exp():sum()
  end,
  penalty = function(x, w)
    return (mo.matmul(x, w):tanh() * x:sin():sum()):sum() + (x:pow(3) * w[1]):sum()
      + x:exp():prod()
  end,
  hvp_rosen = function(x)
    local head, tail = x[{{1, -2}}], x[{{2, -1}}]
    return (100 * (tail - head:pow(2)):pow(2) + (1 - head):pow(2)):sum()
  end,
  hvp_mix = function(x)
    return x:softmax(1):log():sum() * x:norm() + x:sigmoid():prod()
      + x:logsumexp(1) * x:abs():sum() + (x:unsqueeze(2) * x:unsqueeze(1)):sin():sum()
  end,
}

local function make(spec)
  return mo.tensor(spec.data, D):reshape(spec.shape)
end

local function assert_close(got, spec, what)
  lu.assertEquals(got:shape(), spec.shape, what .. ": shape")
  local flat = got:reshape{-1}:totable()
  for i, want in ipairs(spec.data) do
    local tol = 1e-10 * math.max(1, math.abs(want))
    if not (math.abs(flat[i] - want) <= tol) then -- luacheck: ignore 581 (NaN fails)
      lu.fail(string.format("%s: element %d is %.17g, PyTorch %.17g", what, i, flat[i], want))
    end
  end
end

local golden = dofile("tests/golden/autograd_golden.lua")

local TestAutogradGolden = {}

for name, case in pairs(golden.cases) do
  TestAutogradGolden["test_" .. name] = function()
    local xs = {}
    for k, spec in ipairs(case.inputs) do xs[k] = make(spec):requires_grad_() end
    local y = F[name](table.unpack(xs))
    lu.assertAlmostEquals(y:item(), case.value, 1e-10 * math.max(1, math.abs(case.value)))
    local gs = mo.autograd.grad(y, xs, {allow_unused = true})
    for k, spec in ipairs(case.grads) do
      assert_close(gs[k] or mo.zeros_like(xs[k]), spec, name .. " grad #" .. k)
    end
  end
end

for name, case in pairs(golden.double) do
  TestAutogradGolden["test_double_" .. name] = function()
    local xs = {}
    for k, spec in ipairs(case.inputs) do xs[k] = make(spec):requires_grad_() end
    local y = F[name](table.unpack(xs))
    lu.assertAlmostEquals(y:item(), case.value, 1e-10 * math.max(1, math.abs(case.value)))
    local gs = mo.autograd.grad(y, xs, {create_graph = true})
    local pen
    for k, g in ipairs(gs) do
      assert_close(g, case.grads[k], name .. " grad #" .. k)
      lu.assertTrue(g.requires_grad, "create_graph gives gradients with a graph")
      local term = (g * g):sum()
      pen = pen and pen + term or term
    end
    local pgs = mo.autograd.grad(pen, xs)
    for k, spec in ipairs(case.penalty) do assert_close(pgs[k], spec, name .. " penalty #" .. k) end
    -- H v through mo.autograd.hvp
    local vs = {}
    for k, spec in ipairs(case.v) do vs[k] = make(spec) end
    local value, hv = mo.autograd.hvp(F[name], xs, vs)
    lu.assertAlmostEquals(value:item(), case.value, 1e-10 * math.max(1, math.abs(case.value)))
    for k, spec in ipairs(case.hv) do assert_close(hv[k], spec, name .. " hvp #" .. k) end
  end
end

return {TestAutogradGolden = TestAutogradGolden}
