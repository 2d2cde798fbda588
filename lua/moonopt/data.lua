--- mo.data: data sets as tensors, batches, normalization, synthetic sets.
--
--   local mo = require "moonopt"
--   local train, test = mo.data.fashion_mnist{normalize = true}
--   for xb, yb, i in mo.data.batches(train, 128) do ... end
--
-- A data set is a table {x = Tensor {n, ...}, y = Tensor {n} or {n, k} (or nil)}.
-- Classification labels are class numbers 1..C stored as floats. Reading,
-- gathering and normalizing run in C (moonopt.core); see docs/data.md.
local core = require "moonopt.core"

local data = {}

local floor, ceil, min = math.floor, math.ceil, math.min

-- ---------------------------------------------------------------------------
-- argument checks: every public function is wrapped by apierror.api (`public` below),
-- so a failed check is reported at the caller's line

local apierror = require "moonopt.apierror"
local fail, show, check_opts = apierror.fail, apierror.show, apierror.check_options

local function is_tensor(x) return core.is_tensor(x) end

local function check_count(fname, name, v, lo)
  return apierror.check_int(fname, name, v, lo)
end

local function check_number(fname, name, v, lo)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge or (lo and v < lo) then
    fail("%s: %s must be a finite number%s, got %s", fname, name, lo and (" >= " .. lo) or "", show(v))
  end
  return v
end

local public = apierror.api

local function shape_str(t)
  return "{" .. table.concat(t:shape(), ", ") .. "}"
end

-- The number of examples of a data set; errors name `fname` and say what is wrong.
local function check(ds, fname)
  fname = fname or "check"
  if type(ds) ~= "table" then fail("%s: data set must be a table {x = ..., y = ...}, got %s", fname, show(ds)) end
  if not is_tensor(ds.x) then fail("%s: data set field x must be a tensor, got %s", fname, show(ds.x)) end
  if ds.x:dim() < 1 then fail("%s: data set x must have at least one dimension", fname) end
  local n = ds.x:size(1)
  if ds.y ~= nil then
    if not is_tensor(ds.y) then fail("%s: data set field y must be a tensor or nil, got %s", fname, show(ds.y)) end
    if ds.y:dim() < 1 or ds.y:size(1) ~= n then
      fail("%s: x %s and y %s disagree on the number of examples", fname, shape_str(ds.x), shape_str(ds.y))
    end
  end
  return n
end

--- data.check(ds [, fname = "check"]) -> the number of examples of a checked data set.
data.check = public(check)

--- data.dataset(x, y) -> {x = x, y = y}, checked.
data.dataset = public(function(x, y)
  local ds = {x = x, y = y}
  check(ds, "dataset")
  return ds
end)

--- Number of examples of a data set.
data.size = public(function(ds)
  return check(ds, "size")
end)

-- defined below, used by fashion_mnist
local normalize, subset

-- ---------------------------------------------------------------------------
-- IDX files

local idx_read_opts = {scale = true, shift = true}

--- data.read_idx(path [, {scale = 1, shift = 0}]) -> float32 tensor of the file's shape.
-- Raw or gzip (detected from the content). Each element becomes element * scale + shift.
data.read_idx = public(function(path, opts)
  opts = check_opts("read_idx", opts, idx_read_opts)
  return core.read_idx(path, opts.scale, opts.shift)
end)

--- data.decode_idx(bytes [, opts]): the same from a string holding a file's bytes.
data.decode_idx = public(function(bytes, opts)
  opts = check_opts("decode_idx", opts, idx_read_opts)
  return core.decode_idx(bytes, opts.scale, opts.shift)
end)

--- data.write_idx(path, t [, {type = "float32", gzip = <path ends in .gz>, level = 6}])
data.write_idx = public(function(path, t, opts)
  opts = check_opts("write_idx", opts, {type = true, gzip = true, level = true})
  if type(path) ~= "string" then fail("write_idx: path must be a string, got %s", show(path)) end
  local gz = opts.gzip
  if gz == nil then gz = path:sub(-3) == ".gz" end
  local level = 0
  if gz then level = opts.level or 6 end
  core.write_idx(path, t, opts.type or "float32", level)
end)

