--- moonopt.autograd.ops: the gradient of every differentiable function of the binding.
--
-- Each definition names the C function(s) it covers, the differentiable argument
-- positions, what it saves and a backward formula written with ordinary tensor ops, so
-- that under create_graph the formula records too (double backward). Formulas:
-- PyTorch's (tools/autograd/derivatives.yaml) where the semantics agree.
local core = require "moonopt.core"
local E = require "moonopt.autograd.engine"

local defop, save, fail = E.defop, E.save, E.fail
local saved, saved1 = E.saved, E.saved1
local is_tensor = core.is_tensor
local unpack = table.unpack

local M = {}

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

local key_sizes = core._autograd.sizes

--- A shape as a table of sizes, from either form a node holds: a shape key (the string a
-- declared save stores: defop's `shape`, `shapes`; core._autograd.sizes) or a table (what
-- Lua saves store).
local function dims_of(shape)
  if type(shape) == "string" then return key_sizes(shape) end
  return shape
end
M.dims_of = dims_of

--- g summed down to `shape` (a table or a shape key), undoing broadcasting: leading dims
-- are summed away, dims of size 1 in `shape` are summed with keepdim.
local function sum_to(g, shape)
  shape = dims_of(shape)
  local gs = g:shape()
  local nd, td = #gs, #shape
  local same = nd == td
  if same then
    for d = 1, nd do
      if gs[d] ~= shape[d] then same = false break end
    end
    if same then return g end
  end
  for _ = 1, nd - td do g = g:sum(1) end
  for d = 1, td do
    if shape[d] == 1 and gs[nd - td + d] ~= 1 then g = g:sum(d, true) end
  end
  return g
end
M.sum_to = sum_to

-- A 1-based dimension (negative counts from the end) of an n-d tensor.
local function norm_dim(d, n)
  if d < 0 then return d + n + 1 end
  return d
end
M.norm_dim = norm_dim

-- g (the gradient of a reduction over `dim`, or over everything when dim is nil) made
-- to broadcast against the input of shape `shape` (a table or a shape key), then
-- expanded to it.
local function unreduce(g, shape, dim, keepdim)
  shape = dims_of(shape)
  if #shape == 0 then return g end
  if dim ~= nil and not keepdim then g = g:unsqueeze(dim) end
  return g:expand(shape)
end
M.unreduce = unreduce

-- ---------------------------------------------------------------------------------------
-- Elementwise binary ops (either side may be a number; tensors broadcast)
-- ---------------------------------------------------------------------------------------

-- For a binary op's operand: its shape key when its shape differs from the result's
-- (broadcast: the gradient is summed back to it), false when equal, nil for a number.
local bshape = core._autograd.bshape

local function save_shapes(node, args, _, out)
  node.sa, node.sb = bshape(args[1], out), bshape(args[2], out)
end

-- g summed back to an operand's saved shape (see save_shapes)
local function back(g, s)
  if s then return sum_to(g, s) end
  return g
end
M.back = back

-- Whether differentiable input k of the node has an edge (needs a gradient): backward
-- formulas skip the work for inputs that need none.
local function wants(node, k) return node[2 * k - 1] ~= false end
M.wants = wants

defop{name = "add", names = {"add", "__add"}, inputs = {1, 2}, shapes = true,
  backward = function(node, g)
    return wants(node, 1) and back(g, node.sa), wants(node, 2) and back(g, node.sb)
  end}

defop{name = "sub", names = {"sub", "__sub"}, inputs = {1, 2}, shapes = true,
  backward = function(node, g)
    return wants(node, 1) and back(g, node.sa), wants(node, 2) and back(-g, node.sb)
  end}

defop{name = "mul", names = {"mul", "__mul"}, inputs = {1, 2}, saves = {1, 2}, shapes = true,
  backward = function(node, g)
    local a, b = saved(node)
    return wants(node, 1) and back(g * b, node.sa), wants(node, 2) and back(g * a, node.sb)
  end}

