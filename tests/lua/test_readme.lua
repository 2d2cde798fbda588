-- tests/lua/test_readme.lua - the README's ten-line example runs and does what it says.
local lu = require "luaunit"

local TestReadme = {}

local function readme_example()
  local f = assert(io.open("README.md", "r"))
  local text = f:read("a")
  f:close()
  local section = text:match("## Ten lines of Lua(.-)\n## ")
  assert(section, "README.md has no 'Ten lines of Lua' section")
  return assert(section:match("```lua\n(.-)```"), "no lua block in the section")
end

function TestReadme.test_example_reaches_rosenbrock_minimum()
  local code = readme_example()
  local printed = {}
  local env = setmetatable({print = function(...) printed[#printed + 1] = {...} end}, {__index = _G})
  local chunk = assert(load(code, "=README.md", "t", env))
  chunk()
  lu.assertEquals(#printed, 1)
  lu.assertAlmostEquals(printed[1][1], 1, 1e-3)
  lu.assertAlmostEquals(printed[1][2], 1, 1e-3)
end

return {TestReadme = TestReadme}
