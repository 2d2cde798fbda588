-- bench/optim_overhead.lua - what opt:step() costs per parameter tensor beyond the kernel
-- (issue 3: at most ~1 us per tensor). The same 100,000 floats go through AdamW twice:
-- as 100 tensors of 1,000 through opt:step(), and as one tensor of 100,000 through
-- opt:step() (one kernel call; the fixed per-step cost is the same). The difference over
-- 100 is the per-tensor overhead of the Lua layer and the binding. Prints medians.
-- usage: lua5.4 bench/optim_overhead.lua [reps]
local mo = require "moonopt"

local reps = tonumber(arg[1]) or 41
local STEPS = 20

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function setup(count, size)
  local params = {}
  for i = 1, count do
    local p = mo.randn(size)
    p.grad = mo.randn(size):mul_(0.01)
    params[i] = p
  end
  local opt = mo.optim.AdamW(params, {lr = 1e-3})
  opt:step()  -- state allocated outside the timing
  return opt
end

-- seconds per step, the median over reps runs of STEPS steps
local function time_steps(opt)
  local ts = {}
  for r = 1, reps do
    local t0 = mo.clock()
    for _ = 1, STEPS do opt:step() end
    ts[r] = (mo.clock() - t0) / STEPS
  end
  return median(ts)
end

mo.manual_seed(1)
local many = setup(100, 1000)
local one = setup(1, 100000)
-- alternate the two so machine noise hits both alike
local tm, to = {}, {}
for r = 1, 5 do
  tm[r] = time_steps(many)
  to[r] = time_steps(one)
end
local t_many, t_one = median(tm), median(to)
local per_tensor = (t_many - t_one) / 100
print(string.format("adamw_100x1000_step %.9f", t_many))
print(string.format("adamw_1x100000_step %.9f", t_one))
print(string.format("overhead_per_tensor_us %.3f %s", per_tensor * 1e6,
                    per_tensor <= 1e-6 and "(target <= 1 us: met)" or "(target <= 1 us: MISSED)"))
