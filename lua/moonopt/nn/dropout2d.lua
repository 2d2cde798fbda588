--- moonopt.nn.Dropout2d: channel dropout, active only in training mode.
--
--   nn.Dropout2d([p = 0.5])   (or {p = 0.5}); 0 <= p <= 1; input {N, C, H, W} (or {C, H, W})
--
-- In training mode each whole channel (one {H, W} plane of one example) is zeroed with
-- probability p and the kept ones are scaled by 1/(1-p). The mask {N, C, 1, 1} is drawn
-- from the lua_State's generator (mo.manual_seed makes it reproducible; one uniform per
-- channel, in order, kept when below 1 - p). In evaluation mode forward returns its input
-- and backward its gradient.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"
local spatial = require "moonopt.nn.spatial"

local Dropout2d = base.class("Dropout2d")

function Dropout2d:_init(p, ...)
  apierror.check_nargs("Dropout2d", 1, "p", p, ...)
  if type(p) == "table" then p = apierror.check_options("Dropout2d", p, {p = true}).p end
  if p == nil then p = 0.5 end
  self.p = base.check_number("Dropout2d", "p (the dropout probability)", p, 0, 1)
  self._input_desc = "{N, C, H, W} or {C, H, W}"
end

function Dropout2d:forward(x)
  spatial.check_input(self, x, {[3] = true, [4] = true})
  if not self.training or self.p == 0 then
    self._mask = nil
    self.output = x
    return x
  end
  local shape = x:shape()
  for i = #shape - 1, #shape do shape[i] = 1 end
  local keep = 1 - self.p
  local mask = core.rand(shape, {dtype = x.dtype}):lt(keep)
  if keep > 0 then mask:mul_(1 / keep) end
  self._mask = mask
  local y = x:mul(mask)
  self.output = y
  return y
end

function Dropout2d:backward(_, g)
  local mask = self._mask
  if mask == nil then return g end
  local gi = g:mul(mask)
  self.grad_input = gi
  return gi
end

function Dropout2d:extra_repr()
  return "p=" .. tostring(self.p)
end

return Dropout2d
