-- bench/lean_accuracy.lua - accuracy with lean optimizer state (issue 14): the Fashion-MNIST
-- MLP 784-256-128-10 of examples/fashion_mnist.lua (or, with model "cnn", the CNN of
-- examples/fashion_cnn.lua), trained with AdamW + warmup-cosine for the same number of epochs
-- from the same initialization and shuffling with state_dtype "float32", "bfloat16" and
-- "int8", for 3 seeds. Prints one line per run and the mean test accuracy per state dtype with
-- its difference from float32 (target: within 0.3 points).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/lean_accuracy.lua [epochs=5] [seeds=3] [data dir] [mlp|cnn]
--
-- Needs Debian's dataset-fashion-mnist. About 3 x 3 x epochs x (a few seconds) on one core
-- for the MLP; the CNN's epoch is about a minute on one core.
local mo = require "moonopt"
local nn = mo.nn

local epochs = tonumber(arg[1]) or 5
local nseeds = tonumber(arg[2]) or 3
local dir = arg[3] ~= "" and arg[3] or nil
local model_name = arg[4] or "mlp"
assert(model_name == "mlp" or model_name == "cnn", "lean_accuracy: the model is mlp or cnn")
local DTYPES = {"float32", "bfloat16", "int8"}

local train_set, test_set = mo.data.fashion_mnist{dir = dir, normalize = true}

local function build()
  if model_name == "mlp" then
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))
  end
  -- the CNN main job's network, on the images {n, 1, 28, 28}
  return nn.Sequential(nn.Conv2d(1, 32, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(32, 64, 3, {padding = 1}), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
end
if model_name == "cnn" then
  for _, ds in ipairs{train_set, test_set} do ds.x = ds.x:view(ds.x:size(1), 1, 28, 28) end
end

local function run(seed, sdt)
  mo.manual_seed(seed)
  local model = build()
  local opt = mo.optim.AdamW(model:parameters(), {lr = 2e-3, weight_decay = 1e-2, state_dtype = sdt})
  local batch = 128
  local steps = math.ceil(mo.data.size(train_set) / batch)
  local sched = mo.sched.WarmupCosine(opt, {warmup = steps, total = epochs * steps})
  local h = mo.train.fit{model = model, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched,
                         schedule_per = "batch", data = train_set, eval = test_set, epochs = epochs,
                         batch_size = batch, progress = false}
  local secs = 0
  for _, s in ipairs(h.seconds) do secs = secs + s end
  return h.eval_acc[#h.eval_acc], secs / #h.seconds
end

print(string.format("lean state accuracy: the %s, %d epochs, %d seeds; BLAS %s, kernel %s, %d thread(s)",
                    model_name:upper(), epochs, nseeds, mo.blas_backend, mo.blas_kernel, mo.get_num_threads()))
local sums = {}
for _, sdt in ipairs(DTYPES) do sums[sdt] = 0 end
for k = 1, nseeds do
  local seed = 41 + k
  for _, sdt in ipairs(DTYPES) do
    local acc, epoch_s = run(seed, sdt)
    sums[sdt] = sums[sdt] + acc
    print(string.format("seed %d  state_dtype %-8s  test accuracy %.4f  (%.2f s per epoch)", seed, sdt, acc,
                        epoch_s))
    io.stdout:flush()
  end
end
print(string.format("mean over %d seeds, %d epochs:", nseeds, epochs))
local base = sums.float32 / nseeds
for _, sdt in ipairs(DTYPES) do
  local mean = sums[sdt] / nseeds
  print(string.format("  %-8s  %.2f %%   (%+.2f points vs float32; target within 0.3)", sdt, 100 * mean,
                      100 * (mean - base)))
end
