--- mo.progress: the training progress display of mo.train.fit.
--
--   local bar = mo.progress.new{total = 469, epoch = 1, epochs = 10}
--   for i = 1, 469 do ...; bar:update(i, {loss = l, lr = lr}) end
--   bar:finish("loss 0.4123  acc 0.8512")
--
-- On a terminal (TERM set and not "dumb", and stdout a tty: isatty(1) in C) one
-- live line is redrawn with "\r" at most `interval` seconds apart:
--   epoch 3/10 [#########...........]  45%  211/469  812.4 batch/s  ETA 0:00:03  loss 0.4321  lr 9.8e-04
-- Otherwise (a pipe, a file, CI logs) plain lines: one per epoch, plus one every
-- `every` batches when `every` is set, so logs stay readable.
local core = require "moonopt.core"

local progress = {}

local Bar = {}
Bar.__index = Bar

--- Whether stdout is a live terminal.
function progress.is_terminal()
  local term = os.getenv("TERM")
  if term == nil or term == "" or term == "dumb" then return false end
  return core.isatty(1)
end

-- "0:03:07" (or "--:--" when unknown).
local function clock_str(s)
  if s ~= s or s == math.huge or s < 0 then return "--:--" end
  s = math.floor(s + 0.5)
  return string.format("%d:%02d:%02d", s // 3600, s // 60 % 60, s % 60)
end
progress.clock_str = clock_str

-- "loss 0.4321  lr 9.8e-04" from the known fields of `stats`, in a fixed order.
local function stats_str(stats)
  if not stats then return "" end
  local parts = {}
  if stats.loss then parts[#parts + 1] = string.format("loss %.4f", stats.loss) end
  if stats.acc then parts[#parts + 1] = string.format("acc %.4f", stats.acc) end
  if stats.lr then parts[#parts + 1] = string.format("lr %.2e", stats.lr) end
  return table.concat(parts, "  ")
end
progress.stats_str = stats_str

--- progress.new{total =, epoch =, epochs =, live = auto, every = nil, width = 20,
--               interval = 0.1, write = function(s) io.stdout:write(s) end, clock = mo.clock}
function progress.new(opts)
  opts = opts or {}
  local live = opts.live
  if live == nil then live = progress.is_terminal() end
  local self = setmetatable({
    total = opts.total or 0,
    epoch = opts.epoch,
    epochs = opts.epochs,
    live = live,
    every = opts.every,
    width = opts.width or 20,
    interval = opts.interval or 0.1,
    write = opts.write or function(s) io.stdout:write(s) io.stdout:flush() end,
    clock = opts.clock or core.clock,
    last_draw = -math.huge,
    last_len = 0,
  }, Bar)
  self.start = self.clock()
  return self
end

function Bar:prefix()
  if self.epoch and self.epochs then return string.format("epoch %d/%d", self.epoch, self.epochs) end
  if self.epoch then return string.format("epoch %d", self.epoch) end
  return "progress"
end

--- The live line for `done` of `total` batches (without "\r").
function Bar:line(done, stats, now)
  local total = self.total
  local frac = total > 0 and math.min(done / total, 1) or 1
  local filled = math.floor(frac * self.width + 0.5)
  local elapsed = (now or self.clock()) - self.start
  local rate = elapsed > 0 and done / elapsed or 0
  local eta = rate > 0 and (total - done) / rate or math.huge
  local s = string.format("%s [%s%s] %3d%%  %d/%d  %.1f batch/s  ETA %s", self:prefix(),
    string.rep("#", filled), string.rep(".", self.width - filled), math.floor(frac * 100 + 0.5), done, total,
    rate, clock_str(eta))
  local st = stats_str(stats)
  if st ~= "" then s = s .. "  " .. st end
  return s
end

--- Called after batch `done`; draws at most every `interval` seconds (live) or every
-- `every` batches (plain lines).
function Bar:update(done, stats)
  if self.live then
    local now = self.clock()
    if now - self.last_draw < self.interval and done < self.total then return end
    self.last_draw = now
    local s = self:line(done, stats, now)
    -- pad over the rest of a longer previous line
    local pad = self.last_len > #s and string.rep(" ", self.last_len - #s) or ""
    self.last_len = #s
    self.write("\r" .. s .. pad)
  elseif self.every and done % self.every == 0 then
    local elapsed = self.clock() - self.start
    local st = stats_str(stats)
    self.write(string.format("%s  batch %d/%d  %.1f batch/s%s\n", self:prefix(), done, self.total,
      elapsed > 0 and done / elapsed or 0, st ~= "" and ("  " .. st) or ""))
  end
end

--- Ends the epoch's display with one summary line: "epoch 3/10  <summary>  12.3 s".
function Bar:finish(summary)
  local elapsed = self.clock() - self.start
  local s = string.format("%s  %s%s%.1f s", self:prefix(), summary or "", (summary and summary ~= "") and "  " or "",
    elapsed)
  if self.live then
    local pad = self.last_len > #s and string.rep(" ", self.last_len - #s) or ""
    self.write("\r" .. s .. pad .. "\n")
  else
    self.write(s .. "\n")
  end
  self.last_len = 0
end

return progress
