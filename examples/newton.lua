--- examples/newton.lua: Newton-CG with Hessian-vector products from autograd against
-- L-BFGS, on the n-dimensional Rosenbrock function (n = 100 by default).
--
--   lua5.4 examples/newton.lua [n]
--
-- Newton-CG solves H p = -g approximately by conjugate gradients; CG needs only products
-- H v, which mo.autograd.hvp computes by double backward, so the Hessian (n x n) is never
-- formed. The objective is written once, as tensor ops; both methods get their
-- derivatives from autograd. Prints both iteration counts: Newton-CG needs fewer.
-- As a chunk: loadfile("examples/newton.lua")(n, "quiet") returns the two counts.
local mo = require "moonopt"

local n = math.tointeger(tonumber((...)) or 100) or 100
local quiet = select(2, ...) == "quiet"
local D = {dtype = "float64"}
local TOL = 1e-6 -- stop when the gradient's largest component is below this

local function rosenbrock(x)
  local head, tail = x[{{1, -2}}], x[{{2, -1}}]
  return (100 * (tail - head * head) ^ 2 + (1 - head) ^ 2):sum()
end

-- the classic start: -1.2, 1, -1.2, 1, ...
local function start()
  local x = mo.zeros(n, D)
  for i = 1, n do x[i] = i % 2 == 1 and -1.2 or 1 end
  return x
end

local value_and_grad = mo.value_and_grad(rosenbrock)

local function dot(a, b) return (a * b):sum():item() end

-- Steihaug-free truncated CG on H p = -g: stops at a relative residual of
-- min(0.5, sqrt(|g|)) |g| (superlinear convergence), or at negative curvature.
local function cg(x, g)
  local gnorm = math.sqrt(dot(g, g))
  local tol = math.min(0.5, math.sqrt(gnorm)) * gnorm
  local p = mo.zeros_like(g)
  local r = -g
  local d = r:clone()
  local rr = dot(r, r)
  for k = 1, 2 * n do
    local _, hd = mo.autograd.hvp(rosenbrock, x, d)
    local curv = dot(d, hd)
    if curv <= 0 then
      -- negative curvature: stop; on the first direction take the gradient step, scaled
      -- by the curvature's size (as scipy's Newton-CG)
      if k == 1 then return d * (rr / math.max(-curv, 1e-30)) end
      return p
    end
    local alpha = rr / curv
    p = p + d * alpha
    r = r - hd * alpha
    local rr_new = dot(r, r)
    if math.sqrt(rr_new) <= tol then return p end
    d = r + d * (rr_new / rr)
    rr = rr_new
  end
  return p
end

local function newton_cg()
  local x = start()
  local f, g = value_and_grad(x)
  local iters = 0
  while g:abs():max():item() > TOL and iters < 1000 do
    iters = iters + 1
    local p = cg(x, g)
    -- backtracking (Armijo) line search along p
    local t, slope = 1, dot(g, p)
    local fx = f:item()
    local x_new, f_new
    repeat
      x_new = x + p * t
      f_new = rosenbrock(x_new):item()
      t = t / 2
    until f_new <= fx + 1e-4 * 2 * t * slope or t < 1e-10
    x = x_new
    f, g = value_and_grad(x)
  end
  return iters, f:item()
end

local function lbfgs()
  local x = start():requires_grad_()
  local opt = mo.optim.LBFGS({x}, {lr = 1, max_iter = 1, history_size = 10,
                                   line_search_fn = "strong_wolfe", tolerance_grad = TOL,
                                   tolerance_change = 0})
  local iters, f = 0, nil
  local function closure()
    opt:zero_grad()
    local loss = rosenbrock(x)
    loss:backward()
    return loss:item()
  end
  while iters < 10000 do
    f = closure()
    if x.grad:abs():max():item() <= TOL then break end
    opt:step(closure)
    iters = iters + 1
  end
  return iters, f
end

local t0 = mo.clock()
local newton_iters, newton_f = newton_cg()
local t1 = mo.clock()
local lbfgs_iters, lbfgs_f = lbfgs()
local t2 = mo.clock()
if not quiet then
  print(string.format("Rosenbrock, n = %d, stop at max |grad| <= %g", n, TOL))
  print(string.format("  Newton-CG (autograd hvp): %4d iterations, f = %.3e, %.2f s", newton_iters,
    newton_f, t1 - t0))
  print(string.format("  L-BFGS (mo.optim.LBFGS):  %4d iterations, f = %.3e, %.2f s", lbfgs_iters,
    lbfgs_f, t2 - t1))
end
return newton_iters, lbfgs_iters
