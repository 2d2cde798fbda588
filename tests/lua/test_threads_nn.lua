-- tests/lua/test_threads_nn.lua - the nn, pooling, batch-norm and data kernels on the thread
-- pool (docs/design.md "Threads") give the same bits at 1, 2 and 3 threads: an MLP with
-- LayerNorm, Dropout and GELU trained a few steps, a small CNN (Conv2d, BatchNorm2d,
-- MaxPool2d with and without overlapping windows, AvgPool2d, AdaptiveAvgPool2d) trained a
-- few steps, every loss and activation on large operands, and the data helpers.
--
-- Every operand is sized for several chunks of each kernel's partition (see core/nn.c,
-- core/pooling.c, core/batchnorm.c, core/data.c): a kernel whose partition or combining
-- order followed the thread count would change bits here. Bits are compared as the bytes
-- mo.save_tensors writes.
local lu = require "luaunit"
local mo = require "moonopt"

local helpers = require "helpers"
local nn, optim = mo.nn, mo.optim

local same_bits_at_every_count = helpers.same_bits_at_every_count

local function num(x) return mo.tensor(x, {dtype = "float64"}) end

-- The model's parameters, their gradients and its buffers (running statistics), by name.
local function snapshot(model, out)
  for k, v in pairs(model:state_dict()) do out["sd." .. k] = v:clone() end
  for i, p in ipairs(model:parameters()) do
    if p.grad then out["grad" .. i] = p.grad:clone() end
  end
  return out
end

-- steps of forward, loss, backward, AdamW; the losses as a float64 tensor.
local function train_steps(model, loss_fn, x, y, steps)
  local opt = optim.AdamW(model:parameters(), {lr = 1e-3, weight_decay = 0.01})
  local losses = {}
  for s = 1, steps do
    opt:zero_grad()
    local out = model:forward(x)
    local loss, g = loss_fn:forward_backward(out, y)
    model:backward(x, g, false)
    opt:step()
    losses[s] = loss
  end
  return num(losses)
end

local TestThreadsNn = {}

-- The models train in float32 only: in float64, OpenBLAS's dgemm (which mo.set_num_threads
-- sizes too) gives other bits at 1 and 2 threads for these shapes, so a float64 model's
-- bits follow the BLAS, not these kernels. The float64 kernels are checked without a matrix
-- product in test_float64_kernels.

-- 512 x 256 activations: 4 streaming chunks of 32768, 32 chunks of 4096 for GELU, 16
-- LayerNorm row chunks, 2 LayerNorm parameter-gradient column chunks; 512 x 10 logits: 2
-- cross-entropy row chunks.
function TestThreadsNn.test_mlp_layernorm_dropout_training()
  for _, dtype in ipairs{"float32"} do
    same_bits_at_every_count("MLP " .. dtype, function()
      mo.manual_seed(11)
      local x = mo.randn(512, 64, {dtype = dtype})
      local y = x:narrow(2, 1, 10):argmax(2):view(-1)
      local model = nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.GELU(),
                                  nn.Dropout(0.3), nn.Linear(256, 256), nn.ReLU(),
                                  nn.Dropout(0.1), nn.Linear(256, 10))
      model:train()
      local out = {losses = train_steps(model, nn.CrossEntropyLoss(), x, y, 3)}
      model:eval()
      out.eval = model:forward(x):clone()
      return snapshot(model, out)
    end)
  end
end

