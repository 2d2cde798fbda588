--- moonopt.nn.spatial: argument and input checks shared by the NCHW layers (Conv2d, the
-- pooling layers, BatchNorm, Dropout2d). Internal.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"

local M = {}

local fail, show, to_int = apierror.fail, apierror.show, apierror.to_int

--- pair(fname, what, v, lo) -> h, w: a number (both sizes) or a list {h, w} of integers >= lo.
function M.pair(fname, what, v, lo)
  if type(v) == "table" then
    local h, w = to_int(v[1]), to_int(v[2])
    if #v ~= 2 or not h or not w or h < lo or w < lo then
      fail("%s: %s must be an integer >= %d or a list {h, w} of them, got %s", fname, what, lo,
           #v == 2 and ("{" .. show(v[1]) .. ", " .. show(v[2]) .. "}") or ("a list of " .. #v .. " values"))
    end
    return h, w
  end
  local n = to_int(v)
  if not n or n < lo then
    fail("%s: %s must be an integer >= %d or a list {h, w} of them, got %s", fname, what, lo, show(v))
  end
  return n, n
end

--- The "(h, w)" text of a pair, as PyTorch prints it.
function M.pair_str(h, w)
  return "(" .. h .. ", " .. w .. ")"
end

--- check_input(m, x, want_dims, channels): errors (at the caller of forward) unless x is a
-- tensor of want_dims dimensions (a number or a set {[2] = true, [3] = true}) whose
-- dimension 2 is `channels` (when given). Messages name the module and both shapes.
function M.check_input(m, x, want, channels, level)
  local name = m._class_name
  local expect = m._input_desc
  if not core.is_tensor(x) then
    error(string.format("%s:forward: input must be a tensor %s, got %s", name, expect, show(x)), level or 3)
  end
  local d = x:dim()
  local ok = type(want) == "table" and want[d] or d == want
  if not ok or (channels and x:size(2) ~= channels) then
    error(string.format("%s:forward: expected input %s, got %s", name, expect, apierror.shape_str(x)),
          level or 3)
  end
end

--- out_size(n, k, s, p, d) -> the output size along one dimension (PyTorch's floor formula).
function M.out_size(n, k, s, p, d)
  return (n + 2 * p - d * (k - 1) - 1) // s + 1
end

--- check_out(m, x, oh, ow, why): errors when an output size is below 1 (a kernel larger than
-- its padded input), naming the module, the input shape and the sizes.
function M.check_out(m, x, oh, ow, why)
  if oh < 1 or ow < 1 then
    error(string.format("%s:forward: input %s is too small for %s: the output would be %dx%d", m._class_name,
                        apierror.shape_str(x), why, oh, ow), 3)
  end
end

return M