-- t:dot(u) = sum(t * u) over same-shaped tensors, a 0-d tensor: d/dt = g u, d/du = g t
defop{name = "dot", inputs = {1, 2}, saves = {1, 2},
  backward = function(node, g)
    local a, b = saved(node)
    return wants(node, 1) and g * b, wants(node, 2) and g * a
  end}

defop{name = "div", names = {"div", "__div"}, inputs = {1, 2}, saves = {1, 2}, shapes = true,
  backward = function(node, g)
    local a, b = saved(node)
    local ga = wants(node, 1) and back(g / b, node.sa)
    local gb = wants(node, 2) and back(-g * a / (b * b), node.sb)
    return ga, gb
  end}

defop{name = "pow", names = {"pow", "__pow"}, inputs = {1, 2},
  save = function(node, args, nargs, out)
    save_shapes(node, args, nargs, out)
    save(node, args[1], args[2], out)
  end,
  backward = function(node, g)
    local a, p, out = saved(node)
    local ga, gp
    if wants(node, 1) then
      if is_tensor(p) then
        ga = back(g * p * a ^ (p - 1), node.sa)
      elseif p == 0 then
        ga = g * 0
      else
        ga = g * (p * a ^ (p - 1))
      end
    end
    if wants(node, 2) then
      -- d(a^p)/dp = a^p log a; 0 where a == 0 and p >= 0 (PyTorch's convention)
      local loga = is_tensor(a) and a:log() or math.log(a)
      local t = g * out * loga
      if is_tensor(a) then t = core.where(a:eq(0):mul(p:ge(0)), 0, t) end
      gp = back(t, node.sb)
    end
    return ga, gp
  end}

local function maxmin_weight(a, b, gt)
  -- 1 where a wins, 0.5 on ties, 0 where b wins (PyTorch splits ties evenly)
  local win, tie
  if is_tensor(a) then
    win = gt and a:gt(b) or a:lt(b)
    tie = a:eq(b)
  else
    win = gt and b:lt(a) or b:gt(a)
    tie = b:eq(a)
  end
  return win + tie * 0.5
end

for _, spec in ipairs{{"maximum", true}, {"minimum", false}} do
  defop{name = spec[1], inputs = {1, 2},
    save = function(node, args, nargs, out)
      save_shapes(node, args, nargs, out)
      save(node, args[1], args[2])
    end,
    backward = function(node, g)
      local a, b = saved(node)
      local w = maxmin_weight(a, b, spec[2])
      return wants(node, 1) and back(g * w, node.sa), wants(node, 2) and back(g * (1 - w), node.sb)
    end}
end

-- where(mask, a, b): a and b tensors or numbers
defop{name = "where", inputs = {2, 3},
  save = function(node, args, _, out)
    node.sa, node.sb = bshape(args[2], out), bshape(args[3], out)
    save(node, args[1])
  end,
  backward = function(node, g)
    local m = saved1(node):ne(0)
    local ga = wants(node, 1) and back(core.where(m, g, 0), node.sa)
    local gb = wants(node, 2) and back(core.where(m, 0, g), node.sb)
    return ga, gb
  end}

defop{name = "masked_fill", inputs = {1},
  save = function(node, args) save(node, args[2]) end,
  backward = function(node, g) return g:masked_fill(saved1(node), 0) end}

-- t:dot(u) returns a Lua number: not differentiable (mo.matmul of two 1-d tensors is).

-- addcmul(t1, t2 [, value]) / torch7's addcmul(value, t1, t2); addcdiv likewise
local function addc_args(args)
  if type(args[2]) == "number" then return args[3], args[4], args[2], 3, 4 end
  return args[2], args[3], args[4] or 1, 2, 3
end

for _, div in ipairs{false, true} do
  local name = div and "addcdiv" or "addcmul"
  defop{name = name, inputs = {1, 2, 3, 4},
    record = function(def, args, _, req, out)
      local t1, t2, v, p1, p2 = addc_args(args)
      local ins = {args[1], (req >> (p1 - 1)) & 1 == 1 and t1 or nil,
        (req >> (p2 - 1)) & 1 == 1 and t2 or nil}
      if req & 1 == 0 then ins[1] = nil end
      local node = E.record(def.name, ins, {out}, def.backward, 3)
      node.v, node.sa = v, args[1]:shape()
      save(node, t1, t2)
      return node
    end,
    backward = function(node, g)
      local t1, t2 = saved(node)
      local v = node.v
      if div then
        local gv = g * v
        return sum_to(g, node.sa), gv / t2, -gv * t1 / (t2 * t2)
      end
      return sum_to(g, node.sa), g * v * t2, g * v * t1
    end}
end

defop{name = "add_row_bias", inputs = {1, 2},
  backward = function(_, g) return g, g:sum(1) end}

-- ---------------------------------------------------------------------------------------
-- Elementwise unary ops
-- ---------------------------------------------------------------------------------------

-- what a unary op saves (declared: the C dispatcher saves it, see E.defop)
local save_in, save_out = {1}, {0}

local function unary(names, saves, backward)
  if type(names) == "string" then names = {names} end
  defop{name = names[1], names = names, inputs = {1}, saves = saves, backward = backward}
end

unary({"neg", "__unm"}, nil, function(_, g) return -g end)
unary("exp", save_out, function(n, g) return g * saved1(n) end)
unary("log", save_in, function(n, g) return g / saved1(n) end)
unary("sqrt", save_out, function(n, g) return g / (saved1(n) * 2) end)
unary("rsqrt", save_out, function(n, g)
  local y = saved1(n)
  return g * (y * y * y) * -0.5
end)
unary("abs", save_in, function(n, g) return g * saved1(n):sign() end)
unary("sin", save_in, function(n, g) return g * saved1(n):cos() end)
unary("cos", save_in, function(n, g) return -g * saved1(n):sin() end)
unary("tan", save_out, function(n, g)
  local y = saved1(n)
  return g * (y * y + 1)
end)
unary("tanh", save_out, function(n, g)
  local y = saved1(n)
  return g * (1 - y * y)
end)
unary("sigmoid", save_out, function(n, g)
  local y = saved1(n)
  return g * y * (1 - y)
end)
unary("relu", save_out, function(n, g) return g * saved1(n):gt(0) end)
unary("log1p", save_in, function(n, g) return g / (saved1(n) + 1) end)
unary("expm1", save_out, function(n, g) return g * (saved1(n) + 1) end)
local TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)
unary("erf", save_in, function(n, g)
  local x = saved1(n)
  return g * (-(x * x)):exp() * TWO_OVER_SQRT_PI
end)
for _, name in ipairs{"sign", "floor", "ceil", "round"} do
  -- piecewise constant: the gradient is 0 almost everywhere (as PyTorch)
  unary(name, nil, function(_, g) return g * 0 end)
