--- examples/cli.lua - the command line of the main-job examples (fashion_mnist.lua,
-- fashion_cnn.lua): --name value options checked by type, a usage text, --threads.
--
--   local cli = dofile((arg[0]:match("^(.*[/\\])") or "") .. "cli.lua")
--   local opts = cli.parse("fashion_cnn", arg, spec, defaults, usage)
--
-- spec maps an option's name to "int" (a non-negative integer), "number", "string" or
-- "flag"; defaults gives the starting values. --help prints usage and exits; a bad
-- argument prints a message naming it and exits with status 1.
local mo = require "moonopt"

local cli = {}

local function die(prog, msg)
  io.stderr:write(prog, ": ", msg, "\n")
  os.exit(1)
end
cli.die = die

-- The value of option `name` of `kind` from its text v.
local function convert(prog, name, kind, v)
  if kind == "string" then return v end
  local num = tonumber(v)
  if not num or (kind == "int" and (num ~= math.floor(num) or num < 0)) or num ~= num then
    die(prog, ("--%s must be %s, got '%s'"):format(name, kind == "int" and "a non-negative integer" or "a number", v))
  end
  return kind == "int" and math.tointeger(num) or num
end

--- The options of argv (a table of strings), checked against spec; the options every main
-- job shares (epochs >= 1, batch >= 1, lr > 0) are checked when present; --threads N sizes
-- moonopt's thread pool.
function cli.parse(prog, argv, spec, defaults, usage)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  local i = 1
  while i <= #argv do
    local name = argv[i]:match("^%-%-([%w_%-]+)$")
    local kind = name and spec[name]
    if not kind then die(prog, "unknown argument '" .. argv[i] .. "'\n" .. usage) end
    if kind == "flag" then
      o[name], i = true, i + 1
    else
      if argv[i + 1] == nil then die(prog, "--" .. name .. " needs a value") end
      o[name], i = convert(prog, name, kind, argv[i + 1]), i + 2
    end
  end
  if o.help then io.stdout:write(usage) os.exit(0) end
  if o.epochs and o.epochs < 1 then die(prog, "--epochs must be at least 1") end
  if o.batch and o.batch < 1 then die(prog, "--batch must be at least 1") end
  if o.lr and o.lr <= 0 then die(prog, "--lr must be positive") end
  if o.threads then cli.set_threads(prog, o.threads) end
  return o
end

--- Sizes moonopt's thread pool (the kernels and the matrix products, which it cuts into
-- single-threaded BLAS calls: results are the same bits at any size).
function cli.set_threads(prog, n)
  if n < 1 then die(prog, "--threads must be at least 1") end
  mo.set_num_threads(n)
end

--- Median of a list of numbers (NaN for an empty list).
function cli.median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 / 0 end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

return cli
