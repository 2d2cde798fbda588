--- moonopt.json: the JSON that checkpoints keep in their metadata (small, exact, strict).
--
--   local json = require "moonopt.json"
--   local text = json.encode({step = 3, lr = 0.1, betas = {0.9, 0.999}})
--   local value = json.decode(text)
--
-- Made for exact round trips of Lua values, and readable by Python's json module:
--   * integers are written as integers (3), floats always with a '.' or an exponent
--     (3.0, 0.1, 1e+300) in the shortest form that reads back to the same double, so
--     math.type survives; inf, -inf and nan are written Infinity, -Infinity and NaN
--     (what Python's json writes and reads);
--   * strings must be UTF-8 (a JSON text is); they may hold any byte value, NUL too;
--   * a table whose keys are exactly 1..n is an array, one whose keys are all strings
--     an object (keys sorted, so equal tables give equal text); any other table (sparse
--     or mixed keys, float or boolean keys) is {"__pairs__": [[key, value], ...]};
--   * with opts.tensor, a tensor is written {"__tensor__": opts.tensor(t, path)} and
--     decode's opts.tensor(name) turns such an object back into a tensor;
--   * cycles, functions, userdata and nesting deeper than 100 levels are errors
--     naming the place ("extra.a.b[2]: cannot store a function").
-- Errors are raised without a position (level 0) so callers can prefix their own name.
local json = {}

local MAX_DEPTH = 100

local fmt, concat, sort = string.format, table.concat, table.sort
local mtype, huge = math.type, math.huge

-- ---------------------------------------------------------------------------
-- encoding

local escapes = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
                 ['\b'] = '\\b', ['\f'] = '\\f'}

local function escape_char(c)
  return escapes[c] or fmt("\\u%04x", c:byte())
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', escape_char) .. '"'
end

--- The shortest of %.15g, %.16g, %.17g that reads back to x (always one of them does).
local function float_text(x)
  if x ~= x then return "NaN" end
  if x == huge then return "Infinity" end
  if x == -huge then return "-Infinity" end
  local s
  for _, digits in ipairs{"%.15g", "%.16g", "%.17g"} do
    s = fmt(digits, x)
    if tonumber(s) == x then break end
  end
  -- a float must not read back as an integer
  if s:find("^%-?%d+$") then s = s .. ".0" end
  return s
end
json.float_text = float_text

local function path_join(path, k)
  if mtype(k) == "integer" then return fmt("%s[%d]", path, k) end
  if type(k) == "string" and k:find("^[%a_][%w_]*$") then
    return path == "" and k or (path .. "." .. k)
  end
  return fmt("%s[%s]", path, type(k) == "string" and fmt("%q", k) or tostring(k))
end

local function fail(path, msg)
  error((path == "" and "" or (path .. ": ")) .. msg, 0)
end

-- How a table is written: "array" (keys 1..n), "object" (string keys) or "pairs".
local function table_kind(t)
  local count, all_strings = 0, true
  for k in pairs(t) do
    count = count + 1
    if type(k) ~= "string" then all_strings = false end
  end
  if count == 0 then return "object", 0 end
  if all_strings then
    -- a lone key that decode would read as a marker
    if count == 1 and (t.__tensor__ ~= nil or t.__pairs__ ~= nil) then return "pairs", count end
    return "object", count
  end
  if #t == count then
    for i = 1, count do
      if t[i] == nil then return "pairs", count end
    end
    return "array", count
  end
  return "pairs", count
end

-- Order of keys in pairs form: numbers (by value), then strings, then booleans.
local key_rank = {number = 1, string = 2, boolean = 3}
local function key_less(a, b)
  local ra, rb = key_rank[type(a)], key_rank[type(b)]
  if ra ~= rb then return ra < rb end
  if type(a) == "boolean" then return (not a) and b end
  return a < b
end

local encode_value

