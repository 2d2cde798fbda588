"""bench/nn_torch.py - the PyTorch reference for bench/nn_mlp.lua (issue 4's numbers), the
same models, batches, optimizers and loops, one thread:

  fashion: MLP 784-256-128-10 (ReLU), batch 128, torch.optim.AdamW (lr 1e-3, defaults),
           CrossEntropyLoss, synthetic data of Fashion-MNIST's shape (60,000 x 784), one
           shuffled pass per epoch (randperm + index, as a hand-written loop does).
           Prints "nn_fashion_epoch_torch <median seconds per epoch>".
  small:   MLP 2-32-32-1 (ReLU), batch 32, torch.optim.Adam (lr 1e-3), MSELoss, cycling over
           32 fixed batches. Prints "nn_small_step_torch <median seconds per step>".

Every step: forward, loss, zero_grad, backward, step (the inputs do not require a gradient,
so autograd skips the input gradient, as moonopt's model:backward(x, g, false) does).
Needs Debian's python3-torch (1.13); a development tool, not a dependency: without torch it
prints "<name> unavailable" and exits 0.

usage: /usr/bin/python3 bench/nn_torch.py fashion [epochs = 3] | small [steps = 2000] [reps = 7]
"""
import os
import sys
import time

WHAT = sys.argv[1] if len(sys.argv) > 1 else "small"
NAME = "nn_fashion_epoch_torch" if WHAT == "fashion" else "nn_small_step_torch"

try:
    import torch
except ImportError:
    print("%s unavailable" % NAME)
    sys.exit(0)


def median(xs):
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 2]


def fashion(epochs):
    torch.manual_seed(1)
    n, batch = 60000, 128
    x = torch.randn(n, 784)
    y = torch.randint(0, 10, (n,))
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times, sink = [], 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            xb, yb = x[idx], y[idx]
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sink += loss.item()
        times.append(time.perf_counter() - t0)
    assert sink == sink, "the loss became NaN"
    print("%s %.6f" % (NAME, median(times)))


def small(steps, reps):
    torch.manual_seed(2)
    batch, nb = 32, 32
    x = torch.randn(batch * nb, 2)
    y = x.sum(1, keepdim=True) * 0.5
    xs = [x[i * batch:(i + 1) * batch] for i in range(nb)]
    ys = [y[i * batch:(i + 1) * batch] for i in range(nb)]
    model = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 1))
    loss_fn = torch.nn.MSELoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run(count):
        sink = 0.0
        for s in range(count):
            i = s % nb
            loss = loss_fn(model(xs[i]), ys[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sink += loss.item()
        return sink

    run(200)  # allocator warm-up and optimizer state, as in bench/nn_mlp.lua
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sink = run(steps)
        times.append((time.perf_counter() - t0) / steps)
        assert sink == sink, "the loss became NaN"
    print("%s %.9f" % (NAME, median(times)))


def main():
    # BENCH_THREADS (default 1): the intra-op thread count (bench/nn_threads_bench.sh)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    print("torch %s" % torch.__version__, file=sys.stderr)
    if WHAT == "fashion":
        fashion(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    elif WHAT == "small":
        small(int(sys.argv[2]) if len(sys.argv) > 2 else 2000,
              int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
