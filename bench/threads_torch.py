"""bench/threads_torch.py - the PyTorch reference for bench/threads_bench.sh: a.add_(b) and
a.sum() over 16M float32 values at the thread count given (torch.set_num_threads). Prints
"torch_add <median s>" and "torch_sum <median s>"; without torch, "torch_add unavailable".
Needs Debian's python3-torch (1.13); never needed to build or test.

usage: /usr/bin/python3 bench/threads_torch.py threads [reps]
"""
import sys
import time

try:
    import torch
except ImportError:
    print("torch_add unavailable")
    sys.exit(0)

N = 16 * 1024 * 1024


def median(f, reps):
    f()  # warm
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[(reps - 1) // 2]


def main():
    threads = int(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 21
    torch.set_num_threads(threads)
    a, b = torch.rand(N), torch.rand(N)
    print("torch_add %.9f" % median(lambda: a.add_(b), reps))
    print("torch_sum %.9f" % median(lambda: a.sum(), reps))


if __name__ == "__main__":
    main()
