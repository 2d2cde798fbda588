#!/usr/bin/python3
"""bench/conv_torch.py - the PyTorch 1.13 reference of bench/conv_bench.sh: the same
Conv2d(32, 64, 3, padding 1) on x {128, 32, 14, 14}, forward and backward (grad of x,
weight and bias), one thread; with layer 1, Conv2d(1, 32, 3, padding 1) on
{128, 1, 28, 28} with no grad of x (the CNN's input). Prints "torch_conv_s <median
seconds of forward+backward> fwd_s F bwd_s B min_s <fastest forward+backward>".
usage: conv_torch.py [reps [layer]]"""
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
torch.manual_seed(1)
layer = int(sys.argv[2]) if len(sys.argv) > 2 else 2
c, o, hw = (1, 32, 28) if layer == 1 else (32, 64, 14)
x = torch.randn(128, c, hw, hw, requires_grad=layer != 1)
w = torch.randn(o, c, 3, 3, requires_grad=True)
b = torch.randn(o, requires_grad=True)
gy = torch.randn(128, o, hw, hw)
tf, tb = [], []
for i in range(reps + 1):
    x.grad = w.grad = b.grad = None
    t0 = time.perf_counter()
    y = F.conv2d(x, w, b, 1, 1)
    t1 = time.perf_counter()
    y.backward(gy)
    t2 = time.perf_counter()
    if i > 0:
        tf.append(t1 - t0)
        tb.append(t2 - t1)
tot = sorted(f + g for f, g in zip(tf, tb))
print("torch_conv_s %.5f fwd_s %.5f bwd_s %.5f min_s %.5f" % (
    tot[len(tot) // 2], sorted(tf)[len(tf) // 2], sorted(tb)[len(tb) // 2], tot[0]))
