-- tests/lua/test_docs.lua - keeps the documentation honest:
--   * every public name of the Lua API (found by introspection, tools/api_names.lua) has an
--     entry in docs/api.md: a code span that starts with the name, e.g. `mo.zeros(...)`,
--     `t:add(v)`, `mo.data.fashion_mnist_dir`;
--   * every entry of docs/api.md (a heading or a table row starting with a code span) names
--     something that exists;
--   * every top-level module under lua/moonopt/ is classified as public or internal;
--   * relative links in docs/*.md point at files that exist (and anchors at headings).
-- (tests/lua/test_guide.lua runs every Lua example of docs/guide.md.)
-- Run from the repository root (tests/run.sh does).
local lu = require "luaunit"

local api = dofile("tools/api_names.lua")

local function read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return s
end

-- The characters that may follow a name at the start of a code span.
local FOLLOW = {["("] = true, ["`"] = true, ["{"] = true, [" "] = true, ["["] = true}

-- Whether `doc` has a code span starting with `name` (followed by one of FOLLOW).
local function has_entry(doc, name)
  local needle = "`" .. name
  local from = 1
  while true do
    local s, e = doc:find(needle, from, true)
    if not s then return false end
    if FOLLOW[doc:sub(e + 1, e + 1)] then return true end
    from = e + 1
  end
end

-- The API names the entries of docs/api.md document: the first code span of every heading
-- ("### `mo.clock()`") and of every table row's first cell ("| `t:get(i, j, ...)` | ...").
local function entry_names(doc)
  local names = {}
  for line in doc:gmatch("[^\n]+") do
    local span = line:match("^#+ `([^`]+)`") or line:match("^| `([^`]+)`")
    if span then
      local name = span:match("^([%w_%.:]+)")
      -- only names in API form: mo.x, mo.x.y, t:x, Class:x (not `t + u`, `#t`, options)
      if name and not name:find("__", 1, true)
          and (name:match("^mo%.") or name:match("^core%.") or name:match("^[%a_][%w_]*:[%a_][%w_]*$")) then
        names[#names + 1] = name
      end
    end
  end
  return names
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local TestDocsApi = {}

function TestDocsApi:setUp()
  self.doc = read("docs/api.md")
  self.names = api.names()
end

function TestDocsApi:test_introspection_finds_the_api()
  -- a sanity check of the lister itself: a few names from every corner of the API
  local names = set_of(self.names)
  for _, n in ipairs{"mo.zeros", "mo.matmul", "t:add_", "t:view", "mo.nn.Linear", "m:backward",
                     "mo.optim.AdamW", "opt:step", "mo.sched.WarmupCosine", "sched:lr_at",
                     "mo.data.batches", "loader:epoch", "mo.train.fit", "mo.plot.line", "p:svg",
                     "mo.progress.new", "bar:update", "Sequential:add"} do
    lu.assertTrue(names[n], "tools/api_names.lua did not find " .. n)
  end
  lu.assertTrue(#self.names > 150)
end

function TestDocsApi:test_every_public_name_has_an_entry()
  local missing = {}
  for _, name in ipairs(self.names) do
    if not has_entry(self.doc, name) then missing[#missing + 1] = name end
  end
  lu.assertEquals(missing, {}, "public names without an entry in docs/api.md (add a row or a "
                  .. "heading starting with `name...`): " .. table.concat(missing, ", "))
end

function TestDocsApi:test_every_entry_names_something_real()
  local names = set_of(self.names)
  local stale = {}
  for _, name in ipairs(entry_names(self.doc)) do
    if not names[name] then stale[#stale + 1] = name end
  end
  lu.assertEquals(stale, {}, "docs/api.md documents names the code does not have: "
                  .. table.concat(stale, ", "))
end

function TestDocsApi.test_entry_check_sees_the_entries()
  -- the entry parser must find entries in both forms, or the test above proves nothing
  local found = set_of(entry_names(read("docs/api.md")))
  lu.assertTrue(found["mo.clock"])      -- a heading
  lu.assertTrue(found["t:get"])         -- a table row
  lu.assertTrue(found["mo.nn.Linear"])
  lu.assertFalse(has_entry("`t:add_(x)`", "t:add"))
  lu.assertTrue(has_entry("| `t:add(v)` |", "t:add"))
end

function TestDocsApi.test_every_module_is_classified()
  local files = api.module_files("lua/moonopt")
  lu.assertNotNil(files, "cannot list lua/moonopt")
  local known = set_of(api.PUBLIC_MODULES)
  for _, m in ipairs(api.INTERNAL_MODULES) do known[m] = true end
  for _, m in ipairs(api.SEPARATE_MODULES) do known[m] = true end
  local unknown = {}
  for _, m in ipairs(files) do
    if not known[m] then unknown[#unknown + 1] = m end
  end
  lu.assertEquals(unknown, {}, "new modules under lua/moonopt/: add each to PUBLIC_MODULES "
                  .. "(and document it in docs/api.md) or INTERNAL_MODULES in tools/api_names.lua: "
                  .. table.concat(unknown, ", "))
end

local TestDocsLinks = {}

-- GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
local function slug(heading)
  return (heading:lower():gsub("[^%w%- _]", ""):gsub(" ", "-"))
end

local function anchors(doc)
  local set = {}
  for heading in doc:gmatch("\n#+ ([^\n]+)") do set[slug(heading)] = true end
  return set
end

function TestDocsLinks.test_relative_links_resolve()
  local p = assert(io.popen('ls docs/*.md 2>/dev/null'))
  local paths = {}
  for path in p:lines() do paths[#paths + 1] = path end
  p:close()
  local broken = {}
  for _, path in ipairs(paths) do
    local doc = read(path)
    for target in doc:gmatch("%]%(([^)%s]+)%)") do
      local file, anchor = target:match("^([^#]*)#?(.*)$")
      if not file:match("^%a+:") then
        local text = file == "" and doc or nil
        if file ~= "" then
          local f = io.open("docs/" .. file, "r")
          if f then text = f:read("a"); f:close() end
        end
        if text == nil or (anchor ~= "" and not anchors("\n" .. text)[anchor]) then
          broken[#broken + 1] = path .. " -> " .. target
        end
      end
    end
  end
  lu.assertEquals(broken, {}, "broken links: " .. table.concat(broken, ", "))
  lu.assertEquals(slug("mo: creating tensors"), "mo-creating-tensors")
  lu.assertEquals(slug("`mo.clock()`"), "moclock")
end

return {TestDocsApi = TestDocsApi, TestDocsLinks = TestDocsLinks}
