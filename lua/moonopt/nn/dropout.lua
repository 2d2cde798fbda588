--- moonopt.nn.Dropout: inverted dropout, active only in training mode.
--
--   nn.Dropout([p = 0.5])   (or {p = 0.5}); 0 <= p <= 1
--
-- In training mode each element is zeroed with probability p and the rest are
-- scaled by 1/(1-p), so evaluation needs no rescaling; the mask comes from the
-- lua_State's generator (mo.manual_seed makes it reproducible). In evaluation
-- mode (model:evaluate()) forward returns its input and backward its gradient.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local base = require "moonopt.nn.module"

local dropout_forward = core.nn_dropout_forward
local dropout_backward = core.nn_dropout_backward

local Dropout = base.class("Dropout")

function Dropout:_init(p)
  if type(p) == "table" then p = apierror.check_options("Dropout", p, {p = true}).p end
  if p == nil then p = 0.5 end
  self.p = base.check_number("Dropout", "p (the dropout probability)", p, 0, 1)
end

function Dropout:forward(x)
  if not self.training or self.p == 0 then
    self._identity = true
    self.output = x
    return x
  end
  self._identity = false
  local y, mask = dropout_forward(x, self.p, self._buf, self._mask)
  self._buf, self._mask = y, mask
  self.output = y
  return y
end

function Dropout:backward(_, g)
  if self._identity ~= false then return g end
  local gi = dropout_backward(g, self._mask, self.grad_input)
  self.grad_input = gi
  return gi
end

function Dropout:extra_repr()
  return "p=" .. tostring(self.p)
end

return Dropout