-- {32, 16, 20, 20} after the first conv: 8 batch-norm channel chunks, 10 max-pool plane
-- chunks (2x2: the branch-free blocks, a last block redone), then overlapping 3x3
-- stride-2 windows with padding (the clipped path), average pooling and adaptive pooling.
function TestThreadsNn.test_cnn_batchnorm_pooling_training()
  for _, dtype in ipairs{"float32"} do
    same_bits_at_every_count("CNN " .. dtype, function()
      mo.manual_seed(5)
      local x = mo.randn(32, 4, 20, 20, {dtype = dtype})
      local y = mo.randint(1, 10, {32}):to(dtype)
      local model = nn.Sequential(
        nn.Conv2d(4, 16, 3, {padding = 1}), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, {padding = 1}), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(3, {stride = 2, padding = 1}), nn.AvgPool2d(2, {stride = 1}),
        nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(16 * 9, 10))
      model:train()
      local out = {losses = train_steps(model, nn.CrossEntropyLoss(), x, y, 3)}
      model:eval()
      out.eval = model:forward(x):clone()
      return snapshot(model, out)
    end)
  end
end

-- im2col and col2im on the pool: 16 input channels of 32x32 with a 3x3 kernel move 9216
-- elements per channel, so they run in 6 chunks of 3 channels (4 of 4 at stride 2 with
-- dilation); forward, gradients of input, weight and bias, both dtypes.
function TestThreadsNn.test_conv_im2col_col2im_chunks()
  same_bits_at_every_count("conv im2col/col2im", function()
    mo.manual_seed(9)
    local out = {}
    for _, dtype in ipairs{"float32", "float64"} do
      local x = mo.randn(2, 16, 32, 32, {dtype = dtype})
      for _, o in ipairs{{padding = 1}, {stride = 2, padding = 2, dilation = 2}} do
        local conv = nn.Conv2d(16, 8, 3, o)
        if dtype == "float64" then conv:double() end
        local y = conv:forward(x)
        local gy = mo.randn(y:shape(), {dtype = dtype})
        local key = dtype .. "." .. (o.stride or 1)
        out[key .. ".y"] = y:clone()
        out[key .. ".gx"] = conv:backward(x, gy):clone()
        out[key .. ".gw"] = conv.weight.grad:clone()
        out[key .. ".gb"] = conv.bias.grad:clone()
      end
    end
    return out
  end)
end

-- ... and the chunks are right: the 16-channel convolution equals the sum of 16 one-channel
-- ones (one chunk each), and its input gradient is theirs side by side (float64).
function TestThreadsNn.test_conv_chunks_match_one_channel_convs()
  local F = nn.functional
  mo.manual_seed(10)
  local f64 = {dtype = "float64"}
  local x = mo.randn(2, 16, 32, 32, f64):requires_grad_()
  local w = mo.randn(8, 16, 3, 3, f64)
  local o = {stride = 2, padding = 2, dilation = 2}
  local y = F.conv2d(x, w, nil, o)
  local gy = mo.randn(y:shape(), f64)
  y:backward(gy)
  local sum = mo.zeros(y:shape(), f64)
  for c = 1, 16 do
    local xc = x:detach():narrow(2, c, 1):contiguous():requires_grad_()
    local yc = F.conv2d(xc, w:narrow(2, c, 1):contiguous(), nil, o)
    yc:backward(gy)
    sum:add_(yc:detach())
    local d = (xc.grad - x.grad:narrow(2, c, 1)):abs():max():item()
    lu.assertTrue(d < 1e-12, "input gradient of channel " .. c .. ": " .. d)
  end
  lu.assertTrue((sum - y:detach()):abs():max():item() < 1e-12)
end

