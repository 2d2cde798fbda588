-- tests/lua/test_data.lua - mo.data: IDX files, Fashion-MNIST, batches, normalization,
-- synthetic sets. IDX files are written by the tests themselves (string.pack and
-- mo.data.write_idx) into temporary files that are removed again.
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local data = mo.data

-- ---------------------------------------------------------------------------
-- helpers

local tmp_files = {}

-- A fresh temporary path ending in `suffix` (removed by cleanup()).
local function tmp_path(suffix)
  local base = os.tmpname()
  os.remove(base)
  local p = base .. (suffix or "")
  tmp_files[#tmp_files + 1] = p
  return p
end

local function cleanup()
  for _, p in ipairs(tmp_files) do os.remove(p) end
  tmp_files = {}
end

local function write_file(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- IDX bytes: type code, sizes, and the packed elements.
local function idx_bytes(type_code, sizes, elem_fmt, values)
  local parts = {string.pack(">BBBB", 0, 0, type_code, #sizes)}
  for _, n in ipairs(sizes) do parts[#parts + 1] = string.pack(">I4", n) end
  for _, v in ipairs(values or {}) do parts[#parts + 1] = string.pack(elem_fmt, v) end
  return table.concat(parts)
end

-- Calls f(...) expecting an error whose message contains every string in `words` (plain).
local function expect_error(words, f, ...)
  local ok, msg = pcall(f, ...)
  lu.assertFalse(ok, "expected an error containing: " .. table.concat(words, " | "))
  msg = tostring(msg)
  for _, w in ipairs(words) do
    if not msg:find(w, 1, true) then
      lu.fail(("error message %q does not contain %q"):format(msg, w))
    end
  end
  return msg
end

local function flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then for _, x in ipairs(v) do walk(x) end else out[#out + 1] = v end
  end
  walk(t:totable())
  return out
end

-- ---------------------------------------------------------------------------
-- IDX

local TestDataIdx = {}

function TestDataIdx.tearDown() cleanup() end

function TestDataIdx.test_decode_mnist_layout_with_scale_and_shift()
  local bytes = idx_bytes(0x08, {2, 2, 3}, "B", {0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255})
  local t = data.decode_idx(bytes)
  lu.assertEquals(t:shape(), {2, 2, 3})
  lu.assertEquals(t:get(2, 2, 3), 255)
  lu.assertEquals(t:get(1, 1, 2), 1)
  local s = data.decode_idx(bytes, {scale = 1 / 255})
  lu.assertEquals(s:get(2, 2, 3), 1)
  lu.assertAlmostEquals(s:get(2, 1, 1), 250 / 255, 1e-7)
  local labels = data.decode_idx(idx_bytes(0x08, {3}, "B", {0, 9, 4}), {shift = 1})
  lu.assertEquals(flat(labels), {1, 10, 5})
end

function TestDataIdx.test_decode_signed_and_float_types()
  lu.assertEquals(flat(data.decode_idx(idx_bytes(0x09, {3}, ">i1", {-1, -128, 127}))), {-1, -128, 127})
  lu.assertEquals(flat(data.decode_idx(idx_bytes(0x0B, {3}, ">i2", {-2, 256, -32768}))), {-2, 256, -32768})
  lu.assertEquals(flat(data.decode_idx(idx_bytes(0x0C, {2}, ">i4", {-3, 70000}))), {-3, 70000})
  lu.assertEquals(flat(data.decode_idx(idx_bytes(0x0D, {2}, ">f", {1.5, -2.25}))), {1.5, -2.25})
  local d = data.decode_idx(idx_bytes(0x0E, {1, 1}, ">d", {0.1}))
  lu.assertEquals(d:shape(), {1, 1})
  lu.assertAlmostEquals(d:get(1, 1), 0.1, 1e-8)
end

function TestDataIdx.test_round_trip_raw_and_gzip_every_type()
  local values = {{0, 1, 2}, {127, 200, 255}}
  local t = mo.tensor(values)
  for _, ty in ipairs{"uint8", "int16", "int32", "float32", "float64"} do
    for _, suffix in ipairs{".idx", ".idx.gz"} do
      local p = tmp_path(suffix)
      data.write_idx(p, t, {type = ty})
      local head = read_file(p):sub(1, 2)
      if suffix == ".idx.gz" then lu.assertEquals(head, "\x1f\x8b") else lu.assertEquals(head, "\0\0") end
      local back = data.read_idx(p)
      lu.assertEquals(back:shape(), {2, 3})
      lu.assertEquals(back:totable(), values)
    end
  end
  -- gzip is detected from the content, not the name
  local p = tmp_path(".raw")
  data.write_idx(p, t, {type = "uint8", gzip = true})
  lu.assertEquals(read_file(p):sub(1, 2), "\x1f\x8b")
  lu.assertEquals(data.read_idx(p):totable(), values)
  -- and the bytes decode from memory too
  lu.assertEquals(data.decode_idx(read_file(p)):totable(), values)
end

function TestDataIdx.test_write_rejects_values_outside_the_type()
  local p = tmp_path(".idx")
  expect_error({"write_idx", p, "element 1", "256", "uint8"}, data.write_idx, p, mo.tensor{0, 256}, {type = "uint8"})
  expect_error({"write_idx", "element 0", "0.5"}, data.write_idx, p, mo.tensor{0.5}, {type = "int8"})
  expect_error({"unknown IDX type 'int64'"}, data.write_idx, p, mo.tensor{1}, {type = "int64"})
  expect_error({"write_idx: unknown option 'kind'"}, data.write_idx, p, mo.tensor{1}, {kind = "uint8"})
  lu.assertNil(io.open(p, "rb"))  -- nothing was written
end

-- Every damaged file gives an error naming the function, the file and the problem.
function TestDataIdx.test_damaged_files_name_the_file_and_the_problem()
  local good = idx_bytes(0x08, {2, 3}, "B", {1, 2, 3, 4, 5, 6})
  local cases = {
    {good:sub(1, -2), "truncated: the header says {2, 3} uint8, which needs 6 data bytes; there are 5"},
    {good .. "\0\0", "2 trailing bytes"},
    {good:sub(1, 3), "too short for the 4-byte IDX magic"},
    {good:sub(1, 9), "truncated header"},
    {"\x89PNG" .. good:sub(5), "wrong magic 0x89504e47: not an IDX file"},
    {"\0\0\x0a\x01" .. good:sub(5), "unknown element type 0x0a"},
    {"\0\0\x08\x0c", "12 dimensions; at most 8"},
    {idx_bytes(0x08, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, "B"), "product overflows"},
    {idx_bytes(0x08, {0x7fffffff, 0x7fffffff}, "B", {1, 2}), "truncated"},
  }
  for _, c in ipairs(cases) do
    local p = tmp_path(".idx")
    write_file(p, c[1])
    local msg = expect_error({"read_idx: ", p, c[2]}, data.read_idx, p)
    -- raised at the caller, not inside the library
    lu.assertNil(msg:find("data.lua", 1, true), msg)
  end
  expect_error({"read_idx: /nonexistent/x.idx: cannot open: No such file or directory"}, data.read_idx,
    "/nonexistent/x.idx")
  expect_error({"decode_idx: wrong magic"}, data.decode_idx, "hello world!")
end

function TestDataIdx.test_damaged_gzip_files()
  local gz = tmp_path(".idx.gz")
  data.write_idx(gz, mo.arange(200):view(20, 10), {type = "uint8"})
  local bytes = read_file(gz)
  local function bad(b, words)
    local p = tmp_path(".idx.gz")
    write_file(p, b)
    table.insert(words, 1, p)
    expect_error(words, data.read_idx, p)
  end
  bad(bytes:sub(1, -5), {"truncated: the gzip stream ends before its end marker"})
  bad(bytes:sub(1, #bytes // 2), {"truncated"})
  -- flip bits inside the CRC-32 (the 8 bytes before the end hold CRC and length)
  local crc = #bytes - 6
  bad(bytes:sub(1, crc - 1) .. string.char(bytes:byte(crc) ~ 0x55) .. bytes:sub(crc + 1), {"corrupt gzip data"})
  bad(bytes .. "junk", {"trailing bytes after the gzip data"})
  bad(bytes .. bytes, {"trailing bytes after the 200 data bytes"})
end

function TestDataIdx.test_bad_arguments()
  expect_error({"read_idx", "string expected, got number"}, data.read_idx, 42)
  expect_error({"read_idx: unknown option 'scal'"}, data.read_idx, "x", {scal = 1})
  expect_error({"read_idx", "scale must be a finite number"}, data.read_idx, "x", {scale = 0 / 0})
  expect_error({"path contains a zero byte"}, data.read_idx, "a\0b")
end

function TestDataIdx.test_real_fashion_mnist_labels_when_installed()
  local p = data.fashion_mnist_dir .. "/t10k-labels-idx1-ubyte.gz"
  local f = io.open(p, "rb")
  if not f then lu.skip("dataset-fashion-mnist not installed") end
  f:close()
  local y = data.read_idx(p, {shift = 1})
  lu.assertEquals(y:shape(), {10000})
  lu.assertEquals(y:min():item(), 1)
  lu.assertEquals(y:max():item(), 10)
  lu.assertEquals(y:sum():item(), 1000 * 55)  -- 1000 of each class 1..10
end

-- ---------------------------------------------------------------------------
-- Fashion-MNIST loader, on a small fake copy in the same layout

local TestDataFashion = {}

function TestDataFashion.tearDown() cleanup() end

-- A directory with n_train/n_test fake 28x28 images (pixel = label * 20) and labels.
local function fake_fashion(n_train, n_test, bad_label)
  local dir = tmp_path("_fmnist")
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local function write(prefix, n)
    local imgs, labels = {}, {}
    for i = 1, n do
      local lab = (i - 1) % 10
      labels[i] = lab
      for j = 1, 784 do imgs[(i - 1) * 784 + j] = lab * 20 + (j % 2) end
    end
    if bad_label and prefix == "t10k" then labels[1] = bad_label end
    data.write_idx(dir .. "/" .. prefix .. "-images-idx3-ubyte.gz", mo.tensor(imgs, {n, 28, 28}), {type = "uint8"})
    data.write_idx(dir .. "/" .. prefix .. "-labels-idx1-ubyte", mo.tensor(labels, {n}), {type = "uint8"})
    tmp_files[#tmp_files + 1] = dir .. "/" .. prefix .. "-images-idx3-ubyte.gz"
    tmp_files[#tmp_files + 1] = dir .. "/" .. prefix .. "-labels-idx1-ubyte"
  end
  write("train", n_train)
  write("t10k", n_test)
  tmp_files[#tmp_files + 1] = dir  -- removed last (empty by then)
  return dir
end

function TestDataFashion.test_loads_flattened_scaled_labels_from_one()
  local dir = fake_fashion(30, 20)
  local train, test = data.fashion_mnist{dir = dir}
  lu.assertEquals(train.x:shape(), {30, 784})
  lu.assertEquals(test.x:shape(), {20, 784})
  lu.assertEquals(train.y:shape(), {30})
  lu.assertEquals(train.y:get(1), 1)
  lu.assertEquals(train.y:get(10), 10)
  lu.assertAlmostEquals(train.x:get(10, 2), (9 * 20 + 0) / 255, 1e-7)
  lu.assertAlmostEquals(train.x:get(10, 1), (9 * 20 + 1) / 255, 1e-7)
  lu.assertEquals(train.class_names[10], "Ankle boot")
  lu.assertNil(train.stats)
end

function TestDataFashion.test_normalize_uses_training_statistics_for_both()
  local dir = fake_fashion(30, 20)
  local train, test = data.fashion_mnist{dir = dir, normalize = true, n_train = 25}
  lu.assertEquals(train.x:shape(), {25, 784})
  local m, s = core.mean_std(train.x)
  lu.assertAlmostEquals(m, 0, 1e-5)
  lu.assertAlmostEquals(s, 1, 1e-5)
  lu.assertIs(test.stats, train.stats)
  -- the test set went through the same affine map
  local raw = (9 * 20 + 1) / 255
  lu.assertAlmostEquals(test.x:get(10, 1), (raw - train.stats.mean) / train.stats.std, 1e-4)
end

function TestDataFashion.test_missing_dataset_message()
  local msg = expect_error({"Fashion-MNIST not found in /nonexistent/dir",
                            "install Debian's dataset-fashion-mnist (make deps)"},
    data.fashion_mnist, {dir = "/nonexistent/dir"})
  lu.assertNil(msg:find("data.lua", 1, true), msg)
  expect_error({"fashion_mnist: unknown option 'normalise'"}, data.fashion_mnist, {normalise = true})
end

function TestDataFashion.test_bad_labels_and_counts_are_named()
  local dir = fake_fashion(10, 10, 12)
  expect_error({"t10k-labels-idx1-ubyte", "labels must be 0..9, found 1..12"}, data.fashion_mnist, {dir = dir})
  local img = tmp_path(".idx")
  local lab = tmp_path(".idx")
  data.write_idx(img, mo.zeros(3, 2, 2), {type = "uint8"})
  data.write_idx(lab, mo.zeros(4), {type = "uint8"})
  expect_error({img, "has 3 images but", lab, "has 4 labels"}, data.idx_classification,
    {images = img, labels = lab, classes = 10})
end

-- ---------------------------------------------------------------------------
-- batches

local TestDataBatches = {}

-- n examples: x[i] = {i, -i}, y[i] = i, so every batch row says which example it is.
local function numbered(n)
  local xs, ys = {}, {}
  for i = 1, n do xs[2 * i - 1], xs[2 * i], ys[i] = i, -i, i end
  return {x = mo.tensor(xs, {n, 2}), y = mo.tensor(ys, {n})}
end

-- The example numbers of one epoch, checking that x and y rows stay together.
local function epoch_order(ds, bs, opts)
  local order, sizes, idx = {}, {}, {}
  for xb, yb, i in data.batches(ds, bs, opts) do
    idx[#idx + 1] = i
    sizes[#sizes + 1] = xb:size(1)
    lu.assertEquals(yb:size(1), xb:size(1))
    for r = 1, xb:size(1) do
      local id = xb:get(r, 1)
      lu.assertEquals(xb:get(r, 2), -id)
      lu.assertEquals(yb:get(r), id)
      order[#order + 1] = id
    end
  end
  return order, sizes, idx
end

function TestDataBatches.test_every_example_exactly_once_per_epoch()
  local ds = numbered(103)
  for _, shuffle in ipairs{true, false} do
    local order, sizes, idx = epoch_order(ds, 10, {shuffle = shuffle})
    lu.assertEquals(#order, 103)
    local seen = {}
    for _, id in ipairs(order) do
      lu.assertNil(seen[id], "example " .. id .. " twice")
      seen[id] = true
    end
    lu.assertEquals(sizes, {10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3})
    lu.assertEquals(idx, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
    if not shuffle then
      for i = 1, 103 do lu.assertEquals(order[i], i) end
    end
  end
  -- drop_last: the short batch is left out
  local order, sizes = epoch_order(ds, 10, {drop_last = true})
  lu.assertEquals(#order, 100)
  lu.assertEquals(#sizes, 10)
  -- batch larger than the data set
  order, sizes = epoch_order(ds, 500)
  lu.assertEquals(sizes, {103})
  lu.assertEquals(#order, 103)
end

function TestDataBatches.test_seeded_shuffle_is_reproducible()
  local ds = numbered(50)
  mo.manual_seed(7)
  local a = epoch_order(ds, 8)
  local a2 = epoch_order(ds, 8)   -- the next epoch: another order
  mo.manual_seed(7)
  local b = epoch_order(ds, 8)
  local b2 = epoch_order(ds, 8)
  lu.assertEquals(a, b)
  lu.assertEquals(a2, b2)
  lu.assertNotEquals(a, a2)
  mo.manual_seed(8)
  lu.assertNotEquals(epoch_order(ds, 8), a)
  -- shuffled at all
  local sorted = true
  for i = 1, #a do if a[i] ~= i then sorted = false end end
  lu.assertFalse(sorted)
end

function TestDataBatches.test_shuffled_batches_reuse_buffers_unshuffled_are_views()
  local ds = numbered(40)
  local loader = data.loader(ds, {batch_size = 16})
  local xs, ys = {}, {}
  for xb, yb in loader:epoch() do xs[#xs + 1], ys[#ys + 1] = xb, yb end
  lu.assertIs(xs[1], xs[2])              -- the same buffer, refilled
  lu.assertIs(ys[1], ys[2])
  lu.assertEquals(xs[3]:shape(), {8, 2})  -- the short last batch: a view of the buffer
  lu.assertTrue(xs[3]:same_storage(xs[1]))
  local x1 = loader:epoch()()
  lu.assertIs(x1, xs[1])                  -- and across epochs
  for xb in data.batches(ds, 16, {shuffle = false}) do
    lu.assertTrue(xb:same_storage(ds.x))  -- no copy without shuffling
  end
  lu.assertEquals(loader:num_batches(), 3)
end

function TestDataBatches.test_labels_optional_and_multidim_examples()
  local x = mo.arange(24):view(6, 2, 2)
  local n = 0
  for xb, yb in data.batches({x = x}, 4, {shuffle = false}) do
    lu.assertNil(yb)
    n = n + xb:size(1)
    lu.assertEquals(xb:dim(), 3)
  end
  lu.assertEquals(n, 6)
  mo.manual_seed(1)
  local total = 0
  for xb in data.batches({x = x, y = mo.zeros(6, 3)}, 4) do total = total + xb:sum():item() end
  lu.assertEquals(total, 300)  -- 1 + ... + 24
end

function TestDataBatches.test_bad_arguments()
  local ds = numbered(5)
  expect_error({"batches: batch_size must be a positive integer, got 0"}, data.batches, ds, 0)
  expect_error({"batches: batch_size must be a positive integer, got 2.5"}, data.batches, ds, 2.5)
  expect_error({"batches: unknown option 'shufle'"}, data.batches, ds, 2, {shufle = true})
  expect_error({"batches: data set must be a table"}, data.batches, 42, 2)
  expect_error({"x {5, 2} and y {4} disagree"}, data.batches, {x = ds.x, y = mo.zeros(4)}, 2)
  expect_error({"row number at position 2 must be an integer in 1..5"}, core.gather_rows, mo.zeros(2, 2), ds.x,
    {1, 6}, 1, 2)
  expect_error({"destination {3, 2} cannot hold 2 rows of {5, 2}"}, core.gather_rows, mo.zeros(3, 2), ds.x,
    {1, 2}, 1, 2)
end

-- ---------------------------------------------------------------------------
-- normalization, subsets, splits

local TestDataNormalize = {}

function TestDataNormalize.test_global_mean_std()
  local x = mo.tensor{{1, 2}, {3, 4}}
  local stats = data.normalize(x)
  lu.assertAlmostEquals(stats.mean, 2.5, 1e-12)
  lu.assertAlmostEquals(stats.std, math.sqrt(1.25), 1e-12)
  local s = math.sqrt(1.25)
  lu.assertAlmostEquals(x:get(1, 1), -1.5 / s, 1e-6)
  lu.assertAlmostEquals(x:get(2, 2), 1.5 / s, 1e-6)
  -- apply the same statistics elsewhere
  local y = mo.tensor{2.5, 2.5 + s}
  data.normalize(y, stats)
  lu.assertAlmostEquals(y:get(1), 0, 1e-6)
  lu.assertAlmostEquals(y:get(2), 1, 1e-6)
  -- constant data: divided by 1
  local c = mo.full({3}, 4)
  lu.assertEquals(data.normalize(c).std, 1)
  lu.assertEquals(c:totable(), {0, 0, 0})
end

function TestDataNormalize.test_per_feature()
  local x = mo.tensor{{1, 10, 5}, {3, 30, 5}}
  local stats = data.normalize(x, {per_feature = true})
  lu.assertEquals(stats.mean:totable(), {2, 20, 5})
  lu.assertEquals(stats.std:totable(), {1, 10, 1})  -- the constant column keeps std 1
  lu.assertEquals(x:totable(), {{-1, -1, 0}, {1, 1, 0}})
  local t = mo.tensor{{2, 40, 6}}
  data.normalize(t, stats)
  lu.assertEquals(t:totable(), {{0, 2, 1}})
  expect_error({"mean {3} does not match the columns of {1, 2}"}, data.normalize, mo.zeros(1, 2), stats)
  expect_error({"normalize: x must be a tensor"}, data.normalize, {1, 2})
end

function TestDataNormalize.test_subset_gather_split()
  local ds = numbered(10)
  local sub = data.subset(ds, 3, 4)
  lu.assertEquals(flat(sub.y), {3, 4, 5, 6})
  lu.assertTrue(sub.x:same_storage(ds.x))
  expect_error({"subset: examples 8..11 outside 1..10"}, data.subset, ds, 8, 4)
  local g = data.gather(ds, {10, 1})
  lu.assertEquals(g.x:totable(), {{10, -10}, {1, -1}})
  mo.manual_seed(3)
  local a, b = data.split(ds, 0.3)
  lu.assertEquals(data.size(a), 3)
  lu.assertEquals(data.size(b), 7)
  local ids = {}
  for _, v in ipairs(flat(a.y)) do ids[#ids + 1] = v end
  for _, v in ipairs(flat(b.y)) do ids[#ids + 1] = v end
  table.sort(ids)
  lu.assertEquals(ids, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
  local c = data.split(ds, 4, {shuffle = false})
  lu.assertEquals(flat(c.y), {1, 2, 3, 4})
end

-- ---------------------------------------------------------------------------
-- synthetic sets

function TestDataNormalize.test_errors_name_the_argument_at_the_caller()
  local x = mo.tensor{{1, 2}, {3, 4}}
  local function at_caller(f, ...)
    local args = table.pack(...)
    local ok, msg = pcall(function()
      local r = f(table.unpack(args, 1, args.n))   -- not a tail call: this line is the caller
      return r
    end)
    lu.assertFalse(ok)
    lu.assertStrMatches(msg, "^tests/lua/test_data.lua:%d+: .*")
    return msg
  end
  -- a third argument is a mistake, not something to ignore
  lu.assertStrContains(at_caller(data.normalize, x, nil, {per_feature = true}),
    "normalize: expected at most 2 arguments (x, stats), got 3")
  lu.assertEquals(x:totable(), {{1, 2}, {3, 4}})   -- nothing changed
  lu.assertStrContains(at_caller(data.normalize, "x"), "normalize: x must be a tensor, got string \"x\"")
  lu.assertStrContains(at_caller(data.normalize, x, 3), "normalize: stats must be a table, got 3")
  lu.assertStrContains(at_caller(data.subset, {x = x}, "1", 1),
    "subset: first must be a positive integer, got string \"1\"")
  lu.assertStrContains(at_caller(data.subset, {x = x}, 2, 2), "subset: examples 2..3 outside 1..2")
  lu.assertStrContains(at_caller(data.loader, {x = x}, {batch_size = 1, size = 2}), "loader: unknown option 'size'")
  local loader = data.loader({x = x})
  lu.assertStrContains(at_caller(loader.epoch, loader, 0), "loader:epoch: first must be a positive integer, got 0")
  lu.assertStrContains(at_caller(data.size, {x = mo.zeros(2), y = mo.zeros(3)}), "size: x {2} and y {3} disagree")
  lu.assertStrContains(at_caller(data.moons, {noise = -1}), "moons: noise must be a finite number >= 0, got -1")
  -- errors of the C functions under mo.data are positioned at the caller too
  lu.assertStrContains(at_caller(data.decode_idx, "hello world!"), "decode_idx: wrong magic")
end

local TestDataSynthetic = {}

local function class_counts(y, classes)
  local counts = {}
  for c = 1, classes do counts[c] = 0 end
  for _, v in ipairs(flat(y)) do
    lu.assertTrue(counts[v] ~= nil, "label " .. v)
    counts[v] = counts[v] + 1
  end
  return counts
end

function TestDataSynthetic.test_spirals()
  mo.manual_seed(1)
  local ds = data.spirals{n = 301, classes = 3, noise = 0}
  lu.assertEquals(ds.x:shape(), {301, 2})
  lu.assertEquals(class_counts(ds.y, 3), {101, 100, 100})
  -- without noise every point lies within the unit disc, radii spread over [0, 1]
  local rmax = 0
  for i = 1, 301 do
    local r = math.sqrt(ds.x:get(i, 1) ^ 2 + ds.x:get(i, 2) ^ 2)
    lu.assertTrue(r <= 1 + 1e-6)
    rmax = math.max(rmax, r)
  end
  lu.assertAlmostEquals(rmax, 1, 1e-6)
  mo.manual_seed(1)
  local again = data.spirals{n = 301, classes = 3, noise = 0}
  lu.assertEquals(again.x:totable(), ds.x:totable())
  expect_error({"spirals: classes must be a positive integer, got 0"}, data.spirals, {classes = 0})
  expect_error({"spirals: unknown option 'noisy'"}, data.spirals, {noisy = 1})
end

function TestDataSynthetic.test_moons()
  mo.manual_seed(2)
  local ds = data.moons{n = 100, noise = 0}
  lu.assertEquals(ds.x:shape(), {100, 2})
  lu.assertEquals(class_counts(ds.y, 2), {50, 50})
  for i = 1, 100 do
    local a, b = ds.x:get(i, 1), ds.x:get(i, 2)
    if ds.y:get(i) == 1 then
      lu.assertAlmostEquals(a * a + b * b, 1, 1e-5)              -- the upper unit half circle
      lu.assertTrue(b >= -1e-6)
    else
      lu.assertAlmostEquals((a - 1) ^ 2 + (b - 0.5) ^ 2, 1, 1e-5)  -- the lower one, shifted
      lu.assertTrue(b <= 0.5 + 1e-6)
    end
  end
  mo.manual_seed(2)
  lu.assertNotEquals(data.moons{n = 100, noise = 0.1}.x:totable(), ds.x:totable())
end

function TestDataSynthetic.test_regression()
  mo.manual_seed(3)
  local ds = data.regression{n = 50, d = 3, noise = 0, bias = 0.5}
  lu.assertEquals(ds.x:shape(), {50, 3})
  lu.assertEquals(ds.y:shape(), {50, 1})
  lu.assertEquals(ds.w:shape(), {3})
  for i = 1, 50 do
    local s = 0.5
    for j = 1, 3 do s = s + ds.x:get(i, j) * ds.w:get(j) end
    lu.assertAlmostEquals(ds.y:get(i, 1), s, 1e-5)
  end
  local noisy = data.regression{n = 2000, d = 2, noise = 0.5}
  local resid = 0
  for i = 1, 2000 do
    local s = noisy.x:get(i, 1) * noisy.w:get(1) + noisy.x:get(i, 2) * noisy.w:get(2)
    resid = resid + (noisy.y:get(i, 1) - s) ^ 2
  end
  lu.assertAlmostEquals(math.sqrt(resid / 2000), 0.5, 0.05)
end

return {
  TestDataIdx = TestDataIdx,
  TestDataFashion = TestDataFashion,
  TestDataBatches = TestDataBatches,
  TestDataNormalize = TestDataNormalize,
  TestDataSynthetic = TestDataSynthetic,
}
