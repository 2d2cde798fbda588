-- examples/host/minimize.lua - run by examples/host/host.c (make embed-demo).
--
-- The host owns the parameters (x, y) of Rosenbrock's function in its own float array and
-- passes them here as a tensor on that memory (no copy): every step below writes straight
-- into the host's array. The host also registers report(step, loss), a C function this
-- script calls to report progress. The script minimizes
--
--   f(x, y) = (1 - x)^2 + 100 (y - x^2)^2          (minimum 0 at x = y = 1)
--
-- with Adam and a warmup + cosine learning-rate schedule; the gradient is computed here,
-- in Lua, from the shared tensor.
--
-- Arguments (from the host): the {2} tensor on the host's memory, and the number of steps.
-- luacheck: read globals report
local params, steps = ...
local mo = require "moonopt"

if not mo.is_tensor(params) or params:numel() ~= 2 then
  error("minimize.lua: expects the host's {x, y} tensor as its first argument", 0)
end
steps = steps or 3000
local report_progress = report or function(step, loss)   -- when run without the host
  print(string.format("step %5d  loss %.6g", step, loss))
end

-- The gradient lives in a Lua-owned tensor; the parameters stay in the host's memory.
params.grad = mo.zeros(2)
local grad = params.grad

local opt = mo.optim.Adam({params}, {lr = 0.1})
local sched = mo.sched.WarmupCosine(opt, {warmup = 100, total = steps})

local function rosenbrock(x, y)
  local a, b = 1 - x, y - x * x
  -- f and its gradient (df/dx, df/dy)
  return a * a + 100 * b * b, -2 * a - 400 * x * b, 200 * b
end

for step = 1, steps do
  local loss, gx, gy = rosenbrock(params:get(1), params:get(2))
  grad:set(1, gx)
  grad:set(2, gy)
  opt:step()
  sched:step()
  if step == 1 or step % 500 == 0 or step == steps then report_progress(step, loss) end
end

return rosenbrock(params:get(1), params:get(2))
