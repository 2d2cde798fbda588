--- moonopt.autograd.engine: the tape (nodes recorded as ops run) and the backward pass.
--
-- docs/autograd.md "How the tape works" is the reference; in short:
--   * the C dispatcher (lua/binding/autograd.c) calls `recorder(name, args, nargs, req,
--     mark, results...)` after a tensor function ran with grad mode on and some argument
--     needing grad (bit k-1 of `req`) or carrying a non-differentiable mark (`mark`);
--   * the recorder finds the op's definition (M.defop) and builds a node:
--       node = {name, backward = fn(node, grad_1, ..., grad_nout) -> one grad per input,
--               nin = number of differentiable inputs, [2k-1] = the edge of input k (or
--               false), [2k] = the output index of that edge's node (0 for a leaf),
--               [2 nin + k] = saved value k, [2 nin + nsaved + k] = its version,
--               nsaved = count, ...}
--     an edge is the input's own node (a recorded result) or the leaf tensor itself;
--     the result's user value 3 gets the node (core._autograd.set_node);
--   * backward walks the nodes reachable from the root in topological order (Kahn),
--     summing the gradients that reach each node's outputs, and accumulates leaves'
--     gradients into `.grad` (in place when one exists).
local core = require "moonopt.core"

local M = {}

local AG = core._autograd
local edge_of, set_node, set_mark = AG.edge, AG.set_node, AG.set_mark
local ag_info, version_of, grad_mode = AG.info, AG.version, AG.grad_mode
local is_tensor = core.is_tensor
local select, type, fmt = select, type, string.format

M.grad_mode = grad_mode

--- binding name -> definition (see M.defop)
M.DEFS = {}
-- binding name -> the definition's `fast` (M.defop), for definitions without a `record`: the
-- C side's table, which the dispatcher's fast path reads (lua/binding/autograd.c fast_record)
local FAST = AG.fast()
--- names of functions whose tensor results never carry a gradient (comparisons, argmax, ...)
M.NONDIFF = {}

local DEFS, NONDIFF = M.DEFS, M.NONDIFF

