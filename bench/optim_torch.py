"""bench/optim_torch.py - the PyTorch reference for bench/optim_adamw.c: one AdamW step
(torch.optim.AdamW, defaults, single-tensor path as on CPU) on a 16M-element float32
parameter, one thread (or `threads`). Prints "torch_adamw_16M <median seconds>" (and the torch
version on stderr). Needs Debian's python3-torch (1.13); a development tool, not a dependency: when
torch is missing it prints "torch_adamw_16M unavailable" and exits 0.

usage: /usr/bin/python3 bench/optim_torch.py [reps] [n] [threads]
"""
import sys
import time

try:
    import torch
except ImportError:
    print("torch_adamw_16M unavailable")
    sys.exit(0)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16 << 20
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.set_num_threads(threads)
    idx = torch.arange(n)
    p = torch.nn.Parameter((idx % 101).float() * 0.01 - 0.5)
    p.grad = (idx % 37).float() * 0.003 - 0.05
    opt = torch.optim.AdamW([p], lr=1e-3)
    opt.step()  # state allocated outside the timing, as in the C benchmark
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print("torch %s" % torch.__version__, file=sys.stderr)
    print("torch_adamw_16M %.9f" % times[len(times) // 2])


if __name__ == "__main__":
    main()