-- LayerNorm, Dropout, BatchNorm2d and the poolings in float64, forward and backward, at the
-- sizes of the float32 models above.
function TestThreadsNn.test_float64_kernels()
  same_bits_at_every_count("float64 kernels", function()
    mo.manual_seed(4)
    local f64 = {dtype = "float64"}
    local out = {}
    -- {256, 1536}: 52 row chunks for dx, 3 column chunks of 512 for the parameter gradients
    local h = mo.randn(256, 1536, f64):mul(3):add(1)
    local g = mo.randn(256, 1536, f64)
    local ln = nn.LayerNorm(1536)
    ln:double()
    out.ln = ln:forward(h):clone()
    out.ln_dx = ln:backward(h, g):clone()
    out.ln_dw, out.ln_db = ln.weight.grad:clone(), ln.bias.grad:clone()
    local dr = nn.Dropout(0.25)
    dr:train()
    out.dropout = dr:forward(h):clone()
    out.dropout_dx = dr:backward(h, g):clone()
    local x = mo.randn(32, 16, 20, 20, f64)
    local bn = nn.BatchNorm2d(16)
    bn:double()
    -- Module:double() leaves BatchNorm's running statistics in float32: convert them here
    bn.running_mean, bn.running_var = bn.running_mean:double(), bn.running_var:double()
    bn:train()
    local gx = mo.randn(32, 16, 20, 20, f64)
    out.bn = bn:forward(x):clone()
    out.bn_dx = bn:backward(x, gx):clone()
    out.bn_dw, out.bn_db = bn.weight.grad:clone(), bn.bias.grad:clone()
    out.bn_rm, out.bn_rv = bn.running_mean:clone(), bn.running_var:clone()
    bn:eval()
    out.bn_eval = bn:forward(x):clone()
    out.bn_eval_dx = bn:backward(x, gx):clone()
    -- in a fixed order: each draws its gradient from the generator
    local pools = {{"max2", nn.MaxPool2d(2)}, {"max3", nn.MaxPool2d(3, {stride = 2, padding = 1})},
                   {"avg", nn.AvgPool2d(3, {stride = 2, padding = 1})},
                   {"adaptive", nn.AdaptiveAvgPool2d(7)}}
    for _, nm in ipairs(pools) do
      local name, m = nm[1], nm[2]
      local y = m:forward(x)
      out[name] = y:clone()
      out[name .. "_dx"] = m:backward(x, mo.randn(y:shape(), f64)):clone()
    end
    return out
  end)
end

-- Every activation forward and backward, softmax along an inner dimension, the three
-- losses with their gradients, on 640 x 500 operands (many chunks of each grain).
function TestThreadsNn.test_activations_softmax_losses()
  local F = nn.functional
  for _, dtype in ipairs{"float32", "float64"} do
    same_bits_at_every_count("activations and losses " .. dtype, function()
      mo.manual_seed(9)
      local opts = {dtype = dtype}
      local a = mo.randn(640, 500, opts)
      local t = mo.randn(640, 500, opts)
      local p = mo.rand(640, 500, opts)
      local out = {}
      for name, m in pairs{relu = nn.ReLU(), leaky = nn.LeakyReLU(0.1), gelu = nn.GELU(),
                           tanh = nn.Tanh(), sigmoid = nn.Sigmoid()} do
        out[name] = m:forward(a):clone()
        out[name .. "_grad"] = m:backward(a, t):clone()
      end
      local sm = nn.Softmax(2)
      out.softmax = sm:forward(a:view(64, 10, 500)):clone()
      out.softmax_grad = sm:backward(a:view(64, 10, 500), t:view(64, 10, 500)):clone()
      out.log_softmax = F.log_softmax(a, 2)
      local mse, bce = nn.MSELoss(), nn.BCEWithLogitsLoss()
      local l1, g1 = mse:forward_backward(a, t)
      local l2, g2 = bce:forward_backward(a, p)
      out.mse, out.mse_grad, out.bce, out.bce_grad = num(l1), g1:clone(), num(l2), g2:clone()
      -- the bias gradient's column sums: 3 chunks of 512 columns (only db is compared: the
      -- rest is BLAS, see above)
      local lin = nn.Linear(32, 1536)
      if dtype == "float64" then lin:double() end
      local xin = mo.randn(64, 32, opts)
      lin:forward(xin)
      lin:backward(xin, mo.randn(64, 1536, opts), false)
      out.linear_db = lin.bias.grad:clone()
      local logits = mo.randn(20000, 10, opts)
      local target = mo.randint(1, 10, {20000}):to(dtype)
      local ce = nn.CrossEntropyLoss({label_smoothing = 0.1})
      local l3, g3 = ce:forward_backward(logits, target)
      out.ce, out.ce_grad = num(l3), g3:clone()
      return out
    end)
  end