-- ---------------------------------------------------------------------------
-- Fashion-MNIST (and any data set in MNIST's IDX layout)

-- Whether path exists, found without opening it (opening a FIFO blocks); read_idx then
-- refuses anything that is not a regular file with a message naming it.
local function readable(path)
  return core.file_kind(path) ~= nil
end

-- The path of `base` or `base.gz` in dir, or nil.
local function find_file(dir, base)
  for _, name in ipairs{base .. ".gz", base} do
    local p = dir .. "/" .. name
    if readable(p) then return p end
  end
  return nil
end

--- data.idx_classification{images = path, labels = path, classes = C} -> data set
-- Images {n, ...} uint8 become {n, prod(...)} floats in [0, 1]; labels 0..C-1
-- become 1..C. Checks that the counts agree and every label is a class.
local function idx_classification(opts)
  opts = check_opts("idx_classification", opts, {images = true, labels = true, classes = true, flatten = true})
  local x = core.read_idx(opts.images, 1 / 255, 0)
  local y = core.read_idx(opts.labels, 1, 1)
  if y:dim() ~= 1 then
    fail("idx_classification: %s: labels must be 1-d, got %s", opts.labels, shape_str(y))
  end
  if x:size(1) ~= y:size(1) then
    fail("idx_classification: %s has %d images but %s has %d labels", opts.images, x:size(1), opts.labels,
      y:size(1))
  end
  if opts.flatten ~= false and x:dim() > 2 then
    local features = 1
    for d = 2, x:dim() do features = features * x:size(d) end
    x = x:view(x:size(1), features)
  end
  local classes = opts.classes
  if classes and y:numel() > 0 and (y:min():item() < 1 or y:max():item() > classes) then
    fail("idx_classification: %s: labels must be 0..%d, found %g..%g", opts.labels, classes - 1, y:min():item() - 1,
      y:max():item() - 1)
  end
  return {x = x, y = y, classes = classes}
end
data.idx_classification = public(idx_classification)

data.fashion_mnist_dir = "/usr/share/datasets/fashion-mnist"

data.fashion_mnist_classes = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
}

