#!/bin/sh
# bench/autograd_instructions.sh - what recording costs, in instructions (issue 12): the
# instructions valgrind's callgrind counts for N calls of a small op on a 16-element tensor,
# plain and recorded (the tensor requires grad), per call, from the difference of a run of
# 21000 calls and one of 1000 (start-up cancels). Unlike the timings of
# bench/autograd_overhead.lua these counts do not depend on the machine's load, so they
# compare two builds exactly; they include the collector's work the calls cause.
#   usage: sh bench/autograd_instructions.sh [op ...]   (ops: idx view mul add1 sum exp;
#   default all). Environment as bench/run.sh sets it (LUA, LUA_PATH, LUA_CPATH).
set -e
LUA=${LUA:-lua5.4}
command -v valgrind >/dev/null || { echo "autograd_instructions: needs valgrind" >&2; exit 1; }
ops=${*:-idx view mul add1 sum exp}
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat > "$script" <<'EOF'
local mo = require "moonopt"
local op, n, rec = arg[1], tonumber(arg[2]), arg[3] == "rec"
local x = mo.randn({16}, {requires_grad = rec})
local w = mo.randn(16)
local f = ({
  idx = function(v) return v[3] end,
  view = function(v) return v:view{4, 4} end,
  mul = function(v) return v * w end,
  add1 = function(v) return v + 1 end,
  sum = function(v) return v:sum() end,
  exp = function(v) return v:exp() end,
})[op]
assert(f, "unknown op " .. tostring(op))
for _ = 1, n do f(x) end
EOF
ir() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$LUA" "$script" "$1" "$2" "$3" 2>&1 |
        awk '/Collected/ {print $NF}'
}
printf '%-6s %14s %14s %14s\n' op "plain/call" "recorded/call" "recording"
for op in $ops; do
    p0=$(ir "$op" 1000 plain); p1=$(ir "$op" 21000 plain)
    r0=$(ir "$op" 1000 rec); r1=$(ir "$op" 21000 rec)
    printf '%-6s %14d %14d %14d\n' "$op" $(((p1 - p0) / 20000)) $(((r1 - r0) / 20000)) \
        $((((r1 - r0) - (p1 - p0)) / 20000))
done
