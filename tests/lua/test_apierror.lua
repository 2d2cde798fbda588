-- tests/lua/test_apierror.lua - the Lua library's one error mechanism (moonopt.apierror):
-- where messages are positioned, how values are quoted, the integer check.
local lu = require "luaunit"
local A = require "moonopt.apierror"
local core = require "moonopt.core"

local TestApiError = {}

function TestApiError.test_show_quotes_every_kind_of_value()
  lu.assertEquals(A.show(3), "3")
  lu.assertEquals(A.show(1.5), "1.5")
  lu.assertEquals(A.show(3.0), "3")
  lu.assertEquals(A.show(0 / 0), "nan")
  lu.assertEquals(A.show(math.huge), "inf")
  lu.assertEquals(A.show(-math.huge), "-inf")
  lu.assertEquals(A.show("3"), 'string "3"')
  lu.assertEquals(A.show("a\nb"), 'string "a\\\nb"')
  lu.assertEquals(A.show(nil), "nil")
  lu.assertEquals(A.show(false), "false")
  lu.assertEquals(A.show({}), "a table")
  lu.assertEquals(A.show(print), "a function")
  lu.assertEquals(A.show(core.zeros(1)), "a moonopt.Tensor")
  lu.assertEquals(A.show(io.stdout), "a FILE*")
  lu.assertEquals(A.show(coroutine.create(print)), "a thread")
end

function TestApiError.test_one_integer_check()
  lu.assertEquals(A.to_int(3), 3)
  lu.assertEquals(math.type(A.to_int(3.0)), "integer")
  lu.assertNil(A.to_int(2.5))
  lu.assertNil(A.to_int("3"))
  lu.assertNil(A.to_int(0 / 0))
  lu.assertNil(A.to_int(math.huge))
  lu.assertNil(A.to_int(2.0 ^ 60))
  lu.assertEquals(A.int_range(0), "a non-negative integer")
  lu.assertEquals(A.int_range(1), "a positive integer")
  lu.assertEquals(A.int_range(2), "an integer >= 2")
  lu.assertEquals(A.int_range(nil), "an integer")
  local f = A.api(function(v, lo) return A.check_int("f", "n", v, lo) end)
  lu.assertEquals(f(4, 1), 4)
  lu.assertErrorMsgContains('f: n must be a non-negative integer, got string "3"', f, "3", 0)
  lu.assertErrorMsgContains("f: n must be a positive integer, got 0", f, 0, 1)
  lu.assertErrorMsgContains("f: n must be an integer, got 1.5", f, 1.5)
end

-- Calls f(...) from this file's line and returns the error message.
local function error_at_caller(f, ...)
  local args = table.pack(...)
  local ok, msg = pcall(function()
    local r = f(table.unpack(args, 1, args.n))   -- not a tail call: this line is the caller
    return r
  end)
  lu.assertFalse(ok)
  return msg
end

