-- bench/lockstep_partner.lua - moonopt in PyTorch's place for bench/lockstep.lua: the A/A
-- check of the lockstep method (`SELF=1 sh bench/lockstep_bench.sh`). The same ops, the
-- same protocol as bench/lockstep_torch.py (an op name per line in, the CPU seconds per
-- call of one batch out, "quit" ends it). Both sides then run the same code, so every
-- ratio should come out 1.00; how far a run strays is the method's own error.
-- usage: lua5.4 bench/lockstep_partner.lua CMD_FIFO RES_FIFO batch warm
local cmd = assert(io.open(arg[1], "r")) -- (opened in this order on both sides)
local res = assert(io.open(arg[2], "w"))
local batch, warm = assert(tonumber(arg[3])), assert(tonumber(arg[4]))

local ops = {}
for _, op in ipairs(dofile((arg[0]:match("^(.*)/") or ".") .. "/lockstep_ops.lua")) do
  ops[op[1]] = op[2]
end

for name in cmd:lines() do
  if name == "quit" then break end
  local f = assert(ops[name], "lockstep_partner: unknown op")
  for _ = 1, warm do f() end
  local t0 = os.clock()
  for _ = 1, batch do f() end
  res:write(string.format("%.9f\n", (os.clock() - t0) / batch))
  res:flush()
end