end

-- normalize (contiguous: chunks of elements) and augment (crops per example after the
-- serial draws).
function TestThreadsNn.test_data_helpers()
  same_bits_at_every_count("data helpers", function()
    mo.manual_seed(2)
    local x = mo.randn(300, 1, 28, 28)
    local xn = x:clone()
    mo.data.normalize(xn, {mean = 0.25, std = 1.5})
    local aug = mo.data.augment(x, {crop = 3, flip = true})
    return {normalized = xn, augmented = aug}
  end)
end

-- max_pool2d's branch-free blocks (core/pooling_t.h) against the plain rule, element by
-- element: each window visited row by row, left to right, `v > best or v ~= v` takes v (the
-- first maximum wins, the last NaN wins, a window of -inf gives its first element). Values
-- from a small set so that ties, -0 against +0, NaN and -inf all occur; widths that use the
-- blocks (and a redone last block), overlapping windows and padding.
local TestMaxPoolBlocks = {}

local function reference_max_pool(vals, planes, H, W, k, s, p)
  local oh, ow = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
  local y, idx = {}, {}
  for pl = 0, planes - 1 do
    for i = 0, oh - 1 do
      local h0, h1 = math.max(i * s - p, 0), math.min(i * s - p + k, H)
      for j = 0, ow - 1 do
        local w0, w1 = math.max(j * s - p, 0), math.min(j * s - p + k, W)
        local best, at = -math.huge, h0 * W + w0
        for h = h0, h1 - 1 do
          for w = w0, w1 - 1 do
            local v = vals[pl * H * W + h * W + w + 1]
            if v > best or v ~= v then best, at = v, h * W + w end
          end
        end
        y[#y + 1] = vals[pl * H * W + at + 1]
        idx[#idx + 1] = at + 1
      end
    end
  end
  return y, idx
end

function TestMaxPoolBlocks.test_ties_nan_inf_signed_zero()
  local pool = {-math.huge, -1, -0.0, 0.0, 1, 2, 0 / 0, 2, 1}
  local cases = {{6, 20, 2, 2, 0}, {7, 21, 3, 2, 1}, {5, 19, 2, 1, 0}, {4, 35, 3, 3, 1}}
  for _, dtype in ipairs{"float32", "float64"} do
    local fmt = dtype == "float32" and "<f" or "<d"
    for _, c in ipairs(cases) do
      local H, W, k, s, p = c[1], c[2], c[3], c[4], c[5]
      mo.manual_seed(H * 100 + W)
      local picks = mo.randint(1, #pool, {2 * 3 * H * W})
      local vals = {}
      for i = 1, 2 * 3 * H * W do vals[i] = pool[math.tointeger(picks:get(i))] end
      local x = mo.tensor(vals, {dtype = dtype}):view(2, 3, H, W)
      local xv = {} -- the values as stored (float32 rounding changes nothing in this set)
      for i = 1, #vals do xv[i] = x:view(-1):get(i) end
      local y, idx = require("moonopt.core").max_pool2d_forward(x, k, k, s, s, p, p)
      local ry, ridx = reference_max_pool(xv, 6, H, W, k, s, p)
      local yf, idf = y:contiguous():view(-1), idx:contiguous():view(-1)
      lu.assertEquals(yf:size(1), #ry)
      for i = 1, #ry do
        local what = ("%s %dx%d k%d s%d p%d output %d"):format(dtype, H, W, k, s, p, i)
        lu.assertEquals(idf:get(i), ridx[i], what .. ": index")
        lu.assertEquals(string.pack(fmt, yf:get(i)), string.pack(fmt, ry[i]), what .. ": value bits")
      end
    end
  end
end

return {TestThreadsNn = TestThreadsNn, TestMaxPoolBlocks = TestMaxPoolBlocks}