function TestApiError.test_messages_point_at_the_caller()
  local inner = function(x)
    if x == "fail" then A.fail("g: bad %s", A.show(x)) end
    if x == "c" then return core.zeros(-1) end               -- a C error, no position
    if x == "lib" then error("g: raised with a library position") end
    if x == "user" then return x() end
    return 1, 2, nil, 4
  end
  local g = A.api(inner)
  local pos = "^tests/lua/test_apierror.lua:%d+: "
  lu.assertStrMatches(error_at_caller(g, "fail"), pos .. 'g: bad string "fail"$')
  lu.assertStrMatches(error_at_caller(g, "c"), pos .. "zeros: .*")
  -- a library file is one under lua/moonopt/: simulate with a chunk named like one
  local lib = assert(load("return function() error('g: inside') end", "@lua/moonopt/zz_fake.lua"))()
  local h = A.api(lib)
  lu.assertStrMatches(error_at_caller(h), pos .. "g: inside$")
  -- errors of user code keep their own position (here: this file, the line of x())
  lu.assertStrMatches(error_at_caller(g, "user"), pos .. "attempt to call .*")
  -- non-string errors pass through unchanged
  local t = {}
  local ok, e = pcall(A.api(function() error(t) end))
  lu.assertFalse(ok)
  lu.assertIs(e, t)
  -- every result passes through, nils included
  local r = table.pack(g(1))
  lu.assertEquals(r.n, 4)
  lu.assertEquals(r[4], 4)
  -- unwrap gives the raw function (for another module's public function to call)
  lu.assertIs(A.unwrap(g), inner)
  lu.assertIs(A.unwrap(print), print)
end

function TestApiError.test_keys_and_shapes()
  lu.assertEquals(A.show_key("lr"), "'lr'")
  lu.assertEquals(A.show_key(3), "3")
  lu.assertEquals(A.show_key(true), "true")
  lu.assertEquals(A.shape_str(core.zeros(2, 3)), "{2, 3}")
  lu.assertEquals(A.shape_str(core.tensor(1.5)), "{}")
  lu.assertEquals(A.shape_str({4}), "{4}")
  lu.assertTrue(A.same_shape(core.zeros(2, 3), {2, 3}))
  lu.assertTrue(A.same_shape({2, 3}, core.zeros(2, 3)))
  lu.assertFalse(A.same_shape(core.zeros(2, 3), core.zeros(3, 2)))
  lu.assertFalse(A.same_shape(core.zeros(6), core.zeros(6, 1)))
  lu.assertFalse(A.same_shape({6, 1}, {6}))
  lu.assertTrue(A.same_shape({}, core.tensor(2)))
end

-- Calls f(...) from one line of this file; returns the message and that line's number.
local function error_and_line(f, ...)
  local args, line = table.pack(...), nil
  local ok, msg = pcall(function()
    line = debug.getinfo(1, "l").currentline + 1
    local r = f(table.unpack(args, 1, args.n))   -- not a tail call: this line is the caller
    return r
  end)
  lu.assertFalse(ok, "expected an error")
  return msg, line
end

-- Each module's representative error: the message, at the line of this file that made the
-- call (not a line of lua/moonopt/), with the value quoted by show().
function TestApiError.test_every_module_reports_the_callers_line()
  local mo = require "moonopt"
  local nn = mo.nn
  local p = mo.zeros(2)
  p.grad = mo.zeros(2)
  local missing = os.tmpname()
  os.remove(missing)
  local seq = nn.Sequential(nn.Linear(2, 2))
  local cases = {
    {"Linear: in_features must be a positive integer, got 0", nn.Linear, 0, 3},
    {'LayerNorm: normalized_shape must be a positive integer, got string "4"', nn.LayerNorm, "4"},
    {"Sequential:add: expected a module, got 3", seq.add, seq, 3},
    {"Sequential: argument #1 must be a module, got a table", nn.Sequential, {{}}},
    {"Sequential:add_module: child 'x' must be a module, got nil", seq.add_module, seq, "x", nil},
    {"Sequential:load_state_dict: shape mismatch for '0.weight'", seq.load_state_dict, seq,
     {["0.weight"] = mo.zeros(3), ["0.bias"] = mo.zeros(2)}},
    {"AdamW: Invalid learning rate: -1", mo.optim.AdamW, {p}, {lr = -1}},
    {"SGD: unknown option 'moment'", mo.optim.SGD, {p}, {lr = 0.1, moment = 0.9}},
    {"Adam: option 'lr' must be a number, got string \"0.1\"", mo.optim.Adam, {p}, {lr = "0.1"}},
    {"mo.save: path must be a string, got 3", mo.save, 3, {}},
    {'mo.save: path must be a file name, got ""', mo.save, "", {}},
    {"mo.save: model must be a table (a moonopt model), got 3", mo.save, missing, {model = 3}},
    {"mo.load: " .. missing .. ": cannot open", mo.load, missing, {}},
    {"mo.save_tensors: 'w' must be a tensor, got true", mo.save_tensors, missing, {w = true}},
  }
  -- Sequential:add's message, with the error raised in add_module, is still at the caller
  local bad_seq = nn.Sequential()
  cases[#cases + 1] = {"cannot add a Sequential to itself", bad_seq.add, bad_seq, bad_seq}
  -- an optimizer state refused by opt:load_state_dict inside mo.load (two wrapped calls)
  local saved = os.tmpname()
  mo.save(saved, {optimizer = mo.optim.SGD({p}, {lr = 0.1})})
  cases[#cases + 1] = {"mo.load: " .. saved .. ": the file holds SGD state, the optimizer is Adam",
                       mo.load, saved, {optimizer = mo.optim.Adam({p})}}
  for _, c in ipairs(cases) do
    local msg, line = error_and_line(table.unpack(c, 2))   -- asserts that it raised
    local at = "tests/lua/test_apierror.lua:" .. line .. ": "
    lu.assertEquals(msg:sub(1, #at), at, msg)
    lu.assertStrContains(msg, c[1])
    lu.assertNil(msg:find("lua/moonopt/", 1, true), msg)
  end
  os.remove(saved)
end

function TestApiError.test_options_and_argument_count()
  local f = A.api(function(opts, ...)
    A.check_nargs("f", 1, "opts", opts, ...)
    return A.check_options("f", opts, {a = true})
  end)
  lu.assertEquals(f(nil), {})
  lu.assertEquals(f({a = 1}), {a = 1})
  lu.assertErrorMsgContains("f: unknown option 'b'", f, {b = 1})
  lu.assertErrorMsgContains("f: unknown option 1", f, {5})
  lu.assertErrorMsgContains("f: options must be a table, got 3", f, 3)
  lu.assertErrorMsgContains("f: expected at most 1 arguments (opts), got 2", f, {}, true)
  lu.assertErrorMsgContains("f: expected at most 1 arguments (opts), got 2", f, {}, nil)
end

return {TestApiError = TestApiError}
