-- tests/lua/test_threads.lua - the thread pool (docs/design.md "Threads"): results are
-- bit-identical at 1, 2 and 3 threads (an MLP trained with fit and several optimizers, large
-- elementwise and broadcast ops, full and per-dim reductions), and mo.set_num_threads /
-- get_num_threads / MOONOPT_NUM_THREADS refuse or ignore bad values as documented.
--
-- Bits are compared as the bytes mo.save_tensors writes (the raw little-endian values), so
-- -0 versus 0 or two NaN payloads would count as differences; scalars as %a strings.
local lu = require "luaunit"
local mo = require "moonopt"
local helpers = require "helpers"

local nn, optim, train = mo.nn, mo.optim, mo.train

local same_bits_at_every_count = helpers.same_bits_at_every_count

-- A 0-d tensor holding a Lua number (reductions that return numbers), kept in float64.
local function num(x) return mo.tensor(x, {dtype = "float64"}) end

local TestThreadsDeterminism = {}

-- Big enough for many chunks (32768 elements per chunk for streaming ops, 4096 for libm
-- ones, 65536 per full-reduction chunk): 640 x 500 = 320000 elements.
local function operands(dtype)
  mo.manual_seed(7)
  local opts = {dtype = dtype}
  local a = mo.randn(640, 500, opts)
  local b = mo.randn(640, 500, opts)
  local row = mo.randn(500, opts)
  local col = mo.randn(640, 1, opts)
  return a, b, row, col
end

function TestThreadsDeterminism.test_elementwise_and_broadcast()
  for _, dtype in ipairs{"float32", "float64"} do
    same_bits_at_every_count("elementwise " .. dtype, function()
      local a, b, row, col = operands(dtype)
      local at = a:t()   -- a strided operand: the general iterator, in pieces of rows
      return {
        add = a:add(b), mul = a:mul(b), div = a:div(b:abs():add(1)),
        tanh = a:tanh(), exp = a:exp(), pow = a:abs():pow(1.7),
        bc_row = a:add(row), bc_col = a:mul(col), bc_both = col:sub(row),
        strided = at:add(b:t()), strided_inplace = a:clone():t():mul_(at),
        where = mo.where(a:gt(0), a, b), clamp = a:clamp(-0.5, 0.5),
        addcmul = a:addcmul(b, a, 0.5), convert = dtype == "float32" and a:double() or a:float(),
      }
    end)
  end
end

function TestThreadsDeterminism.test_full_reductions()
  for _, dtype in ipairs{"float32", "float64"} do
    same_bits_at_every_count("full reductions " .. dtype, function()
      local a, b = operands(dtype)
      local at = a:t()
      local near1 = a:mul(1e-3):add(1)
      local out = {
        sum = a:sum(), mean = a:mean(), var = a:var(), std = a:std(), max = a:max(),
        min = a:min(), argmax = a:argmax(), argmin = a:argmin(), prod = near1:prod(),
        norm2 = a:norm(), norm1 = a:norm(1), norm3 = a:norm(3), norminf = a:norm(math.huge),
        -- the same on a transposed view (rows of the iterator, cut across chunks)
        sum_t = at:sum(), var_t = at:var(), argmax_t = at:argmax(), norm3_t = at:norm(3),
        dot = a:dot(b), dot_t = at:dot(b:t()),
      }
      for k, v in pairs(out) do
        if type(v) == "number" then out[k] = num(v) end
      end
      out.any = num(a:gt(4.5):any() and 1 or 0)
      out.all = num(a:gt(-10):all() and 1 or 0)
      return out
    end)
  end
end

function TestThreadsDeterminism.test_per_dim_reductions()
  same_bits_at_every_count("per-dim reductions", function()
    local a = operands("float32")
    local mx, imx = a:max(1)
    return {
      sum1 = a:sum(1), sum2 = a:sum(2), mean2 = a:mean(2), var1 = a:var(1), max1 = mx,
      imax1 = imx, argmin2 = a:argmin(2), norm2 = a:norm(2, 2), lse2 = a:logsumexp(2),
      softmax2 = a:softmax(2), cumsum1 = a:cumsum(1), sum_t = a:t():sum(2),
    }
  end)
