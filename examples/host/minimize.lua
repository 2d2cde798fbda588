-- examples/host/minimize.lua - run by examples/host/host.c (make embed-demo).
--
-- The host owns the parameters (x, y) of Rosenbrock's function in its own float array and
-- passes them here as a tensor on that memory (no copy): every step below writes straight
-- into the host's array. The host also registers report(step, loss), a C function this
-- script calls to report progress. The script minimizes
--
--   f(x, y) = (1 - x)^2 + 100 (y - x^2)^2          (minimum 0 at x = y = 1)
--
-- with Adam and a warmup + cosine learning-rate schedule. The objective is written once, in
-- Lua, with tensor ops; its gradient comes from autograd (no hand-derived partials): each
-- step evaluates f on a float64 leaf holding the host's (x, y) (double precision, as the
-- C-only run of kernels_only.c computes it), backward() fills that leaf's .grad, which is
-- rounded into the float32 gradient the optimizer reads.
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

-- The objective, in Lua: xy is a {2} tensor; returns a 0-d tensor.
local function rosenbrock(xy)
  local x, y = xy[1], xy[2]
  return (1 - x) ^ 2 + 100 * (y - x ^ 2) ^ 2
end

for step = 1, steps do
  local xy = params:to("float64"):requires_grad_()
  local f = rosenbrock(xy)
  f:backward()
  grad:copy_(xy.grad)
  opt:step()
  sched:step()
  if step == 1 or step % 500 == 0 or step == steps then report_progress(step, f:item()) end
end

return mo.no_grad(function() return rosenbrock(params:to("float64")):item() end)