--- data.fashion_mnist{dir = "/usr/share/datasets/fashion-mnist", normalize = false,
--                      n_train = all, n_test = all} -> train, test
-- Images flattened to {n, 784} in [0, 1]; with normalize = true standardized by the
-- training set's mean and std (train.stats, test.stats = {mean =, std =}); labels 1..10.
data.fashion_mnist = public(function(opts)
  opts = check_opts("fashion_mnist", opts, {dir = true, normalize = true, n_train = true, n_test = true})
  local dir = opts.dir or data.fashion_mnist_dir
  if type(dir) ~= "string" then fail("fashion_mnist: dir must be a string, got %s", show(dir)) end
  local files = {}
  for _, base in ipairs{"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"} do
    local p = find_file(dir, base)
    if not p then
      fail("Fashion-MNIST not found in %s (no %s[.gz]): install Debian's dataset-fashion-mnist (make deps)", dir,
        base)
    end
    files[#files + 1] = p
  end
  local train = idx_classification{images = files[1], labels = files[2], classes = 10}
  local test = idx_classification{images = files[3], labels = files[4], classes = 10}
  if opts.n_train then train = subset(train, 1, min(check_count("fashion_mnist", "n_train", opts.n_train, 0),
    check(train))) end
  if opts.n_test then test = subset(test, 1, min(check_count("fashion_mnist", "n_test", opts.n_test, 0),
    check(test))) end
  train.class_names, test.class_names = data.fashion_mnist_classes, data.fashion_mnist_classes
  if opts.normalize then
    local stats = normalize(train.x)
    normalize(test.x, stats)
    train.stats, test.stats = stats, stats
  end
  return train, test
end)

-- ---------------------------------------------------------------------------
-- normalization

--- data.normalize(x [, stats]) -> stats
-- In place: x = (x - mean) / std. Without stats, computes them from x: one mean and
-- std over all elements (stats = {mean = number, std = number}), or per column of
-- x {n, d} with stats = {per_feature = true} (mean and std become tensors {d};
-- columns with std 0 are divided by 1). Pass the returned stats to normalize
-- other sets (test data) the same way.
function normalize(x, stats, ...)
  apierror.check_nargs("normalize", 2, "x, stats", x, stats, ...)
  if not is_tensor(x) then fail("normalize: x must be a tensor, got %s", show(x)) end
  stats = stats or {}
  if type(stats) ~= "table" then fail("normalize: stats must be a table, got %s", show(stats)) end
  local mean, std = stats.mean, stats.std
  if is_tensor(mean) or is_tensor(std) or (stats.per_feature and mean == nil) then
    if mean == nil then
      mean, std = core.column_mean_std(x)
      for j = 1, std:size(1) do
        if std:get(j) == 0 then std:set(j, 1) end
      end
    end
    core.normalize_columns_(x, mean, std)
    return {mean = mean, std = std, per_feature = true}
  end
  if mean == nil then
    mean, std = core.mean_std(x)
    if std == 0 then std = 1 end
  end
  core.normalize_(x, mean, std)
  return {mean = mean, std = std}
end
data.normalize = public(normalize)

-- ---------------------------------------------------------------------------
-- subsets and splits

--- data.subset(ds, first, count) -> a data set of views on examples first..first+count-1 (no copy).
function subset(ds, first, count)
  local n = check(ds, "subset")
  first = check_count("subset", "first", first, 1)
  count = check_count("subset", "count", count, 0)
  if first + count - 1 > n then
    fail("subset: examples %d..%d outside 1..%d", first, first + count - 1, n)
  end
  local out = {}
  for k, v in pairs(ds) do out[k] = v end
  out.x = ds.x:narrow(1, first, count)
  if ds.y then out.y = ds.y:narrow(1, first, count) end
  return out
end
data.subset = public(subset)

--- data.gather(ds, rows) -> a new data set holding the examples rows (a list of 1-based numbers).
local function gather(ds, rows)
  check(ds, "gather")
  if type(rows) ~= "table" then fail("gather: rows must be a list, got %s", show(rows)) end
  local out = {}
  for k, v in pairs(ds) do out[k] = v end
  local xs = ds.x:shape()
  xs[1] = #rows
  out.x = core.gather_rows(core.empty(xs, {dtype = ds.x.dtype}), ds.x, rows, 1, #rows)
  if ds.y then
    local ys = ds.y:shape()
    ys[1] = #rows
    out.y = core.gather_rows(core.empty(ys, {dtype = ds.y.dtype}), ds.y, rows, 1, #rows)
  end
  return out
end
data.gather = public(gather)

--- data.split(ds, n_first [, {shuffle = true}]) -> first, rest
-- n_first an integer count or a fraction in (0, 1). Shuffled (seeded by mo.manual_seed)
-- unless shuffle = false; the parts are copies.
data.split = public(function(ds, n_first, opts)
  local n = check(ds, "split")
  opts = check_opts("split", opts, {shuffle = true})
  if type(n_first) == "number" and n_first > 0 and n_first < 1 then n_first = floor(n_first * n + 0.5) end
  n_first = check_count("split", "n_first", n_first, 0)
  if n_first > n then fail("split: n_first %d exceeds the %d examples", n_first, n) end
  local order
  if opts.shuffle == false then
    order = {}
    for i = 1, n do order[i] = i end
  else
    order = core.randperm(n)
  end
  local a, b = {}, {}
  for i = 1, n_first do a[i] = order[i] end
  for i = n_first + 1, n do b[#b + 1] = order[i] end
  return gather(ds, a), gather(ds, b)
end)

-- ---------------------------------------------------------------------------
-- augmentation (random crop with zero padding, horizontal flip; core/data.c)

-- The checked augmentation options of `fname` for examples of x's shape:
-- {crop = pad, flip = bool, chw = {C, H, W}}, or nil when opts is nil or false.
local function augment_spec(fname, opts, x)
  if opts == nil or opts == false then return nil end
  opts = check_opts(fname .. ": augment", opts, {crop = true, flip = true, shape = true})
  local pad = check_count(fname, "augment.crop (the padding of the random crop)", opts.crop or 0, 0)
  if opts.flip ~= nil and type(opts.flip) ~= "boolean" then
    fail("%s: augment.flip must be a boolean, got %s", fname, show(opts.flip))
  end
  local per = 1
  for d = 2, x:dim() do per = per * x:size(d) end
  local chw = opts.shape
  if chw == nil then
    if x:dim() == 4 then chw = {x:size(2), x:size(3), x:size(4)}
    elseif x:dim() == 3 then chw = {1, x:size(2), x:size(3)}
    else
      fail("%s: augment needs images: x %s is not {n, C, H, W} or {n, H, W}; give augment.shape = {C, H, W}",
           fname, shape_str(x))
    end
  else
    if type(chw) ~= "table" or (#chw ~= 2 and #chw ~= 3) then
      fail("%s: augment.shape must be {C, H, W} or {H, W}, got %s", fname, show(chw))
    end
    local c = {}
    for i, v in ipairs(chw) do c[i] = check_count(fname, "augment.shape[" .. i .. "]", v, 1) end
    chw = #c == 2 and {1, c[1], c[2]} or c
    if chw[1] * chw[2] * chw[3] ~= per then
      fail("%s: augment.shape {%d, %d, %d} does not hold the %d values of an example of x %s", fname, chw[1],
           chw[2], chw[3], per, shape_str(x))
    end
  end
  return {crop = pad, flip = opts.flip == true, chw = chw}
end

-- dst = the augmented src (both {b, ...}, contiguous), per spec, from the generator `seed`.
local function augment_into(dst, src, spec, seed)
  local b, chw = src:size(1), spec.chw
  core.augment_crop_flip(dst:view(b, chw[1], chw[2], chw[3]), src:contiguous():view(b, chw[1], chw[2], chw[3]),
                         spec.crop, spec.flip, seed)
  return dst
end

--- data.augment(x, {crop = 0, flip = false [, shape = {C, H, W}]}) -> a new augmented copy of x
-- x {n, C, H, W} or {n, H, W} (or flat rows with `shape`): each example cropped at a random
-- offset from the image zero-padded by `crop` pixels (same size), then mirrored left-right
-- with probability 1/2 when `flip`. Draws one number from the default generator.
data.augment = public(function(x, opts)
  if not is_tensor(x) or x:dim() < 2 then fail("augment: x must be a tensor {n, ...}, got %s", show(x)) end
  local spec = augment_spec("augment", opts or {}, x)
  return augment_into(core.empty(x:shape(), {dtype = x.dtype}), x, spec, core.augment_seed())
end)

-- ---------------------------------------------------------------------------
-- batches

local Loader = {}
Loader.__index = Loader

--- data.loader(ds, {batch_size = 32, shuffle = true, drop_last = false}) -> loader
-- loader:epoch([first]) -> iterator over (xb, yb, i) for one pass (from batch `first`,
-- default 1: the order is drawn as for a whole pass, then batches before `first` are
-- skipped without being gathered); loader:num_batches().
-- augment = {crop = pad, flip = true [, shape = {C, H, W}]} augments every batch (see
-- data.augment) into a buffer of its own, from a seed drawn after the pass's order: the
-- batches of a pass depend only on the generator state at its start (exact resume).
-- Shuffled epochs draw a new permutation from the default generator (mo.manual_seed)
-- and gather into batch buffers made once and reused: a batch is only valid until
-- the next one is produced (copy it with :clone() to keep it). Unshuffled batches
-- are views of the data set (no copy).
-- Sharded (options rank = r, world_size = N; docs/distributed.md "Data"): every rank
-- draws the same permutation (same seed), cuts it into global batches of N * batch_size
-- and takes part r of each (dist.shard_range's split), so N ranks at batch B see exactly
-- the batches of one process at batch N * B. A last global batch with fewer than N
-- examples is dropped (a rank would get none); loader:global_count(i) is the size of
-- global batch i (for weighting a last, unevenly split batch).
data.loader = public(function(ds, opts)
  local n = check(ds, "loader")
  opts = check_opts("loader", opts, {batch_size = true, shuffle = true, drop_last = true, rank = true,
                                     world_size = true, augment = true})
  local bs = check_count("loader", "batch_size", opts.batch_size or 32, 1)
  local ws = check_count("loader", "world_size", opts.world_size or 1, 1)
  local rank = check_count("loader", "rank", opts.rank or 1, 1)
  if rank > ws then fail("loader: rank must be in 1..%d (world_size), got %d", ws, rank) end
  local self = setmetatable({ds = ds, n = n, batch_size = bs, shuffle = opts.shuffle ~= false,
                             drop_last = opts.drop_last == true, rank = rank, world_size = ws,
                             augment = augment_spec("loader", opts.augment, ds.x)}, Loader)
  return self
end)

function Loader:num_batches()
  local ws = self.world_size or 1
  local g = self.batch_size * ws
  if self.drop_last or self.n % g < ws then return self.n // g end
  return ceil(self.n / g)
end

--- loader:global_count(i) -> the number of examples in batch i over all ranks.
function Loader:global_count(i)
  local g = self.batch_size * (self.world_size or 1)
  return min(g, self.n - (i - 1) * g)
end

-- Batch i's rows for this rank: the first row (1-based, in the pass's order) and the count.
local function rows_of(self, i)
  local ws = self.world_size or 1
  local g = self.batch_size * ws
  local gfirst = (i - 1) * g + 1
  local gcount = min(g, self.n - gfirst + 1)
  if ws == 1 then return gfirst, gcount end
  local r, base, extra = self.rank - 1, gcount // ws, gcount % ws
  return gfirst + r * base + min(r, extra), base + (r < extra and 1 or 0)
end

-- Buffers {batch_size, ...} for x and y, and their views for a last, shorter batch.
local function buffers(self, count)
  local ds = self.ds
  if not self.xbuf then
    local xs = ds.x:shape()
    xs[1] = self.batch_size
    self.xbuf = core.empty(xs, {dtype = ds.x.dtype})
    if ds.y then
      local ys = ds.y:shape()
      ys[1] = self.batch_size
      self.ybuf = core.empty(ys, {dtype = ds.y.dtype})
    end
  end
  if count == self.batch_size then return self.xbuf, self.ybuf end
  if self.short_count ~= count then
    self.short_count = count
    self.xshort = self.xbuf:narrow(1, 1, count)
    self.yshort = self.ybuf and self.ybuf:narrow(1, 1, count)
  end
  return self.xshort, self.yshort
end

-- The buffer {count, ...} augmented batches are written into (made once, like xbuf).
local function aug_buffer(self, count)
  if not self.abuf then
    local xs = self.ds.x:shape()
    xs[1] = self.batch_size
    self.abuf = core.empty(xs)
  end
  if count == self.batch_size then return self.abuf end
  if self.ashort_count ~= count then
    self.ashort_count, self.ashort = count, self.abuf:narrow(1, 1, count)
  end
  return self.ashort
end

-- The iterator over batches first.. of one pass (start checked by the caller).
local function epoch(self, start)
  local ds, n = self.ds, self.n
  local nb = self:num_batches()
  local perm = self.shuffle and core.randperm(n) or nil
  -- augmentation: one seed per pass, drawn right after the order; batch i's generator is
  -- seeded with seed + i, so a pass resumed at batch `first` augments as the whole pass did
  local spec = self.augment
  local seed = spec and core.augment_seed()
  local x, y = ds.x, ds.y
  local i = start - 1
  local gather_rows = core.gather_rows
  return function()
    i = i + 1
    if i > nb then return nil end
    local first, count = rows_of(self, i)
    local xb, yb
    if not perm then
      xb, yb = x:narrow(1, first, count), y and y:narrow(1, first, count)
    else
      xb, yb = buffers(self, count)
      gather_rows(xb, x, perm, first, count)
      if yb then gather_rows(yb, y, perm, first, count) end
    end
    if spec then xb = augment_into(aug_buffer(self, count), xb, spec, seed + i) end
    return xb, yb, i
  end
end

function Loader:epoch(start)
  return epoch(self, check_count("loader:epoch", "first", start or 1, 1))
end
Loader.epoch = public(Loader.epoch)

--- data.batches(ds, batch_size [, {shuffle = true, drop_last = false}]) -> iterator (xb, yb, i)
-- One pass over ds: every example exactly once (drop_last: except a last partial batch).
data.batches = public(function(ds, batch_size, opts)
  opts = check_opts("batches", opts, {shuffle = true, drop_last = true, augment = true})
  local n = check(ds, "batches")
  local bs = check_count("batches", "batch_size", batch_size, 1)
  local l = setmetatable({ds = ds, n = n, batch_size = bs, shuffle = opts.shuffle ~= false,
                          drop_last = opts.drop_last == true,
                          augment = augment_spec("batches", opts.augment, ds.x)}, Loader)
  return epoch(l, 1)
end)

-- ---------------------------------------------------------------------------
-- synthetic sets (seeded by mo.manual_seed)

-- n standard normals as a Lua list.
local function normals(n)
  if n == 0 then return {} end
  return core.randn(n):totable()
end

-- Rows in a random order: x {n, d} from the flat list xs, y {n} or {n, k} from ys.
local function shuffled_set(xs, d, ys, k)
  local n = #xs // d
  local perm = core.randperm(n)
  local px, py = {}, {}
  for i = 1, n do
    local src = perm[i]
    for j = 1, d do px[(i - 1) * d + j] = xs[(src - 1) * d + j] end
    for j = 1, k do py[(i - 1) * k + j] = ys[(src - 1) * k + j] end
  end
  local x = core.tensor(px, {n, d})
  local y = k == 1 and core.tensor(py, {n}) or core.tensor(py, {n, k})
  return x, y
end

--- data.spirals{n = 300, classes = 3, noise = 0.2, turns = 1} -> {x {n, 2}, y {n} in 1..classes}
-- `classes` interleaved spiral arms (n points in all, shared as evenly as possible),
-- radius growing from 0 to 1 along each arm, angle noise of sd `noise` radians.
data.spirals = public(function(opts)
  opts = check_opts("spirals", opts, {n = true, classes = true, noise = true, turns = true})
  local n = check_count("spirals", "n", opts.n or 300, 0)
  local classes = check_count("spirals", "classes", opts.classes or 3, 1)
  local noise = check_number("spirals", "noise", opts.noise or 0.2, 0)
  local turns = check_number("spirals", "turns", opts.turns or 1, 0)
  local z = normals(n)
  local xs, ys = {}, {}
  local idx = 0
  for k = 1, classes do
    local m = n // classes + ((k <= n % classes) and 1 or 0)
    for j = 1, m do
      idx = idx + 1
      local r = m > 1 and (j - 1) / (m - 1) or 0
      local theta = 2 * math.pi * ((k - 1) / classes + turns * r) + noise * z[idx]
      xs[#xs + 1] = r * math.sin(theta)
      xs[#xs + 1] = r * math.cos(theta)
      ys[#ys + 1] = k
    end
  end
  local x, y = shuffled_set(xs, 2, ys, 1)
  return {x = x, y = y, classes = classes}
end)

--- data.moons{n = 200, noise = 0.1} -> {x {n, 2}, y {n} in 1..2}: two interleaved half circles.
data.moons = public(function(opts)
  opts = check_opts("moons", opts, {n = true, noise = true})
  local n = check_count("moons", "n", opts.n or 200, 0)
  local noise = check_number("moons", "noise", opts.noise or 0.1, 0)
  local z = normals(2 * n)
  local n_out = n - n // 2
  local xs, ys = {}, {}
  for i = 1, n do
    local a, b, label
    if i <= n_out then
      local t = n_out > 1 and math.pi * (i - 1) / (n_out - 1) or 0
      a, b, label = math.cos(t), math.sin(t), 1
    else
      local m = n - n_out
      local t = m > 1 and math.pi * (i - n_out - 1) / (m - 1) or 0
      a, b, label = 1 - math.cos(t), 0.5 - math.sin(t), 2
    end
    xs[#xs + 1] = a + noise * z[2 * i - 1]
    xs[#xs + 1] = b + noise * z[2 * i]
    ys[#ys + 1] = label
  end
  local x, y = shuffled_set(xs, 2, ys, 1)
  return {x = x, y = y, classes = 2}
end)

--- data.regression{n = 200, d = 5, noise = 0.1, bias = 0} -> {x {n, d}, y {n, 1}, w {d}, b}
-- x ~ N(0, 1), a random true weight w ~ N(0, 1), y = x w + b + noise * N(0, 1).
data.regression = public(function(opts)
  opts = check_opts("regression", opts, {n = true, d = true, noise = true, bias = true})
  local n = check_count("regression", "n", opts.n or 200, 0)
  local d = check_count("regression", "d", opts.d or 5, 1)
  local noise = check_number("regression", "noise", opts.noise or 0.1, 0)
  local bias = check_number("regression", "bias", opts.bias or 0)
  local w = normals(d)
  local xs = normals(n * d)
  local e = normals(n)
  local ys = {}
  for i = 1, n do
    local s = bias
    for j = 1, d do s = s + xs[(i - 1) * d + j] * w[j] end
    ys[i] = s + noise * e[i]
  end
  local x = n > 0 and core.tensor(xs, {n, d}) or core.zeros(0, d)
  local y = n > 0 and core.tensor(ys, {n, 1}) or core.zeros(0, 1)
  return {x = x, y = y, w = core.tensor(w, {d}), b = bias}
end)

return data
