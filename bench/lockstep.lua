-- bench/lockstep.lua - issue 11's large ops (bench/lockstep_ops.lua: `a + b` broadcasting,
-- `c:add_(b)`, `x:sum(2)`) against PyTorch 1.13 in lockstep (run by
-- bench/lockstep_bench.sh, which starts bench/lockstep_torch.py on two FIFOs).
-- Each round times one batch of each op here, then asks PyTorch for a batch of the same op
-- (the order of the two sides alternates from round to round), so the two batches of a
-- pair run within milliseconds of each other. Why: on this shared machine the speed of a
-- process moves by 3x for 0.1-1 s at a time (another tenant on the core), so two runs
-- seconds apart, or in separate processes, compare the machine's moods; a pair in
-- lockstep sees the same one. The ratio torch / moonopt of each pair, its median over the
-- rounds (target: >= 1, moonopt at least as fast) with its 95 % interval, how many pairs
-- moonopt won, the ratio of the two sides' best batches, and each side's median per call.
-- CPU time on both sides (os.clock, time.process_time). `warm` untimed calls open a batch:
-- after the other ops (and the other process) the operands have left the L3, and the
-- first calls run at memory speed on both sides (`a + b`, calls 1 to 6 after x:sum(2):
-- 364, 237, 125, 98, 95, 94 us here, 471, 229, 128, 102, 99, 95 us in PyTorch), so with
-- one untimed call a batch timed mostly that recovery.
-- usage: lua5.4 bench/lockstep.lua CMD_FIFO RES_FIFO [rounds [batch [warm]]]
-- Environment: OPS (default "add,add_,sum2") the ops to time; LOCKSTEP_OTHER the other
-- side's name in the report (bench/lockstep_bench.sh sets it for its A/A check).
local cmd_path, res_path = arg[1], arg[2]
local rounds, batch = tonumber(arg[3]) or 201, tonumber(arg[4]) or 10
local warm = tonumber(arg[5]) or 5

local ops = {}
for _, op in ipairs(dofile((arg[0]:match("^(.*)/") or ".") .. "/lockstep_ops.lua")) do
  if ("," .. (os.getenv("OPS") or "add,add_,sum2") .. ","):find("," .. op[1] .. ",", 1, true) then
    ops[#ops + 1] = op
  end
end

local function ours(f)
  for _ = 1, warm do f() end
  local t0 = os.clock()
  for _ = 1, batch do f() end
  return (os.clock() - t0) / batch
end

local cmd = assert(io.open(cmd_path, "w")) -- (opened in this order on both sides)
local res = assert(io.open(res_path, "r"))
local function theirs(name)
  cmd:write(name, "\n")
  cmd:flush()
  return assert(tonumber(res:read("l")), "lockstep: no answer from the other side")
end

local function median(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  return s[(#s + 1) // 2]
end

local t_mo, t_other, ratio = {}, {}, {}
for _, op in ipairs(ops) do t_mo[op[1]], t_other[op[1]], ratio[op[1]] = {}, {}, {} end
for r = 1, rounds do
  for _, op in ipairs(ops) do
    local name, f = op[1], op[2]
    local m, t
    if r % 2 == 1 then
      m = ours(f)
      t = theirs(name)
    else
      t = theirs(name)
      m = ours(f)
    end
    t_mo[name][r], t_other[name][r], ratio[name][r] = m, t, t / m
  end
end
cmd:write("quit\n")
cmd:close()
res:close()

-- The median's 95 % interval without assuming a distribution: the order statistics whose
-- ranks sit 1.96 standard deviations of a fair coin's count either side of the middle.
local function interval(xs)
  local s = table.move(xs, 1, #xs, 1, {})
  table.sort(s)
  local half = 1.96 * math.sqrt(#s) / 2
  local lo = math.max(1, math.floor(#s / 2 - half))
  local hi = math.min(#s, math.ceil(#s / 2 + 1 + half))
  return s[lo], s[hi]
end

local function minimum(xs)
  local m = math.huge
  for _, v in ipairs(xs) do m = math.min(m, v) end
  return m
end

local other = os.getenv("LOCKSTEP_OTHER") or "torch"
for _, op in ipairs(ops) do
  local name = op[1]
  local q = median(ratio[name])
  local lo, hi = interval(ratio[name])
  local wins = 0
  for _, v in ipairs(ratio[name]) do if v > 1 then wins = wins + 1 end end
  print(string.format("%-5s moonopt %.1f us, %s %.1f us per call (medians); %s / moonopt "
    .. "per pair: median %.2f (95%% %.2f-%.2f) over %d pairs, moonopt faster in %d; "
    .. "best / best %.2f%s", name, median(t_mo[name]) * 1e6, other,
    median(t_other[name]) * 1e6, other, q, lo, hi, #ratio[name], wins,
    minimum(t_other[name]) / minimum(t_mo[name]),
    (name == "add_" or other ~= "torch") and ""
      or (q >= 1 and " (target >= 1: met)" or " (target >= 1: MISSED)")))
end