local function encode_table(v, out, path, depth, opts, active)
  if active[v] then fail(path, "the table contains itself (a cycle)") end
  if depth > MAX_DEPTH then fail(path, "nested deeper than " .. MAX_DEPTH .. " levels") end
  active[v] = true
  local kind, count = table_kind(v)
  if kind == "array" then
    out[#out + 1] = "["
    for i = 1, count do
      if i > 1 then out[#out + 1] = "," end
      encode_value(v[i], out, path_join(path, i), depth + 1, opts, active)
    end
    out[#out + 1] = "]"
  elseif kind == "object" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      local p = path_join(path, k)
      if not utf8.len(k) then fail(p, "the key is not valid UTF-8") end
      out[#out + 1] = quote(k)
      out[#out + 1] = ":"
      encode_value(v[k], out, p, depth + 1, opts, active)
    end
    out[#out + 1] = "}"
  else
    local keys = {}
    for k in pairs(v) do
      local tk = type(k)
      if tk ~= "number" and tk ~= "string" and tk ~= "boolean" then
        fail(path, "cannot store a table with a " .. tk .. " key")
      end
      keys[#keys + 1] = k
    end
    sort(keys, key_less)
    out[#out + 1] = '{"__pairs__":['
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      local p = path_join(path, k)
      out[#out + 1] = "["
      encode_value(k, out, p, depth + 1, opts, active)
      out[#out + 1] = ","
      encode_value(v[k], out, p, depth + 1, opts, active)
      out[#out + 1] = "]"
    end
    out[#out + 1] = "]}"
  end
  active[v] = nil
end

function encode_value(v, out, path, depth, opts, active)
  local tv = type(v)
  if tv == "nil" then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then
    out[#out + 1] = mtype(v) == "integer" and fmt("%d", v) or float_text(v)
  elseif tv == "string" then
    if not utf8.len(v) then fail(path, "the string is not valid UTF-8") end
    out[#out + 1] = quote(v)
  elseif opts.is_tensor and opts.is_tensor(v) then
    if not opts.tensor then fail(path, "cannot store a tensor here") end
    local name = opts.tensor(v, path)
    out[#out + 1] = '{"__tensor__":' .. quote(name) .. "}"
  elseif tv == "table" then
    encode_table(v, out, path, depth, opts, active)
  else
    fail(path, "cannot store a " .. (tv == "userdata" and "userdata value" or tv))
  end
end

--- json.encode(value [, {is_tensor = f, tensor = f(t, path) -> name, path = "root"}]) -> string
function json.encode(value, opts)
  opts = opts or {}
  local out = {}
  encode_value(value, out, opts.path or "", 1, opts, {})
  return concat(out)
end

-- ---------------------------------------------------------------------------
-- decoding

local function decode_fail(_, pos, msg)
  error(fmt("JSON error at byte %d: %s", pos, msg), 0)
end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local decode_value

local function decode_string(s, pos)
  -- pos is at the opening quote
  local parts, p = {}, pos + 1
  while true do
    local q = s:find('["\\%c]', p)
    if not q then decode_fail(s, pos, "unterminated string") end
    parts[#parts + 1] = s:sub(p, q - 1)
    local c = s:sub(q, q)
    if c == '"' then return concat(parts), q + 1 end
    if c ~= "\\" then decode_fail(s, q, "control character in a string") end
    local e = s:sub(q + 1, q + 1)
    local simple = ({['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r',
                     t = '\t'})[e]
    if simple then
      parts[#parts + 1] = simple
      p = q + 2
    elseif e == "u" then
      local h = s:match("^%x%x%x%x", q + 2)
      if not h then decode_fail(s, q, "bad \\u escape") end
      local cp = tonumber(h, 16)
      p = q + 6
      if cp >= 0xDC00 and cp <= 0xDFFF then decode_fail(s, q, "unpaired surrogate") end
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:match("^\\u(%x%x%x%x)", p)
        lo = lo and tonumber(lo, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then decode_fail(s, q, "unpaired surrogate") end
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
        p = p + 6
      end
      parts[#parts + 1] = utf8.char(cp)
    else
      decode_fail(s, q, "bad escape in a string")
    end
  end
end

local function decode_number(s, pos)
  local int = s:match("^-?0", pos) or s:match("^-?[1-9]%d*", pos)
  if not int then
    if s:find("^NaN", pos) then return 0 / 0, pos + 3 end
    if s:find("^Infinity", pos) then return huge, pos + 8 end
    if s:find("^%-Infinity", pos) then return -huge, pos + 9 end
    decode_fail(s, pos, "unexpected character " .. fmt("%q", s:sub(pos, pos)))
  end
  local p = pos + #int
  local frac = s:match("^%.%d+", p)
  if frac then p = p + #frac end
  local exp = s:match("^[eE][+-]?%d+", p)
  if exp then p = p + #exp end
  if s:find("^[%.eE%d]", p) then decode_fail(s, p, "malformed number") end
  local text = s:sub(pos, p - 1)
  local v = tonumber(text)
  if (frac or exp) and mtype(v) == "integer" then v = v + 0.0 end
  return v, p
end

local function decode_table(s, pos, depth, opts)
  if depth > MAX_DEPTH then decode_fail(s, pos, "nested deeper than " .. MAX_DEPTH .. " levels") end
  local open = s:sub(pos, pos)
  local t = {}
  local p = skip(s, pos + 1)
  if open == "[" then
    local n = 0
    if s:sub(p, p) == "]" then return t, p + 1 end
    while true do
      local v
      v, p = decode_value(s, p, depth + 1, opts)
      n = n + 1
      t[n] = v
      p = skip(s, p)
      local c = s:sub(p, p)
      if c == "]" then return t, p + 1 end
      if c ~= "," then decode_fail(s, p, "expected ',' or ']'") end
      p = skip(s, p + 1)
    end
  end
  local count, only
  count = 0
  if s:sub(p, p) ~= "}" then
    while true do
      if s:sub(p, p) ~= '"' then decode_fail(s, p, "expected a string key") end
      local k
      k, p = decode_string(s, p)
      p = skip(s, p)
      if s:sub(p, p) ~= ":" then decode_fail(s, p, "expected ':'") end
      local v
      v, p = decode_value(s, skip(s, p + 1), depth + 1, opts)
      if t[k] ~= nil then decode_fail(s, p, fmt("duplicate key %q", k)) end
      t[k] = v
      count, only = count + 1, k
      p = skip(s, p)
      local c = s:sub(p, p)
      if c == "}" then break end
      if c ~= "," then decode_fail(s, p, "expected ',' or '}'") end
      p = skip(s, p + 1)
    end
  end
  p = p + 1
  if count == 1 and only == "__tensor__" and type(t.__tensor__) == "string" then
    if not opts.tensor then decode_fail(s, pos, "a tensor reference where no tensors are expected") end
    return opts.tensor(t.__tensor__), p
  end
  if count == 1 and only == "__pairs__" and type(t.__pairs__) == "table" then
    local r = {}
    for i, kv in ipairs(t.__pairs__) do
      local k, v = kv[1], kv[2]
      if type(kv) ~= "table" or #kv ~= 2 or k == nil or k ~= k or type(k) == "table" then
        decode_fail(s, pos, fmt("__pairs__ entry %d is not a [key, value] pair", i))
      end
      if r[k] ~= nil then decode_fail(s, pos, "duplicate key " .. tostring(k) .. " in __pairs__") end
      r[k] = v
    end
    return r, p
  end
  return t, p
end

function decode_value(s, pos, depth, opts)
  local c = s:sub(pos, pos)
  if c == "{" or c == "[" then return decode_table(s, pos, depth, opts) end
  if c == '"' then return decode_string(s, pos) end
  if s:find("^true", pos) then return true, pos + 4 end
  if s:find("^false", pos) then return false, pos + 5 end
  if s:find("^null", pos) then return nil, pos + 4 end
  if c == "" then decode_fail(s, pos, "unexpected end") end
  return decode_number(s, pos)
end

--- json.decode(text [, {tensor = f(name) -> tensor}]) -> value
-- Raises "JSON error at byte N: ..." for anything that is not one JSON value
-- (surrounding blanks allowed).
function json.decode(s, opts)
  if type(s) ~= "string" then error("JSON error: expected a string, got " .. type(s), 0) end
  if not utf8.len(s) then error("JSON error: the text is not valid UTF-8", 0) end
  local v, p = decode_value(s, skip(s, 1), 1, opts or {})
  p = skip(s, p)
  if p <= #s then decode_fail(s, p, "unexpected text after the value") end
  return v
end

return json
