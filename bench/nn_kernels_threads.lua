-- bench/nn_kernels_threads.lua - the nn, pooling and batch-norm kernels at 1 and 2 threads
-- (docs/performance.md "Threads: nn kernels"), one process: every round times each kernel at
-- 1 thread and then at 2 (mo.set_num_threads), each the median of `reps` calls; the figure
-- is the median over `rounds`. Sizes are the CNN's and a wide MLP's. Prints one line per
-- kernel: "<name> <ms at 1 thread> <ms at 2 threads> <speed-up>".
-- usage: lua5.4 bench/nn_kernels_threads.lua [rounds = 3] [reps = 11]
local mo = require "moonopt"
local core = require "moonopt.core"
local nn = mo.nn

local rounds = math.tointeger(tonumber(arg[1] or "3"))
local reps = math.tointeger(tonumber(arg[2] or "11"))

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function time_ms(f)
  f() -- warm: buffers, pages, the pool's threads
  local ts = {}
  for r = 1, reps do
    local t0 = mo.clock()
    f()
    ts[r] = (mo.clock() - t0) * 1e3
  end
  return median(ts)
end

mo.manual_seed(1)
local act = mo.randn(128, 32, 28, 28)          -- the CNN's first activation {128, 32, 28, 28}
local gact = mo.randn(128, 32, 28, 28)
local wide = mo.randn(1024, 1024)               -- a wide MLP layer's activations
local gwide = mo.randn(1024, 1024)
local logits = mo.randn(8192, 100)
local labels = mo.randint(1, 100, {8192})
local relu, gelu, sm = nn.ReLU(), nn.GELU(), nn.Softmax(2)
local ln = nn.LayerNorm(1024)
local bn = nn.BatchNorm2d(32)
bn:train()
local ce, mse = nn.CrossEntropyLoss(), nn.MSELoss()
local _, pidx = core.max_pool2d_forward(act, 2, 2, 2, 2, 0, 0)
local gpool = mo.randn(128, 32, 14, 14)

local kernels = {
  {"relu_fwd {128,32,28,28}", function() relu:forward(act) end},
  {"gelu_fwd {1024,1024}", function() gelu:forward(wide) end},
  {"gelu_bwd {1024,1024}", function() gelu:backward(wide, gwide) end},
  {"softmax_fwd {1024,1024}", function() sm:forward(wide) end},
  {"layernorm_fwd {1024,1024}", function() ln:forward(wide) end},
  {"layernorm_bwd {1024,1024}", function() ln:forward(wide); ln:backward(wide, gwide) end},
  {"cross_entropy {8192,100}", function() ce:forward_backward(logits, labels) end},
  {"mse {1024,1024}", function() mse:forward_backward(wide, gwide) end},
  {"max_pool2d_fwd {128,32,28,28}", function() core.max_pool2d_forward(act, 2, 2, 2, 2, 0, 0) end},
  {"max_pool2d_bwd {128,32,28,28}", function() core.max_pool2d_backward(gpool, pidx, act) end},
  {"batch_norm_fwd {128,32,28,28}", function() bn:forward(act) end},
  {"batch_norm_bwd {128,32,28,28}", function() bn:forward(act); bn:backward(act, gact) end},
}

local saved = mo.get_num_threads()
local t1, t2 = {}, {}
for _ = 1, rounds do
  for i, k in ipairs(kernels) do
    mo.set_num_threads(1)
    t1[i] = t1[i] or {}
    t1[i][#t1[i] + 1] = time_ms(k[2])
    mo.set_num_threads(2)
    t2[i] = t2[i] or {}
    t2[i][#t2[i] + 1] = time_ms(k[2])
  end
end
mo.set_num_threads(saved)
for i, k in ipairs(kernels) do
  local a, b = median(t1[i]), median(t2[i])
  print(string.format("%-32s %8.3f %8.3f %6.2fx", k[1], a, b, a / b))
end
