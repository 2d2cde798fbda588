--- examples/seed/common.lua - what every seed script shares: the command line, the output
-- directory, saving a figure, and printing aligned tables.
--
--   local common = require "seed.common"        (LUA_PATH must hold "examples/?.lua")
--   local o = common.args("bias_correction", arg, {steps = {"int", 10000}}, usage)
--   common.save(mo.plot.line{...}, o.out, "bias_correction.svg")
--
-- Every script accepts --out DIR (default out/seed), --quick (a smaller run, for tests and
-- smoke checks), --seed N and --help; the rest are its own options.
local M = {}

--- Prints "<name>: <msg>" on stderr and exits with status 1.
function M.die(name, msg)
  io.stderr:write(name, ": ", msg, "\n")
  os.exit(1)
end

local COMMON = {
  out = {"string", "out/seed", "directory for the SVG figures"},
  quick = {"flag", false, "a smaller run (seconds)"},
  seed = {"int", 42, "seed of every random draw"},
  help = {"flag", false, "print this text"},
}

local function usage_text(name, spec)
  local names = {}
  for k in pairs(spec) do names[#names + 1] = k end
  table.sort(names)
  local lines = {("usage: lua5.4 examples/seed/%s.lua [options]"):format(name)}
  for _, k in ipairs(names) do
    local kind, default, what = spec[k][1], spec[k][2], spec[k][3] or ""
    local left = kind == "flag" and ("--" .. k) or ("--" .. k .. " " .. (kind == "string" and "S" or "N"))
    local dflt = kind == "flag" and "" or (" (default " .. tostring(default) .. ")")
    lines[#lines + 1] = ("  %-18s %s%s"):format(left, what, dflt)
  end
  return table.concat(lines, "\n") .. "\n"
end

--- Parses `argv` (a script's `arg`): `--name value` pairs and `--flag`s.
-- spec: name -> {kind, default, help} with kind "int", "number", "string" or "flag"; the
-- common options (out, quick, seed, help) are added. Bad arguments exit with a message.
-- Returns a table of the values and the set of the names given on the command line.
function M.args(name, argv, spec)
  local all = {}
  for k, v in pairs(COMMON) do all[k] = v end
  for k, v in pairs(spec or {}) do all[k] = v end
  local o, given = {}, {}
  for k, v in pairs(all) do o[k] = v[2] end
  local i = 1
  while i <= #argv do
    local key = argv[i]:match("^%-%-([%w_]+)$")
    local s = key and all[key]
    if not s then M.die(name, "unknown argument '" .. argv[i] .. "'\n" .. usage_text(name, all)) end
    given[key] = true
    if s[1] == "flag" then
      o[key] = true
      i = i + 1
    else
      local v = argv[i + 1]
      if v == nil then M.die(name, "--" .. key .. " needs a value") end
      if s[1] ~= "string" then
        local num = tonumber(v)
        if num == nil or num ~= num or (s[1] == "int" and math.tointeger(num) == nil) then
          M.die(name, ("--%s must be %s, got '%s'"):format(
            key, s[1] == "int" and "an integer" or "a number", v))
        end
        v = s[1] == "int" and math.tointeger(num) or num
      end
      o[key] = v
      i = i + 2
    end
  end
  if o.help then
    io.stdout:write(usage_text(name, all))
    os.exit(0)
  end
  return o, given
end

--- Creates `dir` (and its parents) unless it exists.
function M.ensure_dir(dir)
  if os.rename(dir, dir) then return end
  local quoted = "'" .. dir:gsub("'", "'\\''") .. "'"
  if not os.execute("mkdir -p " .. quoted) then error("cannot create directory " .. dir, 2) end
end

--- Writes plot `p` to dir/file (creating dir) and prints the path.
function M.save(p, dir, file)
  M.ensure_dir(dir)
  local path = dir .. "/" .. file
  p:save(path)
  print("wrote " .. path)
  return path
end

--- Prints a table: `header` a list of column titles, `rows` a list of lists of strings.
-- Columns are right-aligned to their widest cell.
function M.print_table(header, rows)
  local width = {}
  -- widths in characters, not bytes: cells may hold "±"
  local function len(c) return utf8.len(c) or #c end
  for j, h in ipairs(header) do width[j] = len(h) end
  for _, r in ipairs(rows) do
    for j, c in ipairs(r) do width[j] = math.max(width[j] or 0, len(c)) end
  end
  local function line(r)
    local cells = {}
    for j = 1, #header do
      local c = r[j] or ""
      cells[j] = string.rep(" ", width[j] - len(c)) .. c
    end
    print(table.concat(cells, "  "))
  end
  line(header)
  local rule = {}
  for j = 1, #header do rule[j] = string.rep("-", width[j]) end
  print(table.concat(rule, "  "))
  for _, r in ipairs(rows) do line(r) end
end

--- A number list of the values of a 1-d or n-d tensor (row-major).
function M.values(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, x in ipairs(v) do walk(x) end
    else
      out[#out + 1] = v
    end
  end
  walk(t:totable())
  return out
end

--- The seeds of a multi-seed run: --seeds N consecutive seeds from --seed on.
function M.seed_list(o)
  local seeds = {}
  for k = 1, o.seeds do seeds[k] = o.seed + k - 1 end
  return seeds
end

--- Mean and sample standard deviation (n - 1 in the denominator; 0 for one value) of a list.
function M.mean_std(list)
  local n, s = #list, 0
  for _, v in ipairs(list) do s = s + v end
  local mean = s / n
  if n < 2 then return mean, 0 end
  local ss = 0
  for _, v in ipairs(list) do ss = ss + (v - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1))
end

--- "mean ± std" of a list with the given format for both numbers (default "%.4f").
function M.pm(list, fmt)
  fmt = fmt or "%.4f"
  local m, s = M.mean_std(list)
  return (fmt .. " ± " .. fmt):format(m, s)
end

--- "BLAS cblas, kernel Haswell, 1 thread(s)": what a training result's last bits depend on.
function M.blas_line()
  local mo = require "moonopt"
  return ("BLAS %s, kernel %s, %d thread(s)"):format(mo.blas_backend, mo.blas_kernel,
                                                     mo.get_num_threads())
end

--- Median of a list of numbers (NaN for an empty list).
function M.median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 / 0 end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

return M
