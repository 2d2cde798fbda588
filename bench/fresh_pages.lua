-- bench/fresh_pages.lua - what a new 4 MB result costs beyond the arithmetic: `a + b` and
-- `a:clone()` (a new {1024, 1024} float32 tensor each call) against the same add in place.
-- Before the binding's allocator cache (lua/binding/alloc.c) the gap was the first touch of
-- fresh pages (glibc hands freed large blocks back to the system, and the collector freed
-- temporaries in batches): a + b 774 us, a:clone() 456 us, a:add_(b) 95 us. What is left is
-- the result living in a different block than the one just read: the store misses the cache
-- and the line is read before it is written (12 MB of traffic for 8), and with 4 KB pages the
-- three 4 MB blocks of `c = a + b` (a, the result, the previous result still held) need
-- about as many TLB entries as the core has, which is why blocks of 2 MB and up now get
-- transparent huge pages (docs/design.md "Memory ownership"). Compare with
--   MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864
-- set in the same command. Prints the best of 5 rounds, microseconds per call.
-- usage: OPENBLAS_NUM_THREADS=1 lua5.4 bench/fresh_pages.lua [calls per round]
local mo = require "moonopt"

local calls = tonumber(arg[1]) or 200
local a, b = mo.randn(1024, 1024), mo.randn(1024)

local function bench(name, f)
  local best = math.huge
  for _ = 1, 5 do
    local t0 = mo.clock()
    for _ = 1, calls do f() end
    best = math.min(best, (mo.clock() - t0) / calls)
  end
  print(string.format("%-26s %8.1f us", name, best * 1e6))
end

bench("a + b (new result)", function() local _ = a + b end)
bench("a:clone() (new result)", function() local _ = a:clone() end)
bench("a:add_(b) (in place)", function() a:add_(b) end)
