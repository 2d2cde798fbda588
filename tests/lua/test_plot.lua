-- tests/lua/test_plot.lua - mo.plot: SVG structure (parsed back), ticks, escaping, errors.
local lu = require "luaunit"
local plot = require "moonopt.plot"

local MINUS = "\u{2212}"

-- Parse an SVG document back far enough to check it: every tag balanced and properly nested,
-- every attribute name="value", text free of raw '<' and of '&' outside entities.
-- Returns the list of elements in document order: {name =, attrs = {...}, text = ...}.
local function parse(svg)
  lu.assertEquals(svg:sub(1, 38), '<?xml version="1.0" encoding="UTF-8"?>')
  local body = svg:sub(39)
  local stack, elements = {}, {}
  local pos = 1
  while true do
    local s, e, inner = body:find("<([^<>]*)>", pos)
    local between = body:sub(pos, (s or #body + 1) - 1)
    lu.assertNil(between:find("<", 1, true), "raw '<' in text")
    for amp in between:gmatch("&[^;%s]*;?") do
      lu.assertTrue(amp:match("^&%a+;$") ~= nil or amp:match("^&#%d+;$") ~= nil, "bad entity " .. amp)
    end
    if #stack > 0 and #between > 0 then
      local top = stack[#stack]
      top.text = (top.text or "") .. between
    end
    if not s then break end
    if inner:sub(1, 1) == "/" then
      local name = inner:sub(2)
      lu.assertTrue(#stack > 0, "closing </" .. name .. "> without an opening tag")
      lu.assertEquals(stack[#stack].name, name, "tags cross")
      stack[#stack] = nil
    else
      local selfclosing = inner:sub(-1) == "/"
      if selfclosing then inner = inner:sub(1, -2) end
      local name, rest = inner:match("^([%w:%-]+)(.*)$")
      lu.assertNotNil(name, "bad tag <" .. inner .. ">")
      local attrs = {}
      local left = rest:gsub('%s+([%w:%-]+)="([^"<]*)"', function(k, v)
        lu.assertNil(attrs[k], "attribute " .. k .. " twice")
        attrs[k] = v
        return ""
      end)
      lu.assertTrue(left:match("^%s*$") ~= nil, "junk in tag <" .. inner .. ">")
      local el = {name = name, attrs = attrs}
      elements[#elements + 1] = el
      if not selfclosing then stack[#stack + 1] = el end
    end
    pos = e + 1
  end
  lu.assertEquals(#stack, 0, "unclosed tags")
  lu.assertEquals(elements[1].name, "svg")
  return elements
end

local function count(elements, name, class)
  local n = 0
  for _, el in ipairs(elements) do
    if el.name == name and (class == nil or el.attrs.class == class) then n = n + 1 end
  end
  return n
end

-- the text of every element of a class, in order (tspans flattened into "10^k")
local function texts(svg, class)
  local r = {}
  for body in svg:gmatch('<text class="' .. class .. '"[^>]*>(.-)</text>') do
    r[#r + 1] = body:gsub('<tspan[^>]*>(.-)</tspan>', "^%1")
  end
  return r
end

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  lu.assertFalse(ok, "expected an error")
  return tostring(e)
end

local function assert_err(expected, f, ...)
  local e = err_of(f, ...)
  if not e:find(expected, 1, true) then
    lu.fail(string.format("error message %q does not contain %q", e, expected))
  end
end

local function range(a, b, step)
  local r = {}
  for v = a, b, step or 1 do r[#r + 1] = v end
  return r
end

-------------------------------------------------------------------------------------------

local TestPlotLine = {}

function TestPlotLine.test_structure_and_counts()
  local nan = 0 / 0
  local svg = plot.line{
    title = "Loss", xlabel = "step", ylabel = "loss",
    series = {
      {name = "train", y = {1, 0.8, 0.6, 0.5, 0.45}},
      {name = "eval", x = {1, 2, 3, 4, 5}, y = {1.1, nan, 0.7, math.huge, 0.6}},
      {name = "empty", y = {}},
    },
  }:svg()
  local els = parse(svg)
  -- one path per series that has a drawable point; the empty one has none
  lu.assertEquals(count(els, "path"), 2)
  lu.assertEquals(count(els, "path", "series"), 2)
  -- rects: background, clip area, frame, legend box
  lu.assertEquals(count(els, "rect"), 4)
  lu.assertEquals(count(els, "rect", "frame"), 1)
  lu.assertEquals(count(els, "g", "legend"), 1)
  -- NaN and inf break the second line into three runs (points 1, 3 and 5)
  local d2
  for _, el in ipairs(els) do
    if el.name == "path" then d2 = el.attrs.d end
  end
  local _, runs = d2:gsub("M", "")
  lu.assertEquals(runs, 3)
  lu.assertNil(d2:find("L", 1, true))              -- every run is a single point here: dots
  lu.assertEquals(texts(svg, "legend%-label"), {"train", "eval", "empty"})
  lu.assertEquals(texts(svg, "title"), {"Loss"})
  lu.assertEquals(texts(svg, "xlabel"), {"step"})
  lu.assertEquals(texts(svg, "ylabel"), {"loss"})
end

function TestPlotLine.test_distinct_colours()
  local series = {}
  for i = 1, 10 do series[i] = {name = "s" .. i, y = {i, i + 1}} end
  local els = parse(plot.line{series = series}:svg())
  local seen = {}
  for _, el in ipairs(els) do
    if el.name == "path" then
      lu.assertNil(seen[el.attrs.stroke], "colour used twice: " .. tostring(el.attrs.stroke))
      seen[el.attrs.stroke] = true
    end
  end
  -- past ten series the colours repeat with a dash pattern
  series[11] = {y = {1, 2}}
  els = parse(plot.line{series = series}:svg())
  local last
  for _, el in ipairs(els) do
    if el.name == "path" then last = el end
  end
  lu.assertEquals(last.attrs.stroke, "#1f77b4")
  lu.assertNotNil(last.attrs["stroke-dasharray"])
end

function TestPlotLine.test_legend_names_are_escaped()
  local name = 'a<b & "c" \'d\' >'
  local svg = plot.line{series = {{name = name, y = {1, 2, 3}}}, title = "x & y < z"}:svg()
  parse(svg)
  lu.assertStrContains(svg, "a&lt;b &amp; &quot;c&quot; &#39;d&#39; &gt;")
  lu.assertStrContains(svg, "x &amp; y &lt; z")
  lu.assertNil(svg:find(name, 1, true))
end

function TestPlotLine.test_linear_ticks_zero_to_one()
  local svg = plot.line{series = {{x = {0, 0.5, 1}, y = {0, 0.5, 1}}}}:svg()
  parse(svg)
  lu.assertEquals(texts(svg, "ytick"), {"0", "0.2", "0.4", "0.6", "0.8", "1"})
  lu.assertEquals(texts(svg, "xtick"), {"0", "0.2", "0.4", "0.6", "0.8", "1"})
end

function TestPlotLine.test_negative_and_large_ticks()
  local svg = plot.line{series = {{x = {0, 1000}, y = {-1, 1}}}}:svg()
  lu.assertEquals(texts(svg, "ytick"), {MINUS .. "1", MINUS .. "0.5", "0", "0.5", "1"})
  lu.assertEquals(texts(svg, "xtick"), {"0", "200", "400", "600", "800", "1000"})
end

function TestPlotLine.test_tiny_values_share_an_offset()
  local svg = plot.line{series = {{y = {0, 1e-5, 3e-5}}}}:svg()
  parse(svg)
  lu.assertEquals(texts(svg, "ytick"), {"0", "0.5", "1", "1.5", "2", "2.5", "3"})
  lu.assertEquals(texts(svg, "yoffset"), {"\u{00d7}10^" .. MINUS .. "5"})
end

function TestPlotLine.test_log_axis_ticks()
  local svg = plot.line{logy = true, series = {{y = {1e-4, 1e-3, 1e-2, 1e-1}}}}:svg()
  local els = parse(svg)
  lu.assertEquals(texts(svg, "ytick"), {"10^" .. MINUS .. "4", "10^" .. MINUS .. "3", "10^" .. MINUS .. "2",
                                        "10^" .. MINUS .. "1"})
  -- minor ticks at 2..9 x 10^k: more tick lines than labelled ticks
  local ticks = 0
  local in_ticks = false
  for _, el in ipairs(els) do
    if el.name == "g" then in_ticks = el.attrs.class == "ticks" end
    if in_ticks and el.name == "line" then ticks = ticks + 1 end
  end
  lu.assertTrue(ticks > #texts(svg, "ytick") + #texts(svg, "xtick") + 20)
end

function TestPlotLine.test_log_axis_skips_non_positive()
  local svg = plot.line{logy = true, series = {{y = {0, 1, -1, 10, 100}}}}:svg()
  local els = parse(svg)
  local d
  for _, el in ipairs(els) do
    if el.name == "path" then d = el.attrs.d end
  end
  local _, runs = d:gsub("M", "")
  lu.assertEquals(runs, 2)                          -- {1} and {10, 100}
  lu.assertEquals(texts(svg, "ytick"), {"10^0", "10^1", "10^2"})
  -- a narrow log range falls back to 1-2-5 multiples
  svg = plot.line{logy = true, series = {{y = {1.5, 6}}}}:svg()
  lu.assertEquals(texts(svg, "ytick"), {"2", "5"})
end

function TestPlotLine.test_limits_and_log_x()
  local svg = plot.line{logx = true, ylim = {0, 2}, series = {{x = {1, 10, 100, 1000}, y = {1, 1, 1, 1}}}}:svg()
  parse(svg)
  lu.assertEquals(texts(svg, "xtick"), {"10^0", "10^1", "10^2", "10^3"})
  lu.assertEquals(texts(svg, "ytick"), {"0", "0.5", "1", "1.5", "2"})
end

function TestPlotLine.test_empty_plot()
  for _, spec in ipairs{{}, {series = {}}, {series = {{y = {}}}}, {series = {{y = {0 / 0}}}}} do
    local svg = plot.line(spec):svg()
    local els = parse(svg)
    lu.assertEquals(count(els, "path"), 0)
    lu.assertEquals(texts(svg, "ytick"), {"0", "0.2", "0.4", "0.6", "0.8", "1"})
  end
end

function TestPlotLine.test_constant_series()
  local svg = plot.line{series = {{y = {5, 5, 5}}}}:svg()
  parse(svg)
  lu.assertEquals(#texts(svg, "ytick") >= 2, true)
end

function TestPlotLine.test_deterministic_and_spec_copied()
  local y = {3, 1, 4, 1, 5, 9, 2, 6}
  local spec = {title = "t", series = {{name = "a", y = y}, {name = "b", y = {2, 7, 1, 8}}}}
  local p = plot.line(spec)
  local a = p:svg()
  lu.assertEquals(p:svg(), a)
  lu.assertEquals(plot.line(spec):svg(), a)
  y[1] = 100
  spec.title = "changed"
  lu.assertEquals(p:svg(), a)
end

function TestPlotLine.test_legend_placement()
  -- data fills the upper right: the legend goes elsewhere inside; data everywhere: outside
  local x, y = {}, {}
  for i = 1, 50 do x[i], y[i] = i, i end
  local L = plot.line{series = {{name = "rising", x = x, y = y}}}:svg()
  local lx = tonumber(L:match('<g class="legend">\n<rect x="([%d.]+)"'))
  lu.assertTrue(lx < 320, "legend placed away from the data")
  local full = {}
  for i = 1, 200 do full[i] = (i % 2) * 1.0 end
  local F = plot.line{series = {{name = "zigzag", y = full}}}:svg()
  local fx = tonumber(F:match('<g class="legend">\n<rect x="([%d.]+)"'))
  local fr, fw = F:match('<rect class="frame" x="([%d.]+)" y="[%d.]+" width="([%d.]+)"')
  lu.assertNotNil(fr)
  lu.assertTrue(fx > tonumber(fr) + tonumber(fw), "legend outside the plot")
  local N = plot.line{legend = "none", series = {{name = "a", y = {1, 2}}}}:svg()
  lu.assertEquals(count(parse(N), "g", "legend"), 0)
end

function TestPlotLine.test_save()
  local p = plot.line{series = {{y = {1, 2}}}}
  local path = os.tmpname()
  lu.assertIs(p:save(path), p)
  local f = assert(io.open(path, "rb"))
  local content = f:read("a")
  f:close()
  lu.assertEquals(content, p:svg())
  -- missing directories are created, but not below a regular file
  assert_err("mo.plot.line:save: cannot write \"" .. path .. "/x.svg\": cannot create the directory " .. path
             .. ": it exists and is not a directory", p.save, p, path .. "/x.svg")
  os.remove(path)
  assert_err("mo.plot.line:save: argument 'path' must be a file name, got nil", p.save, p)
end

function TestPlotLine.test_long_series_is_compact()
  local y = {}
  for i = 1, 20000 do y[i] = math.sin(i / 3000) end
  local svg = plot.line{series = {{y = y}}}:svg()
  parse(svg)
  lu.assertTrue(#svg < 40000, "points within half a pixel are not written: " .. #svg .. " bytes")
end

function TestPlotLine.test_errors()
  local F = plot.line
  assert_err("mo.plot.line: argument must be a table of options, got nil", F)
  assert_err("mo.plot.line: series[1].y[2] must be a number, got string \"a\"", F, {series = {{y = {1, "a"}}}})
  assert_err("mo.plot.line: series[1]: x has 3 values but y has 2", F, {series = {{x = {1, 2, 3}, y = {1, 2}}}})
  assert_err("mo.plot.line: series[2].x[1] must be a number, got true", F,
             {series = {{y = {1}}, {x = {true}, y = {1}}}})
  assert_err("mo.plot.line: series[1].y is required (a list of numbers)", F, {series = {{name = "a"}}})
  assert_err("mo.plot.line: series[1].y must be a list of numbers, got 5", F, {series = {{y = 5}}})
  assert_err("mo.plot.line: series[1].y must be a list (keys 1..n), has key string \"k\"", F,
             {series = {{y = {1, k = 2}}}})
  assert_err("mo.plot.line: series[1] must be a table {name=, x=, y=}, got 3", F, {series = {3}})
  assert_err("mo.plot.line: series[1]: unknown field 'colour'", F, {series = {{y = {1}, colour = "red"}}})
  assert_err("mo.plot.line: series[1].color must be a colour", F, {series = {{y = {1}, color = "red\" x=\""}}})
  assert_err("mo.plot.line: series[1].dash must be one of", F, {series = {{y = {1}, dash = "wavy"}}})
  assert_err("mo.plot.line: series[1].name must be a string, got a table", F, {series = {{y = {1}, name = {}}}})
  assert_err("mo.plot.line: unknown option 'titel'", F, {titel = "x"})
  assert_err("mo.plot.line: option 'logy' must be a boolean, got 1", F, {logy = 1})
  assert_err("mo.plot.line: option 'width' must be a number of pixels in [100, 20000], got 5", F, {width = 5})
  assert_err("mo.plot.line: option 'xlim' must be {lo, hi} with finite numbers lo < hi, got a table", F,
             {xlim = {2, 1}})
  assert_err("mo.plot.line: option 'ylim' must be {lo, hi} with finite numbers lo < hi (both > 0 on a log axis)",
             F, {logy = true, ylim = {0, 1}})
  assert_err("mo.plot.line: option 'legend' must be one of 'best', 'upper right'", F, {legend = "top"})
  assert_err("mo.plot.line: option 'series' must be a list of series, got string \"a\"", F, {series = "a"})
  local p = F{}
  assert_err("mo.plot.line: svg must be called as a method: plot:svg()", p.svg)
  -- the position is the caller's line (not a tail call: that leaves no line to report)
  local ok, e = pcall(function() local q = F{logy = 1}; return q end)
  lu.assertFalse(ok)
  lu.assertStrMatches(e, ".*test_plot%.lua:%d+: mo%.plot%.line: option 'logy' must be a boolean, got 1")
end

-------------------------------------------------------------------------------------------

local TestPlotHeatmap = {}

function TestPlotHeatmap.test_structure_and_counts()
  local nan = 0 / 0
  local svg = plot.heatmap{
    title = "lr x wd", xlabel = "wd", ylabel = "lr",
    xticks = {"0", "1e-4", "1e-3"}, yticks = {"1e-3", "1e-2"},
    values = {{0.1, 0.2, 0.3}, {0.4, nan, 0.6}},
    annotate = true,
  }:svg()
  local els = parse(svg)
  -- rects: background, one per cell, the colour bar
  lu.assertEquals(count(els, "rect"), 1 + 6 + 1)
  lu.assertEquals(count(els, "rect", "colorbar"), 1)
  lu.assertEquals(count(els, "path"), 0)
  lu.assertEquals(texts(svg, "xtick"), {"0", "1e-4", "1e-3"})
  lu.assertEquals(texts(svg, "ytick"), {"1e-3", "1e-2"})
  lu.assertEquals(texts(svg, "annotation"), {"0.1", "0.2", "0.3", "0.4", "\u{2013}", "0.6"})
  -- the NaN cell is grey, the extremes take the ends of the colour map
  local fills = {}
  for _, el in ipairs(els) do
    if el.name == "rect" and el.attrs.class == nil and el.attrs.fill then fills[#fills + 1] = el.attrs.fill end
  end
  lu.assertEquals(#fills, 6)
  lu.assertEquals(fills[1], "#440154")
  lu.assertEquals(fills[6], "#fde725")
  lu.assertEquals(fills[5], "#d9d9d9")
  lu.assertEquals(texts(svg, "ctick"), {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6"})
end

function TestPlotHeatmap.test_no_colorbar_and_escaping()
  local svg = plot.heatmap{values = {{1, 2}}, colorbar = false, xticks = {"a&b", "<c>"}, yticks = {"\"q\""}}:svg()
  local els = parse(svg)
  lu.assertEquals(count(els, "rect"), 1 + 2)
  lu.assertStrContains(svg, ">a&amp;b<")
  lu.assertStrContains(svg, ">&lt;c&gt;<")
  lu.assertStrContains(svg, ">&quot;q&quot;<")
end

function TestPlotHeatmap.test_logcolor()
  local svg = plot.heatmap{values = {{1e-4, 1e-3}, {1e-2, 1e-1}}, logcolor = true}:svg()
  parse(svg)
  lu.assertEquals(texts(svg, "ctick"), {"10^" .. MINUS .. "4", "10^" .. MINUS .. "3", "10^" .. MINUS .. "2",
                                        "10^" .. MINUS .. "1"})
  -- on a log colour scale 1e-3 sits a third of the way: not the linear scale's near-bottom colour
  local lin = plot.heatmap{values = {{1e-4, 1e-3}, {1e-2, 1e-1}}}:svg()
  local function second_fill(s) return select(2, s:match('<rect x.-fill="(#%x+)".-<rect x.-fill="(#%x+)"')) end
  lu.assertNotEquals(second_fill(svg), second_fill(lin))
end

function TestPlotHeatmap.test_origin_lower_and_rotated_labels()
  local up = plot.heatmap{values = {{1}, {2}}, yticks = {"first", "second"}}:svg()
  local low = plot.heatmap{values = {{1}, {2}}, yticks = {"first", "second"}, origin = "lower"}:svg()
  local function y_of(s, label) return tonumber(s:match('class="ytick" x="[%d.]+" y="([%d.]+)"[^>]*>' .. label)) end
  lu.assertTrue(y_of(up, "first") < y_of(up, "second"))
  lu.assertTrue(y_of(low, "first") > y_of(low, "second"))
  local long = plot.heatmap{values = {range(1, 12)}, xticks = {"a long label", "b", "c", "d", "e", "f", "g", "h",
                                                               "i", "j", "k", "l"}}:svg()
  parse(long)
  lu.assertStrContains(long, 'transform="rotate(-45')
end

function TestPlotHeatmap.test_fmt_and_limits()
  local svg = plot.heatmap{values = {{1, 2}}, annotate = true, fmt = "%.1f", vmin = 0, vmax = 4}:svg()
  lu.assertEquals(texts(svg, "annotation"), {"1.0", "2.0"})
  svg = plot.heatmap{values = {{1, -2}}, annotate = true, fmt = function(v) return v > 0 and "+" or "-" end}:svg()
  lu.assertEquals(texts(svg, "annotation"), {"+", "-"})
  svg = plot.heatmap{values = {{-1.5}}, annotate = true}:svg()
  lu.assertEquals(texts(svg, "annotation"), {MINUS .. "1.5"})
end

function TestPlotHeatmap.test_errors()
  local H = plot.heatmap
  assert_err("mo.plot.heatmap: option 'values' must be a non-empty list of rows (lists of numbers), got nil", H, {})
  assert_err("mo.plot.heatmap: values[2] has 1 values, values[1] has 2", H, {values = {{1, 2}, {3}}})
  assert_err("mo.plot.heatmap: values[1][2] must be a number, got string \"x\"", H, {values = {{1, "x"}}})
  assert_err("mo.plot.heatmap: values[1] is empty", H, {values = {{}}})
  assert_err("mo.plot.heatmap: option 'xticks' must be a list of 2 labels (one per column), got 3 labels", H,
             {values = {{1, 2}}, xticks = {"a", "b", "c"}})
  assert_err("mo.plot.heatmap: option 'yticks' must be a list of 1 labels (one per row), got string \"a\"", H,
             {values = {{1, 2}}, yticks = "a"})
  assert_err("mo.plot.heatmap: xticks[2] must be a string or a number, got a table", H,
             {values = {{1, 2}}, xticks = {"a", {}}})
  assert_err("mo.plot.heatmap: option 'vmin' must be below vmax (1), got 2", H, {values = {{1}}, vmin = 2, vmax = 1})
  assert_err("mo.plot.heatmap: option 'vmin' must be a finite number > 0 (logcolor), got 0", H,
             {values = {{1}}, vmin = 0, logcolor = true})
  assert_err("mo.plot.heatmap: option 'cmap' must be one of 'viridis', 'magma', got string \"jet\"", H,
             {values = {{1}}, cmap = "jet"})
  assert_err("mo.plot.heatmap: unknown option 'annotation'", H, {values = {{1}}, annotation = true})
  assert_err("mo.plot.heatmap: option 'fmt' must be a format string or a function, got 3", H,
             {values = {{1}}, fmt = 3})
  local bad = H{values = {{1.5}}, annotate = true, fmt = "%d"}
  assert_err("mo.plot.heatmap: option 'fmt' string \"%d\" does not format a number", bad.svg, bad)
end

function TestPlotHeatmap.test_nice_ticks()
  lu.assertEquals(plot.nice_ticks(0, 100, 5), {0, 20, 40, 60, 80, 100})
  local t = plot.nice_ticks(0, 1)
  lu.assertEquals(#t, 6)
  for i, v in ipairs{0, 0.2, 0.4, 0.6, 0.8, 1} do lu.assertAlmostEquals(t[i], v, 1e-12) end
  lu.assertEquals(plot.nice_ticks(-7, 7, 7), {-6, -4, -2, 0, 2, 4, 6})
  assert_err("mo.plot.nice_ticks: arguments 'lo' and 'hi' must be finite numbers with lo < hi, got 1 and 1",
             plot.nice_ticks, 1, 1)
end

return {TestPlotLine = TestPlotLine, TestPlotHeatmap = TestPlotHeatmap}
