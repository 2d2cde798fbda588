-- The binding's limits and integer conversions (issue 10, "Tampered state" and "Size limits
-- and API contracts"): every Lua number that becomes a C integer is checked first (NaN, +-inf,
-- 2^63, -2^64 and fractions are named errors, never a cast), and a checkpoint cannot smuggle
-- in a tensor the binding promises never exists (a size above 2^40, even with zero elements).
local lu = require "luaunit"
local helpers = require "helpers"
local fails = helpers.fails
local mo = require "moonopt"
local core = require "moonopt.core"

local TestBindingLimits = {}

-- Each call takes the bad value where the binding turns a number into an integer; the error
-- must name the function (as the message spells it).
function TestBindingLimits.test_no_number_reaches_an_integer_cast_unchecked()
  local t = mo.arange(6):view(2, 3)
  local calls = {
    {"arange", function(v) return mo.arange(v) end},
    {"randperm", function(v) return mo.randperm(v) end},
    {"manual_seed", function(v) return mo.manual_seed(v) end},
    {"zeros", function(v) return mo.zeros(2, v) end},
    {"zeros", function(v) return mo.zeros{v} end},
    {"tensor", function(v) return mo.tensor({1, 2}, {v}) end},
    {"get", function(v) return t:get(v, 1) end},
    {"set", function(v) return t:set(1, v, 0) end},
    {"narrow", function(v) return t:narrow(1, v, 1) end},
    {"narrow", function(v) return t:narrow(1, 1, v) end},
    {"select", function(v) return t:select(1, v) end},
    {"size", function(v) return t:size(v) end},
    {"view", function(v) return t:view(v) end},
    {"sum", function(v) return t:sum(v) end},
    {"argmax", function(v) return t:argmax(v) end},
    {"gather_rows", function(v) return core.gather_rows(mo.zeros(1, 3), t, {1}, v, 1) end},
    {"gather_rows", function(v) return core.gather_rows(mo.zeros(1, 3), t, {v}, 1, 1) end},
    {"gather_rows", function(v) return core.gather_rows(mo.zeros(1, 3), t, {1}, 1, v) end},
    {"isatty", function(v) return core.isatty(v) end},
    {"blas_set_threads", function(v) return core.blas_set_threads(v) end},
    {"crc32", function(v) return core.crc32("abc", v) end},
    {"nn_act_forward", function(v) return core.nn_act_forward(t, v, 0, nil) end},
    {"nn_softmax_forward", function(v) return core.nn_softmax_forward(t, v, nil) end},
    {"nn_layernorm_forward", function(v) return core.nn_layernorm_forward(t, v, nil, nil, 1e-5) end},
    {"CrossEntropyLoss:forward",
     function(v) return core.nn_cross_entropy(t, {1, v}, 0, core.NN_MEAN, false, nil) end},
  }
  local bad = {0 / 0, -(0 / 0), 1 / 0, -1 / 0, 2.0 ^ 63, -(2.0 ^ 64), 1e300, 1.5, -0.5}
  for _, c in ipairs(calls) do
    for _, v in ipairs(bad) do
      local ok, msg = pcall(c[2], v)
      lu.assertFalse(ok, string.format("%s accepted %s", c[1], tostring(v)))
      lu.assertStrContains(tostring(msg), c[1])
    end
  end
  lu.assertEquals(t:sum():item(), 21)   -- set refused every bad index: nothing written
end

function TestBindingLimits.test_layernorm_refuses_a_normalized_size_of_zero()
  fails("LayerNorm:forward: input {2, 0} does not end in the normalized size 0",
    core.nn_layernorm_forward, mo.zeros(2, 0), 0, nil, nil, 1e-5)
end

-- A safetensors file with the given header (no data).
local function safetensors(header)
  return string.pack("<I8", #header) .. header
end

function TestBindingLimits.test_checkpoint_sizes_above_the_limit_are_refused()
  local over = {"[0,1099511627777]", "[1099511627777,0]", "[0,1,1099511627777,3]"}
  for _, shape in ipairs(over) do
    local bytes = safetensors('{"w":{"dtype":"F32","shape":' .. shape .. ',"data_offsets":[0,0]}}')
    fails("mo.load: tensor 'w' has shape {", core.ckpt_decode, bytes, "mo.load")
    fails("above the limit of 2^40 per size", core.ckpt_decode, bytes, "mo.load")
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
    fails("mo.load: " .. path .. ": tensor 'w' has shape", core.ckpt_read, path, "mo.load")
    os.remove(path)
  end
  -- the limit itself is fine
  local ok = core.ckpt_decode(safetensors(
    '{"w":{"dtype":"F32","shape":[0,1099511627776],"data_offsets":[0,0]}}'))
  lu.assertEquals(ok.w:shape(), {0, 1099511627776})
end

return {TestBindingLimits = TestBindingLimits}