-- An error reported at the first frame outside moonopt's own Lua files (the user's line).
local lib_root = debug.getinfo(1, "S").short_src:match("^(.*)autograd/engine%.lua$")
local function user_level()
  local level = 3
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil then return 0 end
    if info.what ~= "C" and not (lib_root and info.short_src:sub(1, #lib_root) == lib_root) then
      return level - 1
    end
    level = level + 1
  end
end

--- Raises `fmt(...)` at the user's line (for errors found while recording).
function M.fail(...)
  error(fmt(...), user_level())
end

local function restore(before, ok, ...)
  grad_mode(before)
  if not ok then error((...), 0) end
  return ...
end

--- Runs fn(...) with grad mode off (restored even when fn raises) and returns its results:
-- library code that writes into parameters (optimizer-style updates, ZeRO's gathers, the
-- schedule-free eval/train swap) runs under it, as PyTorch's optimizers run under no_grad.
-- (mo.no_grad is the public form, with its argument checked.)
function M.no_grad(fn, ...)
  return restore(grad_mode(false), pcall(fn, ...))
end

-- ---------------------------------------------------------------------------------------
-- Recording
-- ---------------------------------------------------------------------------------------

--- Saves values (tensors or others) for backward, with the storage version of each
-- tensor, which backward checks (an in-place change in between is an error). They sit in
-- the node's array part after its edges: node[2 nin + k] value k, node[2 nin + n + k] its
-- version (false for a non-tensor), node.nsaved = n (no table of their own: recording
-- makes one allocation less per op). M.saved reads them back.
function M.save(node, ...)
  local n = select("#", ...)
  local b = 2 * node.nin
  for k = 1, n do
    local v = select(k, ...)
    node[b + k], node[b + n + k] = v, version_of(v)
  end
  node.nsaved = n
end

--- The values saved in node (M.save, or a definition's declared saves), in order; none
-- once backward freed the node.
function M.saved(node)
  local b = 2 * node.nin
  return table.unpack(node, b + 1, b + (node.nsaved or 0))
end

--- The first value saved in node (M.saved's first, without the others).
function M.saved1(node)
  return node[2 * node.nin + 1]
end

--- A new node for op `name` whose differentiable inputs are the values in `inputs`
-- (an array of n values; non-tensors and tensors not needing grad get no edge).
function M.new_node(name, backward, inputs, n)
  local node = {name = name, backward = backward, nin = n}
  for k = 1, n do
    local e, i = edge_of(inputs[k])
    node[2 * k - 1], node[2 * k] = e or false, i or 0
  end
  return node
end

--- Whether input k of a node has an edge (it needed grad when the node was recorded): a
-- fused backward computes only the gradients some input will receive.
function M.wants(node, k)
  return node[2 * k - 1] ~= false
end

-- True while a backward runs that accumulates into leaves' .grad without create_graph
-- (set by M.backward; false for mo.autograd.grad, which returns gradients instead).
local sinks_on = false

--[[--
The .grad of input k of `node`, when the node's backward may add its gradient for that
input straight into it instead of returning it: input k is a leaf (a parameter) whose .grad
exists and carries no graph, and the running backward accumulates into .grad (not
mo.autograd.grad's capture) without create_graph. The backward then returns nil for input k,
and the engine adds nothing. nil otherwise: return the gradient as usual.
For fused nodes whose C kernels accumulate (nn_linear_backward adds g^T x into weight.grad):
no fresh gradient tensor per step, no separate add (docs/autograd.md "Accumulating in place").
--]]
function M.grad_sink(node, k)
  if not sinks_on then return nil end
  local e = node[2 * k - 1]
  if type(e) ~= "userdata" then return nil end
  local g = e.grad
  if g == nil or g.requires_grad then return nil end
  return g
end

-- The mark carried by the first marked value among the args.
local function first_mark(args, nargs, mark)
  for k = 1, nargs do
    if mark & (1 << (k - 1)) ~= 0 then
      local v = args[k]
      if is_tensor(v) then return (select(4, ag_info(v))) end
      for _, t in ipairs(v) do
        if is_tensor(t) then
          local m = select(4, ag_info(t))
          if m then return m end
        end
      end
    end
  end
end

--- Marks every tensor among the values (and in tables among them) as made by the
-- non-differentiable op `name`.
function M.mark(name, ...)
  for k = 1, select("#", ...) do
    local v = select(k, ...)
    if is_tensor(v) then
      set_mark(v, name)
    elseif type(v) == "table" then
      for _, t in ipairs(v) do
        if is_tensor(t) then set_mark(t, name) end
      end
    end
  end
end
local mark = M.mark

-- The generic record of a definition with `inputs` positions and a `save` function.
local function record_generic(def, args, nargs, req, out, ...)
  local ins = def.inputs
  local nin = #ins
  local node
  -- sized by the constructor (no rehash as the edges go in): most ops have 1 or 2 inputs
  -- (nsaved is set here so the hash part is sized for it and three fields of the
  -- definition's own at once: no rehash of the hash part while save fills it)
  if nin == 1 then
    node = {false, 0, name = def.name, backward = def.backward, nin = 1, nsaved = 0}
  elseif nin == 2 then
    node = {false, 0, false, 0, name = def.name, backward = def.backward, nin = 2, nsaved = 0}
  else
    node = {name = def.name, backward = def.backward, nin = nin, nsaved = 0}
  end
  for k = 1, nin do
    local p = ins[k]
    if req & (1 << (p - 1)) ~= 0 then
      local e, i = edge_of(args[p])
      node[2 * k - 1], node[2 * k] = e or false, i or 0
    else
      node[2 * k - 1], node[2 * k] = false, 0
    end
  end
  if def.save then def.save(node, args, nargs, out, ...) end
  set_node(out, node, 1)
  return node
end

--- The recorder the C dispatcher calls (see the top of this file).
function M.recorder(name, args, nargs, req, mk, out, ...)
  local def = DEFS[name]
  local to = type(out)
  if to ~= "userdata" and to ~= "table" then return end -- a number, a string
  for k = 1, nargs do
    if rawequal(args[k], out) then return end -- `to` or `contiguous` returning self
  end
  if def == nil or NONDIFF[name] then
    if req ~= 0 then return mark(name, out, ...) end
    return mark(first_mark(args, nargs, mk) or name, out, ...)
  end
  if req == 0 then return mark(first_mark(args, nargs, mk) or name, out, ...) end
  return (def.record or record_generic)(def, args, nargs, req, out, ...)
end

--[[--
Defines the gradient of a function of the binding (a tensor method, metamethod or
module function registered in C). `spec`:
  name      the registered name ("mul", "__mul", "sum", "matmul", ...); `names` a list
            of several names sharing the definition
  inputs    the argument positions that are differentiable ({1, 2} for a binary op;
            self is 1). The C dispatcher sets bit k-1 of `req` for an argument k
            needing grad; record_generic makes one edge per entry of `inputs`.
  save      function(node, args, nargs, out, ...) storing what backward needs (use
            M.save(node, ...) for tensors, so in-place changes are detected)
  backward  function(node, grad) -> one gradient per entry of `inputs` (nil for none),
            written with ordinary tensor ops so it records under create_graph
  record    optional: function(def, args, nargs, req, out, ...) replacing the generic
            record (list arguments, several outputs, checks of options)
`args` is a table of the call's arguments as the caller passed them (made for this call:
the C function may have overwritten its own stack slots).
  check     optional: true when a gradcheck case exists in tests (the registry walk)
Instead of `save`, the common saves can be declared; the C dispatcher then does them
itself, with no call into Lua (the hot path of recording: docs/autograd.md "Recording"):
  saves     a list of argument positions to save (0: the result), as M.save(node, ...)
  shapes    true: node.sa, node.sb = the shapes of arguments 1 and 2 when broadcasting
            changed them, else nil: core._autograd.bshape; as shape keys (below)
  shape     true: node.shape = the shape of argument 1, as a shape key: a string
            (interned, so recording makes no table); core._autograd.sizes(key), or ops.lua's
            dims_of, sum_to and unreduce, take it
  arg2      true: node.arg2 = argument 2 as it is (a number; no table, no version)
  dims      true: a reduction's dim = argument 2, keepdim = argument 3: when argument 2
            is a number, node.dim = it counted from 1 (a negative one from the end of
            argument 1's dims) and node.keepdim = (argument 3 == true); else neither
Returns the definition.
--]]
local bshape, shape_key = AG.bshape, AG.shape_key
local INT_BITS = math.maxinteger == 0x7fffffff and 31 or 63

-- A list of argument positions (integers 0 to 31, at most 11) packed into one integer, as
-- the C fast path reads it (lua/binding/autograd.c packed_at): the count in bits 0-3,
-- position k in the 5 bits from 4 + 5 (k - 1); then shifted left by `shift` bits. nil when
-- it does not fit (the definition then takes the Lua recorder's path).
local function pack(list, shift)
  local n = #list
  if n > 11 or shift + 4 + 5 * n > INT_BITS then return nil end
  local v = n
  for k = 1, n do
    local p = list[k]
    if math.type(p) ~= "integer" or p < 0 or p > 31 then return nil end
    v = v | (p << (4 + 5 * (k - 1)))
  end
  return v << shift
end

local function make_save(spec)
  local saves, shapes, shape, arg2 = spec.saves or {}, spec.shapes, spec.shape, spec.arg2
  local dims = spec.dims
  local n = #saves
  -- the C side's form, one integer: flags in bits 0-3 (1: shapes, 2: shape, 4: arg2,
  -- 8: dims), then the positions packed; false when they do not fit (the C side then
  -- calls save_fn)
  local packed = pack(saves, 4)
  local csave = packed and packed | (shapes and 1 or 0) | (shape and 2 or 0)
                | (arg2 and 4 or 0) | (dims and 8 or 0) or false
  -- the same node fields the C side's c_save sets (the recorder's slow path runs this)
  local function save_fn(node, args, _, out)
    if n > 0 then
      local b = 2 * node.nin
      for k = 1, n do
        local v = saves[k] == 0 and out or args[saves[k]]
        node[b + k], node[b + n + k] = v, version_of(v)
      end
      node.nsaved = n
    end
    if shapes then -- (nil, as the C side leaves them, unless broadcasting changed them)
      node.sa, node.sb = bshape(args[1], out) or nil, bshape(args[2], out) or nil
    end
    if shape then node.shape = shape_key(args[1]) end
    if arg2 then node.arg2 = args[2] end
    if dims and type(args[2]) == "number" then
      local d = args[2]
      node.dim, node.keepdim = d < 0 and d + args[1]:dim() + 1 or d, args[3] == true
    end
  end
  return csave, save_fn, n
end

function M.defop(spec)
  assert(type(spec.name) == "string", "defop: name must be a string")
  assert(spec.record or (type(spec.backward) == "function" and type(spec.inputs) == "table"),
    "defop: backward and inputs are required")
  local csave, nsaved = false, nil
  if spec.saves or spec.shapes or spec.shape or spec.arg2 or spec.dims then
    assert(spec.save == nil and spec.record == nil,
      "defop: saves/shapes/shape/arg2/dims replace save")
    csave, spec.save, nsaved = make_save(spec)
    spec.saves, spec.shapes, spec.shape, spec.arg2, spec.dims = nil, nil, nil, nil, nil
  end
  local inputs = not spec.record and pack(spec.inputs, 0)
  if inputs then
    -- what the C fast path needs in one table: the metatable its nodes share (the fields
    -- every node of the op has: name, backward, nin, and nsaved for a declarative save),
    -- the input positions (packed), the declarative save (packed, or false) and the Lua
    -- save (or false)
    local proto = {name = spec.name, backward = spec.backward, nin = #spec.inputs,
                   nsaved = nsaved}
    local mt = {__index = proto}
    -- what a node of the op becomes when backward frees it (freed = true): a metatable,
    -- not a field of its own (most of these nodes have no hash part to hold one)
    mt.freed = {__index = setmetatable({freed = true}, mt)}
    spec.fast = {mt, inputs, csave, csave == false and spec.save or false}
  end
  for _, n in ipairs(spec.names or {spec.name}) do DEFS[n], FAST[n] = spec, spec.fast end
  return spec
end

--- Declares the tensor results of the named functions non-differentiable.
function M.nondiff(...)
  for k = 1, select("#", ...) do NONDIFF[select(k, ...)] = true end
end

--- Whether grad mode is on and some value among the arguments (tensors, or tensors in
-- tables) requires grad: the test a Lua-level op makes before recording.
function M.needs_grad(...)
  if not grad_mode() then return false end
  for k = 1, select("#", ...) do
    local v = select(k, ...)
    if is_tensor(v) then
      if v.requires_grad then return true end
    elseif type(v) == "table" then
      for _, t in ipairs(v) do
        if is_tensor(t) and t.requires_grad then return true end
      end
    end
  end
  return false
end

--[[--
Records a node for a computation done outside the dispatcher (a fused C kernel, a
custom Function): `inputs` an array of values (tensors needing grad get edges),
`outputs` the results (tensors; each becomes output k of the node), `backward`
function(node, grad_1, ..., grad_nout) -> one gradient per input. Call it after the
forward ran with grad mode off. Returns the node (for M.save and extra fields).
--]]
function M.record(name, inputs, outputs, backward, ninputs)
  local node = M.new_node(name, backward, inputs, ninputs or #inputs)
  if #outputs > 1 then node.nout = #outputs end -- nil: one output (the engine's fast case)
  for k = 1, #outputs do set_node(outputs[k], node, k) end
  return node
end

-- ---------------------------------------------------------------------------------------
-- Backward
-- ---------------------------------------------------------------------------------------

local function shape_str(t)
  return "{" .. table.concat(t:shape(), ", ") .. "}"
end
M.shape_str = shape_str

-- Raises when a saved tensor changed in place after it was saved.
local function check_versions(node)
  local n = node.nsaved
  if not n or n == 0 then return end
  local b = 2 * node.nin
  for k = 1, n do
    local t, v = node[b + k], node[b + n + k]
    if v and version_of(t) ~= v then
      error(fmt("backward: a tensor that %s saved for backward (saved value #%d, of shape %s)"
        .. " was changed in place afterwards (version %d, expected %d); clone it before "
        .. "the in-place op, or use the out-of-place form", node.name, k,
        shape_str(t), version_of(t), v), 0)
    end
  end
end

local function add_grad(old, g)
  if old == nil then return g end
  return old + g
end

-- Each node reachable from the roots -> the count of edges into it from reachable nodes.
local function count_deps(roots)
  local deps, stack = {}, {}
  for _, n in ipairs(roots) do
    if deps[n] == nil then
      deps[n] = 0
      stack[#stack + 1] = n
    end
  end
  while #stack > 0 do
    local n = stack[#stack]
    stack[#stack] = nil
    if n.freed then
      error(fmt("backward: the graph through %s was already freed by an earlier backward; "
        .. "pass {retain_graph = true} to the first backward to run backward twice", n.name), 0)
    end
    for k = 1, 2 * n.nin, 2 do
      local e = n[k]
      if type(e) == "table" then
        local d = deps[e]
        if d == nil then
          deps[e] = 1
          stack[#stack + 1] = e
        else
          deps[e] = d + 1
        end
      end
    end
  end
  return deps
end

-- Accumulates g into a leaf's .grad: in place when it exists (nn modules' .grad are
-- views into one flat buffer), else a copy of g (g may be shared with other edges).
local function accumulate(leaf, g, create_graph)
  local old = leaf.grad
  if old == nil then
    leaf.grad = create_graph and g.requires_grad and g or g:detach():clone()
  elseif create_graph and (g.requires_grad or old.requires_grad) then
    leaf.grad = old + g
  else
    old:add_(g)
  end
end

-- Adds g to what is pending for output i of node e: the gradient itself for a node with
-- one output (no table), a table by output index for a node with several (e.nout).
local function push(pending, e, i, g)
  if e.nout then
    local slot = pending[e]
    if slot == nil then
      slot = {}
      pending[e] = slot
    end
    slot[i] = add_grad(slot[i], g)
  else
    pending[e] = add_grad(pending[e], g)
  end
end

-- Sends the gradient g of an input along its edge e (node, leaf or false).
local function send(pending, e, i, g, capture, create_graph)
  if type(e) == "table" then
    push(pending, e, i, g)
  elseif capture then
    if capture[e] then capture[e] = add_grad(capture[e] ~= true and capture[e] or nil, g) end
  else
    accumulate(e, g, create_graph)
  end
end

-- Records the gradients reaching a node's outputs that autograd.grad asked for.
local function capture_at(capture, node, p)
  local want = capture.nodes[node]
  if not want or p == nil then return end
  if node.nout then
    for i, g in pairs(p) do
      if want[i] then capture[want[i]] = g end
    end
  elseif want[1] then
    capture[want[1]] = p
  end
end

local function run(roots, root_grads, retain, create_graph, capture)
  local root_nodes, pending = {}, {}
  for k, r in ipairs(roots) do
    local e, i = edge_of(r)
    if type(e) == "table" then root_nodes[#root_nodes + 1] = e end
    if e ~= nil then send(pending, e, i, root_grads[k], capture, create_graph) end
  end
  local deps = count_deps(root_nodes)
  local ready, queued = {}, {}
  for _, n in ipairs(root_nodes) do
    if deps[n] == 0 and not queued[n] then
      ready[#ready + 1] = n
      queued[n] = true
    end
  end
  local nready = #ready
  while nready > 0 do
    local node = ready[nready]
    ready[nready] = nil
    nready = nready - 1
    local p = pending[node] -- nil: no gradient reached it (all were nil)
    pending[node] = nil
    if capture then capture_at(capture, node, p) end
    check_versions(node)
    local nin = node.nin
    local g1, g2, g3, rest
    if p ~= nil then
      if node.nout then
        rest = table.pack(node.backward(node, table.unpack(p, 1, node.nout)))
      elseif nin <= 3 then
        g1, g2, g3 = node.backward(node, p)
      else
        rest = table.pack(node.backward(node, p))
      end
      if rest then g1, g2, g3 = rest[1], rest[2], rest[3] end
    end
    if not retain then
      local b, n = 2 * nin, node.nsaved or 0
      for k = b + 1, b + 2 * n do node[k] = nil end
      local mt = getmetatable(node)
      if mt and mt.freed then setmetatable(node, mt.freed) else node.freed = true end
    end
    for k = 1, nin do
      local e = node[2 * k - 1]
      if e then
        local g
        if k == 1 then g = g1 elseif k == 2 then g = g2 elseif k == 3 then g = g3
        else g = rest and rest[k] end
        if g then send(pending, e, node[2 * k], g, capture, create_graph) end
        if type(e) == "table" then
          local d = deps[e] - 1
          deps[e] = d
          if d == 0 then
            nready = nready + 1
            ready[nready] = e
          end
        end
      end
    end
    if not retain then
      for k = 1, 2 * nin do node[k] = false end
    end
  end
end

--[[--
Runs backward from `roots` (an array of tensors) seeded with `grads` (one per root).
opts: retain_graph, create_graph; capture: nil to accumulate into leaves' .grad, or an
array of tensors whose gradients are returned (in that order; nil where none reached)
and nothing is accumulated.
--]]
function M.backward(roots, grads, opts, capture_list)
  local retain = opts.retain_graph
  local create_graph = opts.create_graph and true or false
  if retain == nil then retain = create_graph end
  local capture
  if capture_list then
    capture = {nodes = {}}
    for _, t in ipairs(capture_list) do
      local e, i = edge_of(t)
      if type(e) == "table" then
        capture.nodes[e] = capture.nodes[e] or {}
        capture.nodes[e][i] = t
      end
      capture[t] = true
    end
  end
  local before, sinks_before = grad_mode(create_graph), sinks_on
  sinks_on = capture == nil and not create_graph
  local ok, err = pcall(run, roots, grads, retain, create_graph, capture)
  grad_mode(before)
  sinks_on = sinks_before
  if not ok then error(err, 0) end
  if capture_list then
    local out = {}
    for k, t in ipairs(capture_list) do
      local g = capture[t]
      out[k] = g ~= true and g or nil
    end
    return out
  end
end

--- Why a tensor has no gradient path: "<op> is not differentiable" or "does not require grad".
function M.why_no_grad(t)
  local _, _, _, m = ag_info(t)
  if m then return m .. " is not differentiable" end
  return "the tensor does not require grad (it is neither a leaf with requires_grad nor " ..
    "the result of recorded ops on one)"
end

return M
