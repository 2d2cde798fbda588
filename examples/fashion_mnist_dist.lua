--- examples/fashion_mnist_dist.lua - the Fashion-MNIST MLP of examples/fashion_mnist.lua,
-- trained data-parallel across processes with moonopt.dist (docs/distributed.md):
--
--   mpirun -np 2 lua5.4 examples/fashion_mnist_dist.lua [--epochs 10] [--batch 128] [--lr 2e-3]
--   (from a checkout: LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;";
--    as root Open MPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;
--    more ranks than cores: mpirun --oversubscribe)
--
-- --batch is the GLOBAL batch (each of N ranks takes batch/N of it), so any number of
-- ranks takes the same steps as the one-process demo and reaches its accuracy (>= 0.89
-- after 10 epochs). Every rank evaluates; rank 1 prints the progress and the last line
--   final test_acc=<accuracy> median_epoch_s=<seconds> ranks=<N>
local mo = require "moonopt"
local dist = require "moonopt.dist"

local nn = mo.nn
local rank, size = dist.init()

local function die(msg)
  io.stderr:write("fashion_mnist_dist: ", msg, "\n")
  dist.abort(1)
end

local opts = {epochs = 10, batch = 128, lr = 2e-3, wd = 1e-2, seed = 42}
for i = 1, #arg, 2 do
  local name, v = arg[i]:match("^%-%-(%w+)$"), tonumber(arg[i + 1] or "")
  if not (name and opts[name] and v) then die("usage: [--epochs N] [--batch N] [--lr X] [--wd X] [--seed N]") end
  opts[name] = v
end
if opts.batch % size ~= 0 then die(("--batch %d must be a multiple of the %d ranks"):format(opts.batch, size)) end

-- one thread per rank (moonopt's pool, which BLAS runs on): the ranks already share the cores
mo.set_num_threads(1)

local ok, train_set, test_set = pcall(mo.data.fashion_mnist, {normalize = true})
if not ok then die(tostring(train_set)) end

mo.manual_seed(opts.seed)   -- the same seed on every rank: the same data order
local model = nn.Sequential(
  nn.Linear(784, 256), nn.ReLU(),
  nn.Linear(256, 128), nn.ReLU(),
  nn.Linear(128, 10))
local ddp = dist.DataParallel(model)
local opt = mo.optim.AdamW(ddp:parameters(), {lr = opts.lr, weight_decay = opts.wd})
local steps_per_epoch = math.ceil(mo.data.size(train_set) / opts.batch)
local total = opts.epochs * steps_per_epoch
local sched = mo.sched.WarmupCosine(opt, {warmup = math.min(steps_per_epoch, total), total = total})

if rank == 1 then
  print(("Fashion-MNIST on %d ranks: global batch %d (%d per rank), %d epochs, AdamW lr=%g"):format(
    size, opts.batch, opts.batch // size, opts.epochs, opts.lr))
end
local history = mo.train.fit{
  model = ddp, loss = nn.CrossEntropyLoss(), optimizer = opt, scheduler = sched,
  data = train_set, eval = test_set, epochs = opts.epochs, batch_size = opts.batch // size,
  dist = dist,
}

local s = {}
for i, v in ipairs(history.seconds) do s[i] = v end
table.sort(s)
if rank == 1 then
  print(("final test_acc=%.4f median_epoch_s=%.3f ranks=%d"):format(history.eval_acc[#history],
    s[(#s + 1) // 2], size))
end
dist.finalize()
