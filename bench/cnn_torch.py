"""bench/cnn_torch.py - the PyTorch 1.13 reference for bench/cnn_moonopt.lua: the same CNN
(Conv2d(1,32,3,p1) ReLU MaxPool2d(2) Conv2d(32,64,3,p1) ReLU MaxPool2d(2) Flatten
Linear(3136,128) ReLU Linear(128,10)), batch 128, torch.optim.AdamW (lr 1e-3),
CrossEntropyLoss, synthetic data of Fashion-MNIST's shape, one thread (PyTorch's CPU
convolutions go through oneDNN here). Per rep, `batches` steps over a fresh permutation
(randperm + index, forward, loss, zero_grad, backward, step); rep 0 warms up.
Prints "cnn_batch_torch <median seconds per batch over reps>"; without torch it prints
"cnn_batch_torch unavailable" and exits 0.

usage: /usr/bin/python3 bench/cnn_torch.py [batches = 40] [reps = 3]
"""
import os
import sys
import time

try:
    import torch
except ImportError:
    print("cnn_batch_torch unavailable")
    sys.exit(0)


def main(batches, reps):
    # BENCH_THREADS (default 1): the intra-op thread count (bench/nn_threads_bench.sh)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    torch.manual_seed(1)
    batch = 128
    n = batches * batch
    x = torch.randn(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times, sink = [], 0.0
    for r in range(reps + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sink += loss.item()
        if r > 0:
            times.append((time.perf_counter() - t0) / batches)
    assert sink == sink, "the loss became NaN"
    times.sort()
    print("cnn_batch_torch %.6f" % times[(len(times) - 1) // 2])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