end

-- A short MLP run with fit (shuffling, clipping: the global gradient norm is a full
-- reduction) for several optimizers; the parameters and the loss history are compared.
local OPTIMIZERS = {
  {"SGD", {lr = 0.05, momentum = 0.9}},
  {"Adam", {lr = 1e-3}},
  {"AdamW", {lr = 1e-3, weight_decay = 0.01}},
  {"RMSprop", {lr = 1e-3}},
  {"Lion", {lr = 1e-4}},
  {"LAMB", {lr = 1e-3}},
}

-- sort and topk cut the lanes into chunks (about 8192 values each, at most 64 chunks):
-- {300, 100} along dim 2 is 4 chunks of 81 lanes; along dim 1 (strided lanes of 300) 4 chunks
-- of 27; a {5, 40000} source is one lane per chunk; ties (rounded values) test stability
function TestThreadsDeterminism.test_sort_topk()
  same_bits_at_every_count("sort/topk", function()
    local out = {}
    for _, dtype in ipairs{"float32", "float64"} do
      mo.manual_seed(11)
      local x = (mo.randn(300, 100, {dtype = dtype}) * 4):round()
      local wide = mo.randn(5, 40000, {dtype = dtype})
      out[dtype .. ".v2"], out[dtype .. ".i2"] = x:sort(2)
      out[dtype .. ".v1"], out[dtype .. ".i1"] = x:sort(1, true)
      out[dtype .. ".tv"], out[dtype .. ".ti"] = x:t():topk(7, 2)
      out[dtype .. ".wv"], out[dtype .. ".wi"] = wide:topk(3, 2)
    end
    return out
  end)
end

-- ... and each lane is the serial sort: every row of the chunked sort against Lua's
-- table.sort of that row (ties by index: a stable sort)
function TestThreadsDeterminism.test_sort_lanes_are_right()
  mo.manual_seed(12)
  local x = (mo.randn(300, 100) * 4):round()
  local v, i = x:sort(2)
  local rows, vals, idx = x:totable(), v:totable(), i:totable()
  for r = 1, 300, 37 do
    local order = {}
    for c = 1, 100 do order[c] = c end
    table.sort(order, function(a, b)
      if rows[r][a] ~= rows[r][b] then return rows[r][a] < rows[r][b] end
      return a < b
    end)
    for c = 1, 100 do
      lu.assertEquals(idx[r][c], order[c])
      lu.assertEquals(vals[r][c], rows[r][order[c]])
    end
  end
end

function TestThreadsDeterminism.test_mlp_training()
  for _, case in ipairs(OPTIMIZERS) do
    same_bits_at_every_count("MLP with " .. case[1], function()
      mo.manual_seed(3)
      local x = mo.randn(512, 64)
      local y = x:narrow(2, 1, 10):argmax(2):view(-1)
      local model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
      local opt = optim[case[1]](model:parameters(), helpers.deepcopy(case[2]))
      local h = train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt,
                          data = {x = x, y = y}, epochs = 2, batch_size = 256,
                          clip_grad_norm = 1.0, progress = false}
      local out = {loss = mo.tensor(h.train_loss, {dtype = "float64"})}
      for i, p in ipairs(model:parameters()) do out["p" .. i] = p end
      return out
    end)
  end
end

-- Products (issue 14): OpenBLAS's own threading cut some of these differently at 2 threads
-- (128x784x256 in float32, several in float64); matmul.c now cuts them into fixed blocks of
-- C's longer side, each one single-threaded BLAS call (docs/design.md "Threads").
local PRODUCT_SHAPES = {{256, 4096, 256}, {128, 784, 256}, {1000, 256, 256}, {2000, 300, 200}}

