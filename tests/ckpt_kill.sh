#!/bin/sh
# tests/ckpt_kill.sh [ROUNDS [SEED]] - kill -9 a process that saves checkpoints in a loop,
# at pseudo-random moments, ROUNDS times (default 20); after every kill the checkpoint
# must load and be whole: either the file from before the interrupted save or the new
# one, never a mixture (each save i stores tensors filled with i and -i and extra.i = i,
# and i never goes back). Then one more save must remove every temporary file the killed
# writers left ("<file>.tmp.<host>.<pid>.<hex>"; core/file.c removes those of dead
# processes). Exit status 0 and a last line "ckpt_kill: ok ..." on success.
#
# Needs LUA_PATH / LUA_CPATH that find moonopt (tests/run.sh sets them; by hand:
#   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" sh tests/ckpt_kill.sh)
# LUA names the interpreter (default lua5.4). The moments come from awk's srand(SEED), so
# a failing SEED can be replayed (the kernel's timing still varies from run to run).
set -u
LUA=${LUA:-lua5.4}
rounds=${1:-20}
seed=${2:-1}
dir=$(mktemp -d "${TMPDIR:-/tmp}/moonopt-kill-XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
file="$dir/run.ckpt"

# The writer: continues from the checkpoint's i (if any) and saves i+1, i+2, ... forever
# (or `limit` saves). 256 KB of tensors, so a save takes long enough to be interrupted.
cat >"$dir/writer.lua" <<'LUA_END'
local ck = require "moonopt.checkpoint"
local mo = require "moonopt"
local file, limit = arg[1], tonumber(arg[2])
local i = 0
local f = io.open(file, "rb")
if f then f:close(); i = ck.load(file, {}).i end
local w, b = mo.zeros(256, 200), mo.zeros(64)
local n = 0
while not limit or n < limit do
  i, n = i + 1, n + 1
  w:fill(i); b:fill(-i)
  ck.save(file, {extra = {i = i, w = w, b = b}})
end
LUA_END

# The checker: the file loads, its parts agree with each other, i did not go back.
cat >"$dir/checker.lua" <<'LUA_END'
local ck = require "moonopt.checkpoint"
local file, last = arg[1], tonumber(arg[2])
local ok, extra = pcall(ck.load, file, {})
if not ok then io.stderr:write("ckpt_kill: the checkpoint does not load: ", tostring(extra), "\n") os.exit(1) end
local i = extra.i
if math.type(i) ~= "integer" or i < last then
  io.stderr:write("ckpt_kill: i went from ", last, " to ", tostring(i), "\n") os.exit(1)
end
if extra.w:min():item() ~= i or extra.w:max():item() ~= i or extra.b:min():item() ~= -i or extra.b:max():item() ~= -i then
  io.stderr:write("ckpt_kill: save ", i, " holds tensors of another save\n") os.exit(1)
end
print(i)
LUA_END

"$LUA" "$dir/writer.lua" "$file" 1 || { echo "ckpt_kill: the first save failed"; exit 1; }
last=1
delays=$(awk -v seed="$seed" -v n="$rounds" 'BEGIN { srand(seed); for (k = 0; k < n; k++) printf "%.3f\n", 0.02 + rand() * 0.12 }')
k=0
torn=0
for d in $delays; do
    k=$((k + 1))
    "$LUA" "$dir/writer.lua" "$file" &
    pid=$!
    sleep "$d"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    # a kill in the middle of a save leaves that writer's temporary file
    left=$(find "$dir" -name "run.ckpt.tmp.*.$pid.*" | wc -l)
    torn=$((torn + left))
    now=$("$LUA" "$dir/checker.lua" "$file" "$last") || { echo "ckpt_kill: round $k (after ${d}s) failed"; exit 1; }
    last=$now
done
# the next successful save removes the temporaries of the dead writers
"$LUA" "$dir/writer.lua" "$file" 1 || { echo "ckpt_kill: the last save failed"; exit 1; }
stale=$(find "$dir" -name 'run.ckpt.tmp.*' | wc -l)
if [ "$stale" -ne 0 ]; then
    echo "ckpt_kill: $stale temporary files left after a successful save:"
    ls "$dir"
    exit 1
fi
echo "ckpt_kill: ok: $rounds kills, $torn of them in the middle of a save (temporary file left, removed by the next save), last save $last, every file whole"
