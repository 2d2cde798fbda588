--- mo.progress: the training progress display of mo.train.fit.
--
--   local bar = mo.progress.new{total = 469, epoch = 1, epochs = 10}
--   for i = 1, 469 do ...; bar:update(i, {loss = l, lr = lr}) end
--   bar:finish("loss 0.4123  acc 0.8512")
--
-- On a terminal (TERM set and not "dumb", and stdout a tty: isatty(1) in C) one
-- live line is redrawn with "\r" at most `interval` seconds apart:
--   epoch 3/10 [#########...........]  45%  211/469  812.4 batch/s  ETA 0:00:03  loss 0.4321  lr 9.8e-04
-- It never wraps: it is at most `columns - 1` characters long (the terminal's width, see
-- progress.terminal_width), the bar shrinking first, then the end of the line cut.
-- Otherwise (a pipe, a file, CI logs) plain lines: one per epoch, plus one every
-- `every` batches when `every` is set, so logs stay readable.
local core = require "moonopt.core"
local apierror = require "moonopt.apierror"

local progress = {}

local Bar = {}
Bar.__index = Bar

--- Whether stdout is a live terminal.
function progress.is_terminal()
  local term = os.getenv("TERM")
  if term == nil or term == "" or term == "dumb" then return false end
  return core.isatty(1)
end

--- The terminal's width in columns: $COLUMNS when it is a positive integer, else what
-- `tput cols` prints, else 80. getenv and run (a command -> its output or nil) can be
-- replaced (tests).
function progress.terminal_width(getenv, run)
  getenv = getenv or os.getenv
  run = run or function(cmd)
    local p = io.popen(cmd)
    if not p then return nil end
    local out = p:read("a")
    p:close()
    return out
  end
  for _, text in ipairs{getenv("COLUMNS") or "", run("tput cols 2>/dev/null") or ""} do
    local n = tonumber(text:match("^%s*(%d+)%s*$"))
    if n and n > 0 then return n end
  end
  return 80
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

local new_opts = {total = true, epoch = true, epochs = true, live = true, every = true, width = true,
                  columns = true, interval = true, write = true, clock = true}

--- progress.new{total =, epoch =, epochs =, live = auto, every = nil, width = 20,
--               columns = terminal width, interval = 0.1,
--               write = function(s) io.stdout:write(s) end, clock = mo.clock}
local function new(opts)
  opts = apierror.check_options("progress.new", opts, new_opts)
  local live = opts.live
  if live == nil then live = progress.is_terminal() end
  local columns = opts.columns
  if columns ~= nil then columns = apierror.check_int("progress.new", "columns", columns, 1)
  elseif live then columns = progress.terminal_width() end
  local self = setmetatable({
    total = apierror.check_int("progress.new", "total", opts.total or 0, 0),
    epoch = opts.epoch,
    epochs = opts.epochs,
    live = live,
    every = opts.every and apierror.check_int("progress.new", "every", opts.every, 1),
    width = apierror.check_int("progress.new", "width", opts.width or 20, 0),
    columns = columns,
    interval = opts.interval or 0.1,
    write = opts.write or function(s) io.stdout:write(s) io.stdout:flush() end,
    clock = opts.clock or core.clock,
    last_draw = -math.huge,
    last_len = 0,
  }, Bar)
  self.start = self.clock()
  return self
end
progress.new = apierror.api(new)

function Bar:prefix()
  if self.epoch and self.epochs then return string.format("epoch %d/%d", self.epoch, self.epochs) end
  if self.epoch then return string.format("epoch %d", self.epoch) end
  return "progress"
end

--- The live line for `done` of `total` batches (without "\r"), at most columns - 1
-- characters when `columns` is set: the bar gives up its width first, then the line's end
-- is cut.
function Bar:line(done, stats, now)
  local total = self.total
  local frac = total > 0 and math.min(done / total, 1) or 1
  local elapsed = (now or self.clock()) - self.start
  local rate = elapsed > 0 and done / elapsed or 0
  local eta = rate > 0 and (total - done) / rate or math.huge
  local st = stats_str(stats)
  local rest = string.format("] %3d%%  %d/%d  %.1f batch/s  ETA %s%s", math.floor(frac * 100 + 0.5), done, total,
    rate, clock_str(eta), st ~= "" and ("  " .. st) or "")
  local head = self:prefix() .. " ["
  local width = self.width
  local room = self.columns and self.columns - 1 or math.huge
  if #head + width + #rest > room then width = math.max(0, room - #head - #rest) end
  local filled = math.floor(frac * width + 0.5)
  local s = head .. string.rep("#", filled) .. string.rep(".", width - filled) .. rest
  if #s > room then s = s:sub(1, room) end
  return s
end

--- Called after batch `done`; draws at most every `interval` seconds (live) or every
-- `every` batches (plain lines).
function Bar:update(done, stats)
  if type(done) ~= "number" then apierror.fail("bar:update: done must be a number, got %s", apierror.show(done)) end
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

for _, name in ipairs{"update", "finish", "line"} do Bar[name] = apierror.api(Bar[name]) end

return progress