function TestThreadsDeterminism.test_matmul_shapes()
  for _, dt in ipairs{"float32", "float64"} do
    for _, s in ipairs(PRODUCT_SHAPES) do
      same_bits_at_every_count(("matmul %s %s"):format(dt, table.concat(s, "x")), function()
        mo.manual_seed(1)
        local a = mo.randn({s[2], s[1]}, {dtype = dt})
        local b = mo.randn({s[2], s[3]}, {dtype = dt})
        -- a transposed operand, and a product whose longer side is the other one
        return {c = mo.matmul(a:t(), b), d = mo.matmul(b:t():contiguous(), a)}
      end)
    end
  end
end

function TestThreadsDeterminism.test_linear_forward_backward()
  for _, dt in ipairs{"float32", "float64"} do
    same_bits_at_every_count("Linear 784->256 " .. dt, function()
      mo.manual_seed(5)
      local layer = nn.Linear(784, 256)
      if dt == "float64" then layer:double() end
      local x = mo.randn({128, 784}, {dtype = dt})
      local y = layer:forward(x)
      local gi = layer:backward(x, mo.randn({128, 256}, {dtype = dt}))
      return {y = y, gi = gi, gw = layer.weight.grad, gb = layer.bias.grad}
    end)
  end
end

local TestThreadsApi = {}

function TestThreadsApi.test_get_after_set()
  local saved = mo.get_num_threads()
  for _, n in ipairs{1, 2, 3, 7, 1024} do
    mo.set_num_threads(n)
    lu.assertEquals(mo.get_num_threads(), n)
  end
  mo.set_num_threads(2.0)   -- a float with an integer value is an integer
  lu.assertEquals(mo.get_num_threads(), 2)
  lu.assertEquals(math.type(mo.get_num_threads()), "integer")
  mo.set_num_threads(saved)
end

function TestThreadsApi.test_bad_counts_are_refused_and_change_nothing()
  local saved = mo.get_num_threads()
  mo.set_num_threads(3)
  local cases = {
    {0, "thread count must be in [1, 1024], got 0"},
    {-1, "thread count must be in [1, 1024], got -1"},
    {1025, "thread count must be in [1, 1024], got 1025"},
    {math.maxinteger, "thread count must be in [1, 1024], got " .. math.maxinteger},
    {2.5, "thread count must be an integer, got 2.5"},
    {0 / 0, "thread count must be an integer, got"},
    {math.huge, "thread count must be an integer, got"},
    {1e300, "thread count must be an integer, got 1e+300"},
    {"2", "number expected, got string"},
    {nil, "number expected, got nil"},
  }
  for _, c in ipairs(cases) do
    local ok, err = pcall(mo.set_num_threads, c[1])
    lu.assertFalse(ok, tostring(c[1]))
    lu.assertStrContains(err, "bad argument #1 to 'set_num_threads'")
    lu.assertStrContains(err, c[2])
    lu.assertEquals(mo.get_num_threads(), 3)
  end
  mo.set_num_threads(saved)
end

-- MOONOPT_NUM_THREADS in a fresh interpreter: valid values are taken, anything else is
-- ignored (the default is then the number of online cores).
local function threads_in_child(value)
  local lua = arg and arg[-1] or "lua5.4"
  local env = value and ("MOONOPT_NUM_THREADS='%s' "):format(value) or "env -u MOONOPT_NUM_THREADS "
  local cmd = ("%s%s -e 'io.write(require(\"moonopt\").get_num_threads())' 2>&1"):format(env, lua)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return tonumber(out), out
end

function TestThreadsApi.test_environment_variable()
  local cores = threads_in_child(nil)
  lu.assertNotNil(cores, "default thread count")
  lu.assertTrue(cores >= 1 and cores <= 1024)
  lu.assertEquals(threads_in_child("3"), 3)
  lu.assertEquals(threads_in_child(" 5 "), 5)
  lu.assertEquals(threads_in_child("1024"), 1024)
  for _, bad in ipairs{"", "0", "-2", "+2", "2.5", "four", "3x", "1025", "99999999999999999999"} do
    lu.assertEquals(threads_in_child(bad), cores, "MOONOPT_NUM_THREADS=" .. bad)
  end
end

return {TestThreadsDeterminism = TestThreadsDeterminism, TestThreadsApi = TestThreadsApi}
