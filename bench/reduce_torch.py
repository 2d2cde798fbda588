"""bench/reduce_torch.py - the PyTorch reference for bench/reduce_bench.sh: x.sum(1) on a
{4096, 1024} float32 tensor, one thread. Prints "torch_sum_dim2 <median seconds>" (the torch
version on stderr). Needs Debian's python3-torch (1.13); a development tool, not a
dependency: without torch it prints "torch_sum_dim2 unavailable" and exits 0.

With MO_BENCH_CLOCK=cpu in the environment it times CPU time (time.process_time).

usage: /usr/bin/python3 bench/reduce_torch.py [reps]
"""
import os
import sys
import time

try:
    import torch
except ImportError:
    print("torch_sum_dim2 unavailable")
    sys.exit(0)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    torch.set_num_threads(1)
    clock = time.process_time if os.environ.get("MO_BENCH_CLOCK") == "cpu" else time.perf_counter
    x = torch.rand(4096, 1024)
    r = x.sum(1)  # warm
    times = []
    for _ in range(reps):
        t0 = clock()
        r = x.sum(1)
        times.append(clock() - t0)
    assert r.numel() == 4096
    times.sort()
    print("torch %s" % torch.__version__, file=sys.stderr)
    print("torch_sum_dim2 %.9f" % times[len(times) // 2])


if __name__ == "__main__":
    main()
