-- moonopt.plot - SVG line charts and heatmaps in plain Lua, no dependency.
--
--   mo.plot.line{title=, xlabel=, ylabel=, series = {{name=, x=, y=}, ...}, logx=, logy=, ...}
--   mo.plot.heatmap{title=, xlabel=, ylabel=, xticks=, yticks=, values = {{...}, ...}, ...}
--
-- Both return an object with :svg() -> string and :save(path). The output is a pure function
-- of the input: no clocks, no random ids, table traversal only in list order. The options and
-- the document structure (element classes, what is drawn as <path>/<rect>) are in docs/plot.md.
local M = {}

local floor, ceil, abs, huge = math.floor, math.ceil, math.abs, math.huge
local fmt, concat = string.format, table.concat

local FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
local MINUS = "\u{2212}"
-- Tableau 10 (matplotlib's default cycle): distinct, and readable when printed in grey
local COLORS = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
local DASHES = {solid = nil, dashed = "6 4", dotted = "1.5 3", dashdot = "6 3 1.5 3"}
local DASH_CYCLE = {"solid", "dashed", "dotted", "dashdot"}
-- colour maps as evenly spaced anchors, linearly interpolated
local CMAPS = {
  viridis = {"#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c",
             "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725"},
  magma = {"#000004", "#140e36", "#3b0f70", "#641a80", "#8c2981", "#b73779",
           "#de4968", "#f7705c", "#fe9f6d", "#fecf92", "#fcfdbf"},
}
local MISSING_FILL = "#d9d9d9"          -- heatmap cells holding NaN/inf (or <= 0 on logcolor)

-------------------------------------------------------------------------------------------
-- Errors: raised as tagged tables inside, re-raised at the caller's line by `api`.

local core = require "moonopt.core"
local apierror = require "moonopt.apierror"
local fail, api, show = apierror.fail, apierror.api, apierror.show

local function finite(v)
  return v == v and v ~= huge and v ~= -huge
end

-------------------------------------------------------------------------------------------
-- Text and numbers in the document.

local ESCAPES = {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;"}

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", ESCAPES))
end

local function trim_zeros(s)
  if s:find(".", 1, true) then s = s:gsub("0+$", ""):gsub("%.$", "") end
  return s
end

-- a coordinate: two decimals are finer than any screen or printer needs
local function c(v)
  local s = trim_zeros(fmt("%.2f", v))
  if s == "-0" then s = "0" end
  return s
end

-- a rough width in pixels of text at a font size (no font metrics without a dependency)
local function text_width(s, size)
  return (utf8.len(s) or #s) * size * 0.6
end

local function typographic_minus(s)
  if s:sub(1, 1) == "-" then s = MINUS .. s:sub(2) end
  return s
end

local function decimal_label(v, decimals)
  if v == 0 then return "0" end
  local s = trim_zeros(fmt("%." .. decimals .. "f", v))
  if s == "-0" then return "0" end
  return typographic_minus(s)
end

local SUP_SIZE = 0.72                   -- superscript size relative to the label's

-- "10" with a superscript exponent, as an SVG text body (already escaped)
local function power_label(k, size)
  return fmt('10<tspan dy="%s" font-size="%s">%s</tspan>', c(-size * 0.45), c(size * SUP_SIZE),
    typographic_minus(tostring(k)))
end

-------------------------------------------------------------------------------------------
-- Ticks.

local function log10(v) return math.log(v, 10) end

-- Linear ticks: the smallest step of the form {1, 2, 5} x 10^e giving at most `target`
-- intervals over [lo, hi]; every multiple of the step inside [lo, hi].
local function linear_ticks(lo, hi, target)
  local raw = (hi - lo) / target
  local e = floor(log10(raw))
  local f = raw / 10.0 ^ e
  local m
  if f <= 1 + 1e-9 then m = 1 elseif f <= 2 + 1e-9 then m = 2 elseif f <= 5 + 1e-9 then m = 5
  else m, e = 1, e + 1 end
  local step = m * 10.0 ^ e
  local values = {}
  for k = ceil(lo / step - 1e-9), floor(hi / step + 1e-9) do values[#values + 1] = k * step end
  return values, e
end

-- Labels for linear ticks; very large or very small values share a x10^p written once
-- (the axis "offset" label) instead of repeating long numbers on every tick.
local function linear_labels(values, e, size)
  local big = 0
  for _, v in ipairs(values) do big = math.max(big, abs(v)) end
  local p = big > 0 and floor(log10(big) + 1e-9) or 0
  local labels, offset = {}, nil
  if p >= 6 or p <= -5 then
    local scale = 10.0 ^ p
    for i, v in ipairs(values) do labels[i] = decimal_label(v / scale, math.max(0, p - e)) end
    offset = "\u{00d7}" .. power_label(p, size)
  else
    for i, v in ipairs(values) do labels[i] = decimal_label(v, math.max(0, -e)) end
  end
  return labels, offset
end

-- Log ticks: powers of ten (every k-th one when there are many), with unlabelled minor ticks
-- at 2..9 x 10^k; under two decades, 1-2-5 multiples; under that, linear ticks.
local function log_ticks(lo, hi, target, size)
  local a, b = ceil(log10(lo) - 1e-9), floor(log10(hi) + 1e-9)
  local values, labels, minor = {}, {}, {}
  if b - a + 1 >= 2 then
    local stride = math.max(1, ceil((b - a + 1) / target))
    for k = a, b do
      if (k - a) % stride == 0 then
        values[#values + 1] = 10.0 ^ k
        labels[#labels + 1] = power_label(k, size)
      end
    end
    if stride == 1 and b - a <= 8 then
      for k = a - 1, b do
        for m = 2, 9 do
          local v = m * 10.0 ^ k
          if v >= lo and v <= hi then minor[#minor + 1] = v end
        end
      end
    end
    return values, labels, minor
  end
  for k = floor(log10(lo)), ceil(log10(hi)) do
    for _, m in ipairs{1, 2, 5} do
      local v = m * 10.0 ^ k
      if v >= lo * (1 - 1e-9) and v <= hi * (1 + 1e-9) then
        values[#values + 1] = v
        labels[#labels + 1] = decimal_label(v, math.max(0, -k))
      end
    end
  end
  if #values >= 2 then return values, labels, minor end
  local e
  values, e = linear_ticks(lo, hi, target)
  labels = linear_labels(values, e, size)
  return values, labels, minor
end

-- An axis: data range -> pixel range, linear or log10.
local function axis(lo, hi, p0, p1, logscale)
  local a, b = lo, hi
  if logscale then a, b = log10(lo), log10(hi) end
  local k = (p1 - p0) / (b - a)
  return {
    lo = lo, hi = hi, log = logscale,
    map = function(v)
      if logscale then v = log10(v) end
      return p0 + (v - a) * k
    end,
  }
end

-- The range shown for a set of values: padded by `pad` of the span (in log space on a
-- log axis), a degenerate range widened, an empty one defaulted.
local function auto_range(lo, hi, logscale, pad)
  if lo == nil then
    if logscale then return 1, 10 end
    return 0, 1
  end
  if logscale then
    local a, b = log10(lo), log10(hi)
    if a == b then a, b = a - 0.5, b + 0.5 end
    local d = (b - a) * pad
    return 10.0 ^ (a - d), 10.0 ^ (b + d)
  end
  if lo == hi then
    local d = lo ~= 0 and abs(lo) * 0.1 or 1
    return lo - d, hi + d
  end
  local d = (hi - lo) * pad
  return lo - d, hi + d
end

-------------------------------------------------------------------------------------------
-- Option validation shared by both plot kinds.

local function check_keys(fname, spec, known)
  local unknown
  for k in pairs(spec) do
    if not known[k] and (unknown == nil or tostring(k) < tostring(unknown)) then unknown = k end
  end
  if unknown ~= nil then
    local names = {}
    for k in pairs(known) do names[#names + 1] = k end
    table.sort(names)
    fail("%s: unknown option %s (options: %s)", fname,
      type(unknown) == "string" and ("'" .. unknown .. "'") or show(unknown), concat(names, ", "))
  end
end

local function opt_string(fname, spec, key)
  local v = spec[key]
  if v ~= nil and type(v) ~= "string" and type(v) ~= "number" then
    fail("%s: option '%s' must be a string, got %s", fname, key, show(v))
  end
  return v ~= nil and tostring(v) or nil
end

local function opt_boolean(fname, spec, key, default)
  local v = spec[key]
  if v == nil then return default end
  if type(v) ~= "boolean" then fail("%s: option '%s' must be a boolean, got %s", fname, key, show(v)) end
  return v
end

local function opt_size(fname, spec, key, default)
  local v = spec[key]
  if v == nil then return default end
  if type(v) ~= "number" or not finite(v) or v < 100 or v > 20000 then
    fail("%s: option '%s' must be a number of pixels in [100, 20000], got %s", fname, key, show(v))
  end
  return v
end

-- {lo, hi} with lo < hi (and lo > 0 on a log axis); either end may be nil (automatic)
local function opt_limits(fname, spec, key, logscale)
  local v = spec[key]
  if v == nil then return nil end
  local ok = type(v) == "table"
  local lo, hi
  if ok then
    lo, hi = v[1], v[2]
    for _, x in ipairs{lo or 0, hi or 0} do
      if type(x) ~= "number" or not finite(x) then ok = false end
    end
    if ok and lo and hi and lo >= hi then ok = false end
    if ok and logscale and ((lo and lo <= 0) or (hi and hi <= 0)) then ok = false end
  end
  if not ok then
    fail("%s: option '%s' must be {lo, hi} with finite numbers lo < hi%s, got %s", fname, key,
      logscale and " (both > 0 on a log axis)" or "", show(v))
  end
  return {lo, hi}
end

local function opt_enum(fname, spec, key, values, default)
  local v = spec[key]
  if v == nil then return default end
  for _, x in ipairs(values) do
    if v == x then return v end
  end
  fail("%s: option '%s' must be one of '%s', got %s", fname, key, concat(values, "', '"), show(v))
end

local function opt_color(fname, what, v)
  if v == nil then return nil end
  if type(v) ~= "string" or not (v:match("^#%x%x%x%x%x%x$") or v:match("^#%x%x%x$") or v:match("^%a+$")) then
    fail("%s: %s must be a colour ('#rrggbb', '#rgb' or a name like 'black'), got %s", fname, what, show(v))
  end
  return v
end

-- a copy of a numeric list (NaN and inf allowed: they are skipped when drawing)
local function number_list(fname, what, v)
  if type(v) ~= "table" then fail("%s: %s must be a list of numbers, got %s", fname, what, show(v)) end
  local n, r = #v, {}
  for i = 1, n do
    local x = v[i]
    if type(x) ~= "number" then
      fail("%s: %s[%d] must be a number, got %s", fname, what, i, show(x))
    end
    r[i] = x
  end
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      fail("%s: %s must be a list (keys 1..n), has key %s", fname, what, show(k))
    end
  end
  return r, n
end

-------------------------------------------------------------------------------------------
-- Document pieces shared by both kinds.

local function svg_open(out, w, h)
  out[#out + 1] = '<?xml version="1.0" encoding="UTF-8"?>'
  out[#out + 1] = fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" ' ..
    'font-family="%s" font-size="11">', c(w), c(h), c(w), c(h), FONT)
  out[#out + 1] = fmt('<rect class="background" x="0" y="0" width="%s" height="%s" fill="#ffffff"/>', c(w), c(h))
end

local function text(out, class, x, y, anchor, body, extra)
  out[#out + 1] = fmt('<text class="%s" x="%s" y="%s" text-anchor="%s"%s>%s</text>', class, c(x), c(y), anchor,
    extra or "", body)
end

-- title above, xlabel below, ylabel rotated on the left
local function axis_titles(out, p, box, h)
  if p.title then
    text(out, "title", (box.x0 + box.x1) / 2, 20, "middle", esc(p.title), ' font-size="14"')
  end
  if p.xlabel then
    text(out, "xlabel", (box.x0 + box.x1) / 2, h - 10, "middle", esc(p.xlabel), ' font-size="12"')
  end
  if p.ylabel then
    local x, y = 16, (box.y0 + box.y1) / 2
    text(out, "ylabel", x, y, "middle", esc(p.ylabel),
      fmt(' font-size="12" transform="rotate(-90 %s %s)"', c(x), c(y)))
  end
end

local function top_margin(p) return p.title and 34 or 14 end

-------------------------------------------------------------------------------------------
-- Line charts.

local LinePlot = {}
LinePlot.__index = LinePlot

local LINE_KEYS = {title = true, xlabel = true, ylabel = true, series = true, logx = true, logy = true,
                   width = true, height = true, xlim = true, ylim = true, legend = true, grid = true}
local SERIES_KEYS = {name = true, x = true, y = true, color = true, dash = true, linewidth = true,
                     marker = true}
local LEGEND_PLACES = {"best", "upper right", "upper left", "lower left", "lower right", "outside", "none"}

local function parse_line(spec)
  local F = "mo.plot.line"
  if type(spec) ~= "table" then fail("%s: argument must be a table of options, got %s", F, show(spec)) end
  check_keys(F, spec, LINE_KEYS)
  local p = {title = opt_string(F, spec, "title"), xlabel = opt_string(F, spec, "xlabel"),
             ylabel = opt_string(F, spec, "ylabel"), logx = opt_boolean(F, spec, "logx", false),
             logy = opt_boolean(F, spec, "logy", false), width = opt_size(F, spec, "width", 640),
             height = opt_size(F, spec, "height", 400), grid = opt_boolean(F, spec, "grid", true),
             legend = opt_enum(F, spec, "legend", LEGEND_PLACES, "best")}
  p.xlim = opt_limits(F, spec, "xlim", p.logx)
  p.ylim = opt_limits(F, spec, "ylim", p.logy)
  local series = spec.series
  if series == nil then series = {} end
  if type(series) ~= "table" then fail("%s: option 'series' must be a list of series, got %s", F, show(series)) end
  p.series = {}
  for i = 1, #series do
    local s = series[i]
    local where = fmt("series[%d]", i)
    if type(s) ~= "table" then fail("%s: %s must be a table {name=, x=, y=}, got %s", F, where, show(s)) end
    local unknown
    for k in pairs(s) do
      if not SERIES_KEYS[k] and (unknown == nil or tostring(k) < tostring(unknown)) then unknown = k end
    end
    if unknown ~= nil then
      fail("%s: %s: unknown field %s (fields: color, dash, linewidth, marker, name, x, y)", F, where,
        type(unknown) == "string" and ("'" .. unknown .. "'") or show(unknown))
    end
    if s.y == nil then fail("%s: %s.y is required (a list of numbers)", F, where) end
    local y, n = number_list(F, where .. ".y", s.y)
    local x = s.x
    if x ~= nil then
      local nx
      x, nx = number_list(F, where .. ".x", x)
      if nx ~= n then fail("%s: %s: x has %d values but y has %d", F, where, nx, n) end
    end
    if s.name ~= nil and type(s.name) ~= "string" and type(s.name) ~= "number" then
      fail("%s: %s.name must be a string, got %s", F, where, show(s.name))
    end
    local dash = s.dash
    if dash ~= nil and (type(dash) ~= "string" or not (dash == "solid" or DASHES[dash])) then
      fail("%s: %s.dash must be one of 'solid', 'dashed', 'dotted', 'dashdot', got %s", F, where, show(dash))
    end
    local lw = s.linewidth
    if lw ~= nil and (type(lw) ~= "number" or not finite(lw) or lw <= 0) then
      fail("%s: %s.linewidth must be a positive number, got %s", F, where, show(lw))
    end
    if s.marker ~= nil and type(s.marker) ~= "boolean" then
      fail("%s: %s.marker must be a boolean, got %s", F, where, show(s.marker))
    end
    p.series[i] = {
      name = s.name ~= nil and tostring(s.name) or nil, x = x, y = y, n = n,
      color = opt_color(F, where .. ".color", s.color) or COLORS[(i - 1) % #COLORS + 1],
      dash = dash or DASH_CYCLE[(i - 1) // #COLORS % #DASH_CYCLE + 1],
      linewidth = lw or 1.6, marker = s.marker or false,
    }
  end
  return p
end

-- a point is drawable when both coordinates are finite (and > 0 on a log axis)
local function drawable(v, logscale)
  return finite(v) and (not logscale or v > 0)
end

local function data_extent(p)
  local xlo, xhi, ylo, yhi
  for _, s in ipairs(p.series) do
    for i = 1, s.n do
      local x, y = s.x and s.x[i] or i, s.y[i]
      if drawable(x, p.logx) and drawable(y, p.logy) then
        if xlo == nil or x < xlo then xlo = x end
        if xhi == nil or x > xhi then xhi = x end
        if ylo == nil or y < ylo then ylo = y end
        if yhi == nil or y > yhi then yhi = y end
      end
    end
  end
  return xlo, xhi, ylo, yhi
end

-- one axis' range and ticks: auto range (pad as given), limits where the user set them
local function resolve_axis(lo, hi, limits, logscale, pad)
  local a, b = auto_range(lo, hi, logscale, pad)
  if limits then
    a, b = limits[1] or a, limits[2] or b
    if a >= b then                       -- one user limit beyond the data: widen the other side
      if limits[1] then b = logscale and a * 10 or a + 1 else a = logscale and b / 10 or b - 1 end
    end
  end
  return a, b
end

local function make_ticks(lo, hi, logscale, target, size)
  if logscale then
    local values, labels, minor = log_ticks(lo, hi, target, size)
    return {values = values, labels = labels, minor = minor}
  end
  local values, e = linear_ticks(lo, hi, target)
  local labels, offset = linear_labels(values, e, size)
  return {values = values, labels = labels, minor = {}, offset = offset}
end

local function label_width(label, size)
  -- a power label renders as "10" plus a smaller exponent
  local exp = label:match("^10<tspan[^>]*>(.-)</tspan>$")
  if exp then return text_width("10", size) + text_width(exp, size * SUP_SIZE) end
  return text_width(label, size)
end

local LEGEND_ROW = 17

local function legend_size(named)
  local wmax = 0
  for _, s in ipairs(named) do wmax = math.max(wmax, text_width(s.name, 11)) end
  return 10 + 26 + 6 + wmax + 10, 8 + #named * LEGEND_ROW
end

-- Margins, ticks and axes for a legend inside the plot area or to its right: the vertical
-- layout first (it does not depend on tick label widths), then the y ticks, the left margin
-- from the widest y label, then the x ticks for the width that is left.
local function line_layout(p, named, outside)
  local w, h = p.width, p.height
  local xlo, xhi, ylo, yhi = data_extent(p)
  local x0, x1 = resolve_axis(xlo, xhi, p.xlim, p.logx, 0)
  local y0, y1 = resolve_axis(ylo, yhi, p.ylim, p.logy, 0.05)
  local top = top_margin(p)
  local bottom = h - (p.xlabel and 48 or 28)
  local ticks_y = make_ticks(y0, y1, p.logy, math.max(3, floor((bottom - top) / 45)), 11)
  if ticks_y.offset then top = math.max(top, 26) end
  local ywidth = 0
  for _, l in ipairs(ticks_y.labels) do ywidth = math.max(ywidth, label_width(l, 11)) end
  local left = (p.ylabel and 30 or 10) + ywidth + 8
  local right = w - 16
  if outside then right = right - legend_size(named) - 12 end
  if right - left < 40 or bottom - top < 40 then
    fail("mo.plot.line: the plot is too small for its labels (width %s, height %s)", show(w), show(h))
  end
  local ticks_x = make_ticks(x0, x1, p.logx, math.max(3, floor((right - left) / 80)), 11)
  return {left = left, right = right, top = top, bottom = bottom, ticks_x = ticks_x, ticks_y = ticks_y,
          ax = axis(x0, x1, left, right, p.logx), ay = axis(y0, y1, bottom, top, p.logy)}
end

-- Every series in pixels: a list of subpaths, each a list of {x, y}. A NaN/inf point (or one
-- <= 0 on a log axis) ends a subpath; the next drawable point starts a new one.
local function project(p, L)
  local polys = {}
  for k, s in ipairs(p.series) do
    local subs, cur = {}, nil
    for i = 1, s.n do
      local xv, yv = s.x and s.x[i] or i, s.y[i]
      if drawable(xv, p.logx) and drawable(yv, p.logy) then
        if not cur then cur = {}; subs[#subs + 1] = cur end
        cur[#cur + 1] = {L.ax.map(xv), L.ay.map(yv)}
      else
        cur = nil
      end
    end
    polys[k] = subs
  end
  return polys
end

-- How much of the drawn data a box would hide: vertices and points every 4 px along the
-- segments that fall inside it.
local function hidden(polys, x, y, bw, bh)
  local n = 0
  local function inside(px, py) return px >= x and px <= x + bw and py >= y and py <= y + bh end
  for _, subs in ipairs(polys) do
    for _, sub in ipairs(subs) do
      for i = 1, #sub do
        local a = sub[i]
        if inside(a[1], a[2]) then n = n + 1 end
        local b = sub[i + 1]
        if b then
          local steps = floor(math.max(abs(b[1] - a[1]), abs(b[2] - a[2])) / 4)
          for j = 1, steps do
            local f = j / (steps + 1)
            if inside(a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f) then n = n + 1 end
          end
        end
      end
    end
  end
  return n
end

local CORNERS = {"upper right", "upper left", "lower left", "lower right"}

local function corner(L, name, lw, lh)
  local inset = 8
  local x = name:find("right") and L.right - inset - lw or L.left + inset
  local y = name:find("upper") and L.top + inset or L.bottom - inset - lh
  return x, y
end

function LinePlot.svg(self)
  local p, h = self.p, self.p.height
  local named = {}
  for _, s in ipairs(p.series) do
    if s.name then named[#named + 1] = s end
  end
  local show_legend = #named > 0 and p.legend ~= "none"
  local lw, lh = legend_size(named)
  local L = line_layout(p, named, show_legend and p.legend == "outside")
  local polys = project(p, L)
  local lx, ly
  if show_legend then
    if p.legend == "best" then
      -- the corner that hides the least data; none free: move the legend out of the plot
      local best
      for _, name in ipairs(CORNERS) do
        local x, y = corner(L, name, lw, lh)
        local n = hidden(polys, x, y, lw, lh)
        if best == nil or n < best then best, lx, ly = n, x, y end
      end
      if best > 0 then
        L = line_layout(p, named, true)
        polys = project(p, L)
        lx, ly = L.right + 12, L.top
      end
    elseif p.legend == "outside" then
      lx, ly = L.right + 12, L.top
    else
      lx, ly = corner(L, p.legend, lw, lh)
    end
  end
  local left, right, top, bottom = L.left, L.right, L.top, L.bottom
  local ax, ay, ticks_x, ticks_y = L.ax, L.ay, L.ticks_x, L.ticks_y

  local out = {}
  svg_open(out, p.width, h)
  out[#out + 1] = fmt('<defs><clipPath id="moplot-area"><rect x="%s" y="%s" width="%s" height="%s"/>' ..
    '</clipPath></defs>', c(left), c(top), c(right - left), c(bottom - top))

  if p.grid then
    out[#out + 1] = '<g class="grid" stroke="#e6e6e6" stroke-width="0.8">'
    for _, v in ipairs(ticks_x.values) do
      local x = ax.map(v)
      out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', c(x), c(top), c(x), c(bottom))
    end
    for _, v in ipairs(ticks_y.values) do
      local y = ay.map(v)
      out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', c(left), c(y), c(right), c(y))
    end
    out[#out + 1] = '</g>'
  end

  -- data: one <path> per series with something to draw, a subpath ("M") per unbroken run
  out[#out + 1] = '<g class="data" clip-path="url(#moplot-area)" fill="none" stroke-linejoin="round" ' ..
    'stroke-linecap="round">'
  for k, s in ipairs(p.series) do
    local d, marks = {}, {}
    for _, sub in ipairs(polys[k]) do
      local last
      for i, q in ipairs(sub) do
        if i == 1 then
          -- a lone point still shows: a zero-length segment drawn with round caps is a dot
          d[#d + 1] = "M" .. c(q[1]) .. " " .. c(q[2]) .. "l0 0"
          last = q
        elseif i == #sub or abs(q[1] - last[1]) >= 0.5 or abs(q[2] - last[2]) >= 0.5 then
          -- a long series has many points per pixel: skip those within half a pixel of the
          -- last one drawn (invisible, and it keeps a 20000-step curve small)
          d[#d + 1] = "L" .. c(q[1]) .. " " .. c(q[2])
          last = q
        end
        if s.marker then marks[#marks + 1] = {c(q[1]), c(q[2])} end
      end
    end
    if #d > 0 then
      out[#out + 1] = fmt('<path class="series" d="%s" stroke="%s" stroke-width="%s"%s/>', concat(d), s.color,
        c(s.linewidth), DASHES[s.dash] and fmt(' stroke-dasharray="%s"', DASHES[s.dash]) or "")
    end
    for _, m in ipairs(marks) do
      out[#out + 1] = fmt('<circle cx="%s" cy="%s" r="%s" fill="%s" stroke="none"/>', m[1], m[2],
        c(s.linewidth + 1.2), s.color)
    end
  end
  out[#out + 1] = '</g>'

  out[#out + 1] = fmt('<rect class="frame" x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#000000" ' ..
    'stroke-width="1"/>', c(left), c(top), c(right - left), c(bottom - top))

  -- ticks point inward, majors 5 px, minors 3 px; labels outside
  out[#out + 1] = '<g class="ticks" stroke="#000000" stroke-width="0.8">'
  for _, v in ipairs(ticks_x.values) do
    local x = c(ax.map(v))
    out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', x, c(bottom), x, c(bottom - 5))
  end
  for _, v in ipairs(ticks_x.minor) do
    local x = c(ax.map(v))
    out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', x, c(bottom), x, c(bottom - 3))
  end
  for _, v in ipairs(ticks_y.values) do
    local y = c(ay.map(v))
    out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', c(left), y, c(left + 5), y)
  end
  for _, v in ipairs(ticks_y.minor) do
    local y = c(ay.map(v))
    out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', c(left), y, c(left + 3), y)
  end
  out[#out + 1] = '</g>'
  for i, v in ipairs(ticks_x.values) do
    text(out, "xtick", ax.map(v), bottom + 16, "middle", ticks_x.labels[i])
  end
  for i, v in ipairs(ticks_y.values) do
    text(out, "ytick", left - 6, ay.map(v) + 4, "end", ticks_y.labels[i])
  end
  if ticks_x.offset then text(out, "xoffset", right, bottom + 30, "end", ticks_x.offset) end
  if ticks_y.offset then text(out, "yoffset", left, top - 8, "start", ticks_y.offset) end
  axis_titles(out, p, {x0 = left, x1 = right, y0 = top, y1 = bottom}, h)

  if show_legend then
    out[#out + 1] = '<g class="legend">'
    out[#out + 1] = fmt('<rect x="%s" y="%s" width="%s" height="%s" fill="#ffffff" fill-opacity="0.9" ' ..
      'stroke="#bfbfbf" stroke-width="0.8"/>', c(lx), c(ly), c(lw), c(lh))
    for i, s in ipairs(named) do
      local y = ly + 4 + (i - 0.5) * LEGEND_ROW
      out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="%s"%s/>',
        c(lx + 10), c(y), c(lx + 36), c(y), s.color, c(s.linewidth),
        DASHES[s.dash] and fmt(' stroke-dasharray="%s"', DASHES[s.dash]) or "")
      text(out, "legend-label", lx + 42, y + 4, "start", esc(s.name))
    end
    out[#out + 1] = '</g>'
  end
  out[#out + 1] = '</svg>'
  return concat(out, "\n") .. "\n"
end

-------------------------------------------------------------------------------------------
-- Heatmaps.

local Heatmap = {}
Heatmap.__index = Heatmap

local HEAT_KEYS = {title = true, xlabel = true, ylabel = true, xticks = true, yticks = true, values = true,
                   logcolor = true, colorbar = true, annotate = true, fmt = true, cmap = true, vmin = true,
                   vmax = true, width = true, height = true, origin = true, colorbar_label = true}

local function label_list(F, key, v, n, what)
  if v == nil then return nil end
  if type(v) ~= "table" or #v ~= n then
    fail("%s: option '%s' must be a list of %d labels (one per %s), got %s", F, key, n, what,
      type(v) == "table" and fmt("%d labels", #v) or show(v))
  end
  local r = {}
  for i = 1, n do
    local l = v[i]
    if type(l) == "number" then
      r[i] = typographic_minus(fmt("%.4g", l))
    elseif type(l) == "string" then
      r[i] = l
    else
      fail("%s: %s[%d] must be a string or a number, got %s", F, key, i, show(l))
    end
  end
  return r
end

local function parse_heatmap(spec)
  local F = "mo.plot.heatmap"
  if type(spec) ~= "table" then fail("%s: argument must be a table of options, got %s", F, show(spec)) end
  check_keys(F, spec, HEAT_KEYS)
  local p = {title = opt_string(F, spec, "title"), xlabel = opt_string(F, spec, "xlabel"),
             ylabel = opt_string(F, spec, "ylabel"), logcolor = opt_boolean(F, spec, "logcolor", false),
             colorbar = opt_boolean(F, spec, "colorbar", true), annotate = opt_boolean(F, spec, "annotate", false),
             cmap = opt_enum(F, spec, "cmap", {"viridis", "magma"}, "viridis"),
             width = opt_size(F, spec, "width", 560), height = opt_size(F, spec, "height", 440),
             origin = opt_enum(F, spec, "origin", {"upper", "lower"}, "upper"),
             colorbar_label = opt_string(F, spec, "colorbar_label")}
  local values = spec.values
  if type(values) ~= "table" or #values == 0 then
    fail("%s: option 'values' must be a non-empty list of rows (lists of numbers), got %s", F, show(values))
  end
  local cols
  p.values = {}
  for r = 1, #values do
    local row, n = number_list(F, fmt("values[%d]", r), values[r])
    if n == 0 then fail("%s: values[%d] is empty", F, r) end
    if cols and n ~= cols then fail("%s: values[%d] has %d values, values[1] has %d", F, r, n, cols) end
    cols = n
    p.values[r] = row
  end
  p.rows, p.cols = #values, cols
  p.xticks = label_list(F, "xticks", spec.xticks, cols, "column")
  p.yticks = label_list(F, "yticks", spec.yticks, p.rows, "row")
  local f = spec.fmt
  if f ~= nil and type(f) ~= "string" and type(f) ~= "function" then
    fail("%s: option 'fmt' must be a format string or a function, got %s", F, show(f))
  end
  p.fmt = f or "%.3g"
  for _, key in ipairs{"vmin", "vmax"} do
    local v = spec[key]
    if v ~= nil and (type(v) ~= "number" or not finite(v) or (p.logcolor and v <= 0)) then
      fail("%s: option '%s' must be a finite number%s, got %s", F, key, p.logcolor and " > 0 (logcolor)" or "",
        show(v))
    end
    p[key] = v
  end
  if p.vmin and p.vmax and p.vmin >= p.vmax then
    fail("%s: option 'vmin' must be below vmax (%s), got %s", F, show(p.vmax), show(p.vmin))
  end
  return p
end

local function hex_rgb(h)
  return tonumber(h:sub(2, 3), 16), tonumber(h:sub(4, 5), 16), tonumber(h:sub(6, 7), 16)
end

-- colour at t in [0, 1] on a map, and its relative luminance (for the annotation colour)
local function cmap_color(anchors, t)
  local n = #anchors
  local pos = t * (n - 1)
  local i = math.min(n - 2, floor(pos))      -- t = 1 interpolates the last pair at f = 1
  local f = pos - i
  local r1, g1, b1 = hex_rgb(anchors[i + 1])
  local r2, g2, b2 = hex_rgb(anchors[i + 2])
  local r, g, b = r1 + (r2 - r1) * f, g1 + (g2 - g1) * f, b1 + (b2 - b1) * f
  return fmt("#%02x%02x%02x", floor(r + 0.5), floor(g + 0.5), floor(b + 0.5)),
    (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
end

local function cell_text(p, v)
  if type(p.fmt) == "function" then
    local s = p.fmt(v)
    if type(s) ~= "string" and type(s) ~= "number" then
      fail("mo.plot.heatmap: fmt returned %s for %s, expected a string", show(s), show(v))
    end
    return esc(s)
  end
  local ok, s = pcall(fmt, p.fmt, v)
  if not ok then fail("mo.plot.heatmap: option 'fmt' %s does not format a number: %s", show(p.fmt), s) end
  return esc(typographic_minus(s))
end

function Heatmap.svg(self)
  local p, w, h = self.p, self.p.width, self.p.height
  local anchors = CMAPS[p.cmap]
  local function usable(v) return finite(v) and (not p.logcolor or v > 0) end

  -- colour range: vmin/vmax where given, else the data's (cells out of range are clamped)
  local lo, hi = p.vmin, p.vmax
  local dlo, dhi
  for _, row in ipairs(p.values) do
    for _, v in ipairs(row) do
      if usable(v) then
        if dlo == nil or v < dlo then dlo = v end
        if dhi == nil or v > dhi then dhi = v end
      end
    end
  end
  lo, hi = lo or dlo or (p.logcolor and 1 or 0), hi or dhi or (p.logcolor and 10 or 1)
  if lo >= hi then lo, hi = auto_range(lo, lo, p.logcolor, 0) end
  local function frac(v)
    local t
    if p.logcolor then t = (log10(v) - log10(lo)) / (log10(hi) - log10(lo))
    else t = (v - lo) / (hi - lo) end
    return math.min(1, math.max(0, t))
  end

  -- layout: tick labels decide the margins; long column labels are turned 45 degrees
  local top = top_margin(p)
  local yw = 0
  for _, l in ipairs(p.yticks or {}) do yw = math.max(yw, text_width(l, 11)) end
  local left = (p.ylabel and 30 or 10) + yw + 8
  local right = w - 14
  local cticks
  if p.colorbar then
    cticks = make_ticks(lo, hi, p.logcolor, 6, 10)
    local cw = 0
    for _, l in ipairs(cticks.labels) do cw = math.max(cw, label_width(l, 10)) end
    right = w - 14 - (p.colorbar_label and 20 or 0) - cw - 6 - 14 - 16
  end
  local xw = 0
  for _, l in ipairs(p.xticks or {}) do xw = math.max(xw, text_width(l, 11)) end
  local cellw = (right - left) / p.cols
  local rotate = xw > cellw - 4
  local xlab_h = p.xticks and (rotate and xw * 0.71 + 14 or 18) or 4
  local bottom = h - xlab_h - (p.xlabel and 26 or 8)
  if right - left < 20 or bottom - top < 20 then
    fail("mo.plot.heatmap: the plot is too small for its labels (width %s, height %s)", show(w), show(h))
  end
  local cellh = (bottom - top) / p.rows
  local function row_y(r)
    if p.origin == "lower" then return bottom - r * cellh end
    return top + (r - 1) * cellh
  end

  local out = {}
  svg_open(out, w, h)
  -- cells: one <rect> each, edges crisp so neighbours meet without hairline seams
  out[#out + 1] = '<g class="cells" shape-rendering="crispEdges" stroke="none">'
  local notes = {}
  for r, row in ipairs(p.values) do
    for k, v in ipairs(row) do
      local x, y = left + (k - 1) * cellw, row_y(r)
      local fill, lum = MISSING_FILL, 0.85
      if usable(v) then fill, lum = cmap_color(anchors, frac(v)) end
      out[#out + 1] = fmt('<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>', c(x), c(y), c(cellw),
        c(cellh), fill)
      if p.annotate then
        notes[#notes + 1] = {x + cellw / 2, y + cellh / 2, finite(v) and cell_text(p, v) or "\u{2013}",
                             lum > 0.5 and "#000000" or "#ffffff"}
      end
    end
  end
  out[#out + 1] = '</g>'
  if p.annotate then
    local longest = 1
    for _, n in ipairs(notes) do longest = math.max(longest, utf8.len(n[3]) or #n[3]) end
    local size = math.max(6, math.min(11, cellh * 0.45, (cellw - 4) / (longest * 0.6)))
    out[#out + 1] = fmt('<g class="annotations" font-size="%s">', c(size))
    for _, n in ipairs(notes) do
      text(out, "annotation", n[1], n[2] + size * 0.35, "middle", n[3], fmt(' fill="%s"', n[4]))
    end
    out[#out + 1] = '</g>'
  end
  if p.xticks then
    for k, l in ipairs(p.xticks) do
      local x = left + (k - 0.5) * cellw
      if rotate then
        text(out, "xtick", x, bottom + 12, "end", esc(l), fmt(' transform="rotate(-45 %s %s)"', c(x), c(bottom + 12)))
      else
        text(out, "xtick", x, bottom + 15, "middle", esc(l))
      end
    end
  end
  if p.yticks then
    for r, l in ipairs(p.yticks) do
      text(out, "ytick", left - 6, row_y(r) + cellh / 2 + 4, "end", esc(l))
    end
  end
  axis_titles(out, p, {x0 = left, x1 = right, y0 = top, y1 = bottom}, h)

  if p.colorbar then
    local bx, bw = right + 16, 14
    out[#out + 1] = '<defs><linearGradient id="moplot-cmap" x1="0" y1="1" x2="0" y2="0">'
    for i, a in ipairs(anchors) do
      out[#out + 1] = fmt('<stop offset="%s" stop-color="%s"/>', c((i - 1) / (#anchors - 1)), a)
    end
    out[#out + 1] = '</linearGradient></defs>'
    out[#out + 1] = fmt('<rect class="colorbar" x="%s" y="%s" width="%s" height="%s" fill="url(#moplot-cmap)" ' ..
      'stroke="#000000" stroke-width="0.8"/>', c(bx), c(top), c(bw), c(bottom - top))
    local cb = axis(lo, hi, bottom, top, p.logcolor)
    out[#out + 1] = '<g class="ticks" stroke="#000000" stroke-width="0.8">'
    for _, v in ipairs(cticks.values) do
      local y = c(cb.map(v))
      out[#out + 1] = fmt('<line x1="%s" y1="%s" x2="%s" y2="%s"/>', c(bx + bw), y, c(bx + bw + 4), y)
    end
    out[#out + 1] = '</g>'
    for i, v in ipairs(cticks.values) do
      text(out, "ctick", bx + bw + 6, cb.map(v) + 4, "start", cticks.labels[i], ' font-size="10"')
    end
    if cticks.offset then text(out, "coffset", bx, top - 6, "start", cticks.offset, ' font-size="10"') end
    if p.colorbar_label then
      local x, y = w - 12, (top + bottom) / 2
      text(out, "colorbar-label", x, y, "middle", esc(p.colorbar_label),
        fmt(' font-size="12" transform="rotate(-90 %s %s)"', c(x), c(y)))
    end
  end
  out[#out + 1] = '</svg>'
  return concat(out, "\n") .. "\n"
end

-------------------------------------------------------------------------------------------
-- Public API.

local function save(self, path)
  if type(path) ~= "string" or path == "" then
    fail("%s:save: argument 'path' must be a file name, got %s", self.fname, show(path))
  end
  local doc = self:_render()
  -- atomic (temporary file renamed over path), missing parent directories created
  local ok, err = pcall(core.write_file, path, doc)
  if not ok then
    local reason, head = tostring(err), "write_file: " .. path .. ": "
    if reason:sub(1, #head) == head then reason = reason:sub(#head + 1) end
    fail("%s:save: cannot write %q: %s", self.fname, path, reason)
  end
  return self
end

local function methods(class, fname)
  class._render = class.svg
  class.svg = api(function(self)
    if getmetatable(self) ~= class then fail("%s: svg must be called as a method: plot:svg()", fname) end
    return self:_render()
  end)
  class.save = api(function(self, path)
    if getmetatable(self) ~= class then fail("%s: save must be called as a method: plot:save(path)", fname) end
    return save(self, path)
  end)
end
methods(LinePlot, "mo.plot.line")
methods(Heatmap, "mo.plot.heatmap")

-- The spec is validated and copied when the plot is made: later changes to the caller's
-- tables do not change the figure, and a bad spec fails here, not at :svg().
M.line = api(function(spec)
  return setmetatable({p = parse_line(spec), fname = "mo.plot.line"}, LinePlot)
end)

M.heatmap = api(function(spec)
  return setmetatable({p = parse_heatmap(spec), fname = "mo.plot.heatmap"}, Heatmap)
end)

-- exposed for tests and for callers that draw their own axes
M.nice_ticks = api(function(lo, hi, target)
  if type(lo) ~= "number" or type(hi) ~= "number" or not finite(lo) or not finite(hi) or lo >= hi then
    fail("mo.plot.nice_ticks: arguments 'lo' and 'hi' must be finite numbers with lo < hi, got %s and %s",
      show(lo), show(hi))
  end
  target = target or 6
  if math.type(target) ~= "integer" or target < 1 then
    fail("mo.plot.nice_ticks: argument 'target' must be a positive integer, got %s", show(target))
  end
  return (linear_ticks(lo, hi, target))
end)

return M
