-- bench/lockstep_ops.lua - the ops bench/lockstep.lua times and bench/lockstep_partner.lua
-- runs on the other side of its A/A check, defined once so the two sides of that check
-- run the same code on the same data. Loaded with dofile; returns a list of
-- {name, fn} in timing order:
--   add    `a + b`, a {1024, 1024} + b {1024} float32, the result dropped at once;
--   add_   `c:add_(b)`, the same add in place;
--   sum2   `x:sum(2)` on a {4096, 1024} float32 tensor.
-- (bench/lockstep_torch.py is PyTorch's copy of the same list.)
local mo = require "moonopt"

mo.manual_seed(1)
local a, b = mo.rand({1024, 1024}), mo.rand({1024})
local c = a:clone()
local x = mo.rand({4096, 1024})
return {
  {"add", function() local _ = a + b end},
  {"add_", function() c:add_(b) end},
  {"sum2", function() local _ = x:sum(2) end},
}
