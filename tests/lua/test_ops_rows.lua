-- tests/lua/test_ops_rows.lua - the loops behind tensor OP tensor (core/ops.c, ops_t.h):
-- contiguous loops in blocks of 2 x 32 bytes, a run of 32 bytes and a tail (every length
-- from 1 to 40 crosses each boundary), the 2-D row path of a broadcast ({R, C} + {C}, the
-- number on either side, in place, through a transposed input) and the AVX2 instance
-- where the CPU has it. + - * / are exact IEEE operations, so every element must equal the
-- operation done in double and rounded once to the dtype (for float32 the double result of
-- two floats rounds correctly: 53 >= 2 * 24 + 2 bits); results must not depend on the
-- thread count.
local lu = require "luaunit"
local mo = require "moonopt"

local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end
local ROUND = {float32 = f32, float64 = function(x) return x end}
local OPS = {
  {"+", function(x, y) return x + y end, function(a, b) return a + b end},
  {"-", function(x, y) return x - y end, function(a, b) return a - b end},
  {"*", function(x, y) return x * y end, function(a, b) return a * b end},
  {"/", function(x, y) return x / y end, function(a, b) return a / b end},
}

local function flat(t)
  local v = t:contiguous():view(t:numel()):totable()
  return type(v) == "table" and v or {v}
end

-- values of both signs and many magnitudes, none zero (the divisions)
local function values(n, seed)
  local v = {}
  for i = 1, n do
    local k = (i * 37 + seed * 101) % 97
    v[i] = ((k % 2 == 0) and 1 or -1) * (k + 1) * 2 ^ ((k % 13) - 6) / 3
  end
  return v
end

-- got (flat) == expect(i, j) for every element of an {r, c} result, bit for bit
local function check(got, r, c, expect, what)
  for i = 1, r do
    for j = 1, c do
      local g, w = got[(i - 1) * c + j], expect(i, j)
      if g ~= w then
        lu.fail(string.format("%s [%d, %d]: got %.17g, want %.17g", what, i, j, g, w))
      end
    end
  end
end

local TestOpsRows = {}

function TestOpsRows.test_row_broadcast_every_length()
  for _, dt in ipairs{"float32", "float64"} do
    local rnd = ROUND[dt]
    for _, r in ipairs{1, 3} do
      for c = 1, 40 do
        local av, bv = values(r * c, c), values(c, c + 7)
        local a = mo.tensor(av, {r, c}, {dtype = dt})
        local b = mo.tensor(bv, {c}, {dtype = dt})
        for _, op in ipairs(OPS) do
          local name, f, t = op[1], op[2], op[3]
          local what = string.format("%s {%d, %d} %s {%d}", dt, r, c, name, c)
          local A = function(i, j) return rnd(av[(i - 1) * c + j]) end
          local B = function(j) return rnd(bv[j]) end
          check(flat(t(a, b)), r, c, function(i, j) return rnd(f(A(i, j), B(j))) end, what)
          check(flat(t(b, a)), r, c, function(i, j) return rnd(f(B(j), A(i, j))) end,
            what .. " (reversed)")
          -- a flat (one-row) op of the same length: every contiguous loop length
          local a1 = a:view(r * c)
          local same = mo.tensor(values(r * c, c + 3), {r * c}, {dtype = dt})
          local sv = flat(same)
          check(flat(t(a1, same)), 1, r * c, function(_, j) return rnd(f(rnd(av[j]), sv[j])) end,
            what .. " (flat)")
        end
        -- in place: c:add_(b) is a + b
        local cc = a:clone()
        cc:add_(b)
        check(flat(cc), r, c, function(i, j) return rnd(rnd(av[(i - 1) * c + j]) + rnd(bv[j])) end,
          dt .. " add_ in place")
      end
    end
  end
end

function TestOpsRows.test_transposed_and_column_broadcast()
  for _, dt in ipairs{"float32", "float64"} do
    local rnd = ROUND[dt]
    local av = values(9 * 17, 2)
    local a = mo.tensor(av, {17, 9}, {dtype = dt}):t() -- {9, 17}, strided rows
    local col = mo.tensor(values(9, 5), {9, 1}, {dtype = dt})
    local cv = flat(col)
    local got = flat(a * col)
    check(got, 9, 17, function(i, j) return rnd(rnd(av[(j - 1) * 9 + i]) * cv[i]) end,
      dt .. " a:t() * {9, 1}")
  end
end

function TestOpsRows.test_thread_count_does_not_change_bits()
  local before = mo.get_num_threads()
  for _, dt in ipairs{"float32", "float64"} do
    mo.manual_seed(3)
    local a = mo.randn({300, 1000}, {dtype = dt})
    local b = mo.randn({1000}, {dtype = dt})
    local results = {}
    for k, n in ipairs{1, 2, 3} do
      mo.set_num_threads(n)
      local c = a:clone()
      c:div_(b)
      results[k] = {flat(a + b), flat(b - a), flat(c)}
    end
    mo.set_num_threads(before)
    for k = 2, 3 do
      for m = 1, 3 do
        local x, y = results[1][m], results[k][m]
        for i = 1, #x do
          if x[i] ~= y[i] then lu.fail(string.format("%s result %d differs at %d", dt, m, i)) end
        end
      end
    end
  end
end

return {TestOpsRows = TestOpsRows}
