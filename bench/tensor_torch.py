#!/usr/bin/python3
"""bench/tensor_torch.py - PyTorch's side of bench/tensor_ops.lua (issue 11), one thread:
  bcast [reps]  a + b with a {1024, 1024} and b {1024} float32 (a new tensor per call, as in
                Lua), the median seconds per call; and a.add_(b) in place;
  small [n]     a + b on 16-element tensors, microseconds per call.
Prints "unavailable" when torch cannot be imported."""
import sys
import time

try:
    import torch
except ImportError:
    print("torch_bcast_add unavailable")
    sys.exit(0)

torch.set_num_threads(1)


def per_call(f, inner, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            f()
        ts.append((time.perf_counter() - t0) / inner)
    ts.sort()
    return ts[len(ts) // 2]


what = sys.argv[1] if len(sys.argv) > 1 else "bcast"
if what == "bcast":
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 21
    torch.manual_seed(1)
    a, b = torch.rand(1024, 1024), torch.rand(1024)
    c = a.clone()
    print("torch_bcast_add %.9f" % per_call(lambda: a + b, 10, reps))
    print("torch_bcast_add_inplace %.9f" % per_call(lambda: c.add_(b), 10, reps))
else:
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    a, b = torch.rand(16), torch.rand(16)
    print("torch_small_add_us %.4f" % (per_call(lambda: a + b, n, 5) * 1e6))
