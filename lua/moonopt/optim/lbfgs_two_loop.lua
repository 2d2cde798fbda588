--- moonopt.optim.lbfgs_two_loop: the L-BFGS two-loop recursion, shared by the LBFGS class
-- (lbfgs.lua) and torch7's functional lbfgs (functional.lua); not part of mo.optim.
--
--   d = two_loop(g, s, y, ro, H_diag, al)
--
-- The search direction d = -H g, H the limited-memory inverse Hessian approximation built
-- from the curvature pairs, oldest first: s[i] a step, y[i] the gradient change it caused,
-- ro[i] = 1 / y[i]:dot(s[i]), and the initial scaling H_diag (a number). al is a scratch
-- list (al[1..#s] are overwritten). g is not changed; d is a new tensor.
local core = require "moonopt.core"

local axpy = core.axpy_

return function(g, s, y, ro, H_diag, al)
  local k = #s
  local q = g:neg()
  for i = k, 1, -1 do
    al[i] = s[i]:dot(q):item() * ro[i]
    axpy(q, -al[i], y[i])
  end
  local d = q:mul(H_diag)
  for i = 1, k do
    local be_i = y[i]:dot(d):item() * ro[i]
    axpy(d, al[i] - be_i, s[i])
  end
  return d
end
