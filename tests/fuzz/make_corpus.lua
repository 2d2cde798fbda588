-- tests/fuzz/make_corpus.lua - writes the seed corpus of the fuzz targets:
--   tests/fuzz/corpus/ckpt/*  small safetensors files (moonopt-written: every shape kind,
--                             metadata with escapes, a checkpoint of a model with optimizer
--                             state; and the Python-written fixture, F64/F16/BF16)
--   tests/fuzz/corpus/idx/*   small IDX files of every element type, raw and gzip
-- Run from the repository root (the output is committed; rerunning reproduces it):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 tests/fuzz/make_corpus.lua
local mo = require "moonopt"
local core = require "moonopt.core"
local ck = require "moonopt.checkpoint"

local dir = "tests/fuzz/corpus/"

local function put(name, bytes)
  local f = assert(io.open(dir .. name, "wb"))
  f:write(bytes)
  f:close()
end

local function encode(list, meta)
  local names, ts = {}, {}
  for i, nt in ipairs(list) do names[i], ts[i] = nt[1], nt[2] end
  return core.ckpt_encode(names, ts, meta)
end

mo.manual_seed(1)
put("ckpt/empty.safetensors", encode({}))
put("ckpt/one.safetensors", encode({{"w", mo.tensor{1, -2, 0.5}}}))
put("ckpt/shapes.safetensors", encode({{"scalar", mo.tensor(3.5)}, {"empty", mo.zeros(0, 3)},
  {"m", mo.randn(2, 3)}, {"t", mo.randn(3, 2):t()}, {"c", mo.randn(2, 1, 2)}}))
put("ckpt/meta.safetensors", encode({{"a.b", mo.tensor{0 / 0, 1 / 0, -0.0}}},
  {note = "quote \" backslash \\ newline \n tab \t é 😀", json = '{"x":[1,2.5,NaN]}'}))

local model = mo.nn.Sequential(mo.nn.Linear(2, 3), mo.nn.ReLU(), mo.nn.Linear(3, 1))
local opt = mo.optim.Adam(model:parameters(), {lr = 0.01})
for _, p in ipairs(model:parameters()) do p.grad = mo.randn(table.unpack(p:shape())) end
opt:step()
local tmp = os.tmpname()
ck.save(tmp, {model = model, optimizer = opt, extra = {epoch = 1, lr = 1e-3, tags = {"a", "b"}}})
local f = assert(io.open(tmp, "rb"))
put("ckpt/model.safetensors", f:read("a"))
f:close()
os.remove(tmp)
f = assert(io.open("tests/golden/ckpt_fixture.safetensors", "rb"))
put("ckpt/python.safetensors", f:read("a"))
f:close()

local d = mo.data
local small = mo.tensor{{0, 1, 2}, {253, 254, 255}}
for _, spec in ipairs{{"u8", "uint8"}, {"i8", "int8"}, {"i16", "int16"}, {"i32", "int32"}, {"f32", "float32"},
                      {"f64", "float64"}} do
  d.write_idx(dir .. "idx/" .. spec[1] .. ".idx", spec[1] == "i8" and mo.tensor{{0, -1, 2}, {-128, 127, 5}} or small,
              {type = spec[2]})
end
d.write_idx(dir .. "idx/u8-1d.idx.gz", mo.tensor{1, 2, 3, 4, 5, 6, 7, 8, 9}, {type = "uint8"})
d.write_idx(dir .. "idx/f32-3d.idx.gz", mo.randn(2, 2, 2), {type = "float32"})
d.write_idx(dir .. "idx/scalar.idx", mo.tensor(7), {type = "uint8"})
print("wrote the corpus in " .. dir)