end

defop{name = "clamp", inputs = {1},
  save = function(node, args)
    node.lo, node.hi = args[2], args[3]
    save(node, args[1])
  end,
  backward = function(node, g)
    local x = saved1(node)
    local m
    if node.lo ~= nil then m = x:ge(node.lo) end
    if node.hi ~= nil then
      local mh = x:le(node.hi)
      m = m and m * mh or mh
    end
    return g * m
  end}

-- ---------------------------------------------------------------------------------------
-- Reductions
-- ---------------------------------------------------------------------------------------

-- sum/mean/logsumexp style arguments: (self [, dim [, keepdim]]) -> dim (1-based) or nil
local function dim_args(node, args)
  local x = args[1]
  node.shape = x:shape()
  local d = args[2]
  if type(d) == "number" then
    node.dim, node.keepdim = norm_dim(d, #node.shape), args[3] == true
  end
end

defop{name = "sum", inputs = {1}, shape = true, dims = true,
  backward = function(node, g) return unreduce(g, node.shape, node.dim, node.keepdim) end}

local function count(shape, dim) -- (shape: a table)
  if dim then return shape[dim] end
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return n
end

defop{name = "mean", inputs = {1}, shape = true, dims = true,
  backward = function(node, g)
    local shape = dims_of(node.shape)
    return unreduce(g / count(shape, node.dim), shape, node.dim, node.keepdim)
  end}

defop{name = "prod", inputs = {1},
  save = function(node, args, _, out)
    dim_args(node, args)
    save(node, args[1], out)
  end,
  backward = function(node, g)
    local x, out = saved(node)
    local dim, kd = node.dim, node.keepdim
    local zero = x:eq(0)
    local nz = dim and zero:sum(dim, true) or zero:sum()
    local outk = (dim and not kd) and out:unsqueeze(dim) or out
    local gk = unreduce(g, node.shape, dim, kd)
    -- no zero in the lane: prod / x; one zero: the product of the others at the zero
    local safe = core.where(zero, 1, x)
    local others = dim and safe:prod(dim, true) or safe:prod()
    local one_zero = core.where(zero, others, 0)
    local r = core.where(nz:eq(0), outk / safe, core.where(nz:eq(1), one_zero, 0))
    return gk * r
  end}

-- std/var: (self [, dim [, unbiased [, keepdim]]]) or (self, unbiased)
local function var_args(node, args)
  local x = args[1]
  node.shape = x:shape()
  local a = args[2]
  node.unbiased = true
  if type(a) == "boolean" then
    node.unbiased = a
  elseif type(a) == "number" then
    node.dim = norm_dim(a, #node.shape)
    if args[3] ~= nil then node.unbiased = args[3] end
    node.keepdim = args[4] == true
  end
end

for _, name in ipairs{"var", "std"} do
  defop{name = name, inputs = {1},
    save = function(node, args, _, out)
      var_args(node, args)
      save(node, args[1], out)
    end,
    backward = function(node, g)
      local x, out = saved(node)
      local dim = node.dim
      local n = count(node.shape, dim) - (node.unbiased and 1 or 0)
      local mean = dim and x:mean(dim, true) or x:mean()
      local gk = unreduce(g, node.shape, dim, node.keepdim)
      local r = (x - mean) * (2 / n)
      if name == "std" then
        local outk = (dim and not node.keepdim) and out:unsqueeze(dim) or out
        r = r / (outk * 2)
      end
      return gk * r
    end}
end

-- max/min: t:max() -> 0-d (the gradient is spread evenly over ties, as PyTorch's
-- full reduction); t:max(dim [, keepdim]) -> values, indices (to the chosen index).
for _, name in ipairs{"max", "min"} do
  defop{name = name, inputs = {1},
    record = function(def, args, _, _, out, idx)
      local x = args[1]
      local node = E.record(def.name, {x}, {out}, def.backward, 1)
      node.shape = x:shape()
      if idx ~= nil then
        node.dim, node.keepdim = norm_dim(args[2], #node.shape), args[3] == true
        save(node, idx)
        E.mark(name, idx)
      else
        save(node, x, out)
      end
      return node
    end,
    backward = function(node, g)
      if node.dim then
        local idx = saved1(node)
        local dim = node.dim
        local gk, ik = g, idx
        if not node.keepdim then gk, ik = g:unsqueeze(dim), idx:unsqueeze(dim) end
        local z = core.zeros(node.shape, {dtype = g.dtype})
        return z:scatter_add(dim, ik, gk)
      end
      local x, out = saved(node)
      local m = x:eq(out)
      return g * m / m:sum()
    end}
end

defop{name = "norm", inputs = {1},
  save = function(node, args, _, out)
    local x = args[1]
    node.shape = x:shape()
    node.p = args[2] or 2
    if type(args[3]) == "number" then
      node.dim, node.keepdim = norm_dim(args[3], #node.shape), args[4] == true
    end
    save(node, x, out)
  end,
  backward = function(node, g)
    local x, out = saved(node)
    local p, dim = node.p, node.dim
    local outk = (dim and not node.keepdim) and out:unsqueeze(dim) or out
    local gk = unreduce(g, node.shape, dim, node.keepdim)
    local r
    if p == 2 then
      r = core.where(outk:eq(0), 0, x / outk)
    elseif p == 1 then
      r = x:sign()
    elseif p == math.huge then
      local m = x:abs():eq(outk)
      r = x:sign() * m / (dim and m:sum(dim, true) or m:sum())
    else
      r = core.where(outk:eq(0), 0, x * x:abs() ^ (p - 2) / outk ^ (p - 1))
    end
    return gk * r
  end}

defop{name = "logsumexp", inputs = {1},
  save = function(node, args, _, out)
    dim_args(node, args)
    save(node, args[1], out)
  end,
  backward = function(node, g)
    local x, out = saved(node)
    local dim = node.dim
    local outk = (dim and not node.keepdim) and out:unsqueeze(dim) or out
    return unreduce(g, node.shape, dim, node.keepdim) * (x - outk):exp()
  end}

defop{name = "softmax", inputs = {1},
  save = function(node, args, _, out)
    node.dim = norm_dim(args[2], args[1]:dim())
    save(node, out)
  end,
  backward = function(node, g)
    local y = saved1(node)
    return y * (g - (g * y):sum(node.dim, true))
  end}

defop{name = "log_softmax", inputs = {1},
  save = function(node, args, _, out)
    node.dim = norm_dim(args[2], args[1]:dim())
    save(node, out)
  end,
  backward = function(node, g)
    local y = saved1(node)
    return g - y:exp() * g:sum(node.dim, true)
  end}

defop{name = "cumsum", inputs = {1},
  save = function(node, args) node.dim = norm_dim(args[2], args[1]:dim()) end,
  backward = function(node, g)
    -- the suffix sums of g: total - prefix + g
    local d = node.dim
    return g:sum(d, true) - g:cumsum(d) + g
  end}

-- sort / topk: values differentiable (to their source positions), indices marked
for _, name in ipairs{"sort", "topk"} do
  defop{name = name, inputs = {1},
    record = function(def, args, _, _, out, idx)
      local x = args[1]
      local node = E.record(def.name, {x}, {out}, def.backward, 1)
      node.shape = x:shape()
      local d
      if name == "sort" then
        d = type(args[2]) == "number" and args[2] or -1
      else
        d = type(args[3]) == "number" and args[3] or -1
      end
      node.dim = norm_dim(d, #node.shape)
      save(node, idx)
      E.mark(name, idx)
      return node
    end,
    backward = function(node, g)
      if #node.shape == 0 then return g end
      local z = core.zeros(node.shape, {dtype = g.dtype})
      return z:scatter_add(node.dim, saved1(node), g)
    end}
end

E.nondiff("argmax", "argmin", "any", "all", "eq", "ne", "lt", "le", "gt", "ge",
  "zeros_like", "ones_like", "rand_like", "randn_like")
-- codecs of optimizer state (bfloat16 / int8) and checkpoints: tensors that never carry a
-- gradient (declared so the registry test sees a decision, not an omission)
E.nondiff("lean_encode", "lean_from_codes", "ckpt_decode")

-- ---------------------------------------------------------------------------------------
-- Shapes and views
-- ---------------------------------------------------------------------------------------

local function reshape_back(node, g) return g:reshape(dims_of(node.shape)) end

for _, name in ipairs{"reshape", "view", "squeeze", "unsqueeze", "flatten"} do
  defop{name = name, inputs = {1}, shape = true, backward = reshape_back}
end

defop{name = "expand", inputs = {1}, shape = true,
  backward = function(node, g) return sum_to(g, node.shape) end}

for _, name in ipairs{"contiguous", "clone"} do
  defop{name = name, inputs = {1}, backward = function(_, g) return g end}
end

for _, name in ipairs{"to", "double", "float"} do
  defop{name = name, inputs = {1},
    save = function(node, args) node.dtype = args[1].dtype end,
    backward = function(node, g) return g:to(node.dtype) end}
end

defop{name = "t", inputs = {1}, backward = function(_, g) return g:t() end}

defop{name = "transpose", inputs = {1},
  save = function(node, args) node.d1, node.d2 = args[2], args[3] end,
  backward = function(node, g) return g:transpose(node.d1, node.d2) end}

defop{name = "permute", inputs = {1},
  save = function(node, args, nargs)
    local n = args[1]:dim()
    local dims = type(args[2]) == "table" and args[2] or {unpack(args, 2, nargs)}
    local inv = {}
    for k = 1, n do inv[norm_dim(dims[k], n)] = k end
    node.inv = inv
  end,
  backward = function(node, g) return g:permute(node.inv) end}

--[[--
The gradient of a view: `g` written into zeros of the source's shape at the place the
view function `vf` selects. Itself an op (whose gradient is vf applied to the incoming
gradient), so double backward works through views.
--]]
local embed
local function embed_backward(node, gg) return node.vf(gg) end
embed = function(g, shape, vf)
  local z = core.zeros(shape, {dtype = g.dtype})
  local before = E.grad_mode(false)
  local ok, err = pcall(function() vf(z):copy(g) end)
  E.grad_mode(before)
  if not ok then error(err, 0) end
  if E.needs_grad(g) then
    local node = E.record("view backward", {g}, {z}, embed_backward, 1)
    node.vf = vf
  end
  return z
end
M.embed = embed

local function view_op(name, make_vf, alias)
  defop{name = name, names = alias and {alias}, inputs = {1},
    save = function(node, args, nargs)
      node.shape = args[1]:shape()
      node.vf = make_vf(args, nargs)
    end,
    backward = function(node, g) return embed(g, node.shape, node.vf) end}
end

view_op("select", function(args)
  local d, i = args[2], args[3]
  return function(t) return t:select(d, i) end
end)
view_op("narrow", function(args)
  local d, s, l = args[2], args[3], args[4]
  return function(t) return t:narrow(d, s, l) end
end)
local function copy_key(k)
  if type(k) ~= "table" then return k end
  local c = {}
  for i, v in pairs(k) do c[i] = copy_key(v) end
  return c
end

-- t[i] (tensor.c records it as "__index"): the key and the shape are saved in C; backward
-- builds the view function. t[{...}] ("__index_t"): the key table is copied (the user's
-- table may change later). Both nodes are named "__index".
defop{name = "__index", inputs = {1}, arg2 = true, shape = true,
  backward = function(node, g)
    local i = node.arg2
    return embed(g, dims_of(node.shape), function(t) return t[i] end)
  end}
view_op("__index", function(args)
  local key = copy_key(args[2])
  return function(t) return t[key] end
end, "__index_t")

-- chunk / split: a table of views; each view gets its own node
for _, name in ipairs{"chunk", "split"} do
  defop{name = name, inputs = {1},
    record = function(def, args, _, _, out)
      local x = args[1]
      local shape = x:shape()
      local d = norm_dim(args[3] or 1, #shape)
      local start = 1
      for k = 1, #out do
        local piece = out[k]
        local len = piece:size(d)
        local s0 = start
        local node = E.record(def.name, {x}, {piece}, def.backward, 1)
        node.shape = shape
        node.vf = function(t) return t:narrow(d, s0, len) end
        start = start + len
      end
    end,
    backward = function(node, g) return embed(g, node.shape, node.vf) end}
end

-- cat / stack: list arguments
local function list_record(def, args, _, _, out)
  local list = args[1]
  local n = #list
  local node = E.record(def.name, list, {out}, def.backward, n)
  local d = args[2] or 1
  local nd = is_tensor(list[1]) and list[1]:dim() or 0
  node.dim = norm_dim(d, def.name == "stack" and nd + 1 or nd)
  local sizes = {}
  for k = 1, n do sizes[k] = def.name == "cat" and list[k]:size(node.dim) or 1 end
  node.sizes, node.n = sizes, n
  return node
end

defop{name = "cat", inputs = {1}, record = list_record,
  backward = function(node, g)
    local r, start = {}, 1
    for k = 1, node.n do
      r[k] = g:narrow(node.dim, start, node.sizes[k])
      start = start + node.sizes[k]
    end
    return unpack(r, 1, node.n)
  end}

defop{name = "stack", inputs = {1}, record = list_record,
  backward = function(node, g)
    local r = {}
    for k = 1, node.n do r[k] = g:select(node.dim, k) end
    return unpack(r, 1, node.n)
  end}

-- ---------------------------------------------------------------------------------------
-- Index ops
-- ---------------------------------------------------------------------------------------

defop{name = "index_select", inputs = {1},
  save = function(node, args)
    node.shape = args[1]:shape()
    node.dim = norm_dim(args[2], #node.shape)
    save(node, args[3])
  end,
  backward = function(node, g)
    -- index_add as scatter_add with the index broadcast along the other dims
    local idx, dim = saved1(node), node.dim
    local gs = g:shape()
    local ishape = {}
    for k = 1, #gs do ishape[k] = k == dim and gs[k] or 1 end
    local full = idx:reshape(ishape):expand(gs):contiguous()
    local z = core.zeros(node.shape, {dtype = g.dtype})
    return z:scatter_add(dim, full, g)
  end}

defop{name = "gather", inputs = {1},
  save = function(node, args)
    node.shape = args[1]:shape()
    node.dim = norm_dim(args[2], #node.shape)
    save(node, args[3])
  end,
  backward = function(node, g)
    local z = core.zeros(node.shape, {dtype = g.dtype})
    return z:scatter_add(node.dim, saved1(node), g)
  end}

defop{name = "scatter_add", inputs = {1, 4},
  save = function(node, args)
    node.dim = norm_dim(args[2], args[1]:dim())
    node.sshape = args[4]:shape()
    save(node, args[3])
  end,
  backward = function(node, g)
    local idx = saved1(node)
    local gs = g:gather(node.dim, idx)
    local ishape = idx:shape()
    local same = true
    for k = 1, #ishape do same = same and ishape[k] == node.sshape[k] end
    if not same then -- src larger than index: only its leading block was read
      gs = embed(gs, node.sshape, function(t)
        for k = 1, #ishape do t = t:narrow(k, 1, ishape[k]) end
        return t
      end)
    end
    return g, gs
  end}

-- ---------------------------------------------------------------------------------------
-- matmul (1-d, 2-d, 3-d as torch.matmul; options trans_a, trans_b, alpha)
-- ---------------------------------------------------------------------------------------

local function tr(t) return t:transpose(-2, -1) end

defop{name = "matmul", inputs = {1, 2},
  save = function(node, args, nargs)
    local opts = nargs >= 3 and args[3] or nil
    if type(opts) == "table" then
      if opts.out ~= nil or (opts.beta ~= nil and opts.beta ~= 0) then
        fail("matmul: the out and beta options write into a tensor and are not recorded by "
          .. "autograd; use mo.matmul(a, b) + c")
      end
      node.ta, node.tb, node.alpha = opts.trans_a, opts.trans_b, opts.alpha
    end
    save(node, args[1], args[2])
  end,
  backward = function(node, g)
    local a, b = saved(node)
    if node.ta then a = a:t() end
    if node.tb then b = b:t() end
    if node.alpha and node.alpha ~= 1 then g = g * node.alpha end
    local da, db = a:dim(), b:dim()
    if da == 1 and db == 1 then return wants(node, 1) and g * b, wants(node, 2) and g * a end
    -- promote 1-d operands: a {n} -> {1, n}, b {n} -> {n, 1}; g gets the dims back
    local a2 = da == 1 and a:unsqueeze(1) or a
    local b2 = db == 1 and b:unsqueeze(2) or b
    local g2 = g
    if da == 1 then g2 = g2:unsqueeze(-2) end
    if db == 1 then g2 = g2:unsqueeze(-1) end
    local ga, gb
    if wants(node, 1) then
      ga = sum_to(core.matmul(g2, tr(b2)), a2:shape()):reshape(a:shape())
      if node.ta then ga = ga:t() end
    end
    if wants(node, 2) then
      gb = sum_to(core.matmul(tr(a2), g2), b2:shape()):reshape(b:shape())
      if node.tb then gb = gb:t() end
    end
    return ga, gb
  end}

return M
