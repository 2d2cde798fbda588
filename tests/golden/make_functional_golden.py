#!/usr/bin/python3
"""Writes tests/golden/functional_golden.lua: PyTorch 1.13 values and gradients of
torch.nn.functional's layers and losses, for tests/lua/test_functional.lua.

Each case holds its inputs (float64, flat row-major values and shapes), the 1-based class
indices of a classification target where there is one, the weights `wout` that reduce a
non-scalar output to the scalar sum(out * wout), that scalar (`value`) and its gradient
with respect to each input. The same calls are written in Lua in the test, keyed by name;
the test runs them in float64 and in float32.
Run: /usr/bin/python3 tests/golden/make_functional_golden.py (writes the file itself)."""
import os

import torch
import torch.nn.functional as F

torch.manual_seed(13)
F64 = torch.float64


def r(*shape):
    return torch.randn(*shape, dtype=F64)


def u(*shape):
    return torch.rand(*shape, dtype=F64)


T5 = torch.tensor([2, 0, 3, 3, 1])  # 0-based; written 1-based
# with an ignored row (-100, PyTorch's default ignore_index; written as is, the rest 1-based)
T5I = torch.tensor([2, 0, -100, 3, 1])
W4 = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)  # per-class weights

CASES = {
    "linear": (lambda x, w, b: F.linear(x, w, b), [r(4, 5), r(3, 5), r(3)]),
    "linear_nobias": (lambda x, w: F.linear(x, w), [r(4, 5), r(3, 5)]),
    "linear_3d": (lambda x, w, b: F.linear(x, w, b), [r(2, 4, 5), r(3, 5), r(3)]),
    "relu": (F.relu, [r(3, 4)]),
    "gelu": (F.gelu, [r(3, 4)]),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), [r(3, 4)]),
    "sigmoid": (torch.sigmoid, [r(3, 4)]),
    "tanh": (torch.tanh, [r(3, 4)]),
    "softmax": (lambda x: F.softmax(x, dim=1), [r(3, 4)]),
    "log_softmax": (lambda x: F.log_softmax(x, dim=0), [r(3, 4)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (6,), w, b), [r(3, 6), r(6), r(6)]),
    "layer_norm_plain": (lambda x: F.layer_norm(x, (6,), eps=1e-3), [r(2, 3, 6)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, T5), [r(5, 4)]),
    "cross_entropy_sum": (lambda x: F.cross_entropy(x, T5, reduction="sum"), [r(5, 4)]),
    "cross_entropy_none": (lambda x: F.cross_entropy(x, T5, reduction="none"), [r(5, 4)]),
    "cross_entropy_ls": (lambda x: F.cross_entropy(x, T5, label_smoothing=0.1), [r(5, 4)]),
    "nll_loss": (lambda x: F.nll_loss(x, T5), [r(5, 4)]),
    "nll_loss_sum": (lambda x: F.nll_loss(x, T5, reduction="sum"), [r(5, 4)]),
    "mse_loss": (F.mse_loss, [r(3, 4), r(3, 4)]),
    "mse_loss_sum": (lambda a, b: F.mse_loss(a, b, reduction="sum"), [r(3, 4), r(3, 4)]),
    "mse_loss_none": (lambda a, b: F.mse_loss(a, b, reduction="none"), [r(3, 4), r(3, 4)]),
    "l1_loss": (F.l1_loss, [r(3, 4), r(3, 4)]),
    "smooth_l1_loss": (F.smooth_l1_loss, [r(3, 4), r(3, 4)]),
    "smooth_l1_loss_beta": (lambda a, b: F.smooth_l1_loss(a, b, reduction="sum", beta=0.5),
                            [r(3, 4), r(3, 4)]),
    "bce_logits": (F.binary_cross_entropy_with_logits, [r(3, 4), u(3, 4)]),
    "bce_logits_sum": (lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="sum"),
                       [r(3, 4), u(3, 4)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), [r(2, 3, 5, 5), r(4, 3, 3, 3), r(4)]),
    "conv2d_strided": (lambda x, w: F.conv2d(x, w, None, stride=2, padding=(1, 0), dilation=(1, 2),
                                             groups=2),
                       [r(1, 4, 7, 7), r(2, 2, 3, 3)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [r(2, 3, 4, 6)]),
    "max_pool2d_pad": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1), [r(1, 2, 5, 5)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2), [r(2, 3, 4, 6)]),
    "avg_pool2d_pad": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
                       [r(1, 2, 5, 5)]),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, torch.zeros(3, dtype=F64),
                                                      torch.ones(3, dtype=F64), w, b, training=True),
                         [r(4, 3, 2, 2), r(3), r(3)]),
    "batch_norm_eval": (lambda x, w, b: F.batch_norm(x, torch.tensor([0.1, -0.2, 0.3], dtype=F64),
                                                     torch.tensor([1.5, 0.5, 2.0], dtype=F64), w, b),
                        [r(4, 3, 2, 2), r(3), r(3)]),
    # per-class weights and ignore_index (added last: the cases above keep their draws)
    "cross_entropy_w": (lambda x: F.cross_entropy(x, T5, weight=W4), [r(5, 4)]),
    "cross_entropy_ignore_sum": (lambda x: F.cross_entropy(x, T5I, reduction="sum"), [r(5, 4)]),
    "cross_entropy_w_ignore_ls": (lambda x: F.cross_entropy(x, T5I, weight=W4, label_smoothing=0.2),
                                  [r(5, 4)]),
    "cross_entropy_ignore_ls": (lambda x: F.cross_entropy(x, T5I, label_smoothing=0.2), [r(5, 4)]),
    "cross_entropy_w_ignore_none": (lambda x: F.cross_entropy(x, T5I, weight=W4, reduction="none",
                                                              label_smoothing=0.1), [r(5, 4)]),
    "nll_loss_w_ignore": (lambda x: F.nll_loss(x, T5I, weight=W4), [r(5, 4)]),
    "nll_loss_ignore_sum": (lambda x: F.nll_loss(x, T5I, reduction="sum"), [r(5, 4)]),
}


def fmt(v):
    return repr(float(v))


def tensor(t):
    t = t.detach().contiguous()
    return "{shape = {%s}, data = {%s}}" % (", ".join(str(s) for s in t.shape),
                                            ", ".join(fmt(v) for v in t.reshape(-1).tolist()))


def main():
    lines = ["-- generated by tests/golden/make_functional_golden.py (PyTorch %s); do not edit"
             % torch.__version__, "return {", "target5 = {%s}," % ", ".join(str(int(i) + 1) for i in T5),
             "target5i = {%s}," % ", ".join(str(int(i) + (1 if i >= 0 else 0)) for i in T5I),
             "weight4 = {%s}," % ", ".join(fmt(v) for v in W4.tolist()),
             "cases = {"]
    for name, (fn, ins) in CASES.items():
        ins = [t.clone().requires_grad_() for t in ins]
        out = fn(*ins)
        wout = None
        if out.dim() > 0:
            wout = r(*out.shape)
            f = (out * wout).sum()
        else:
            f = out
        grads = torch.autograd.grad(f, ins)
        parts = ["inputs = {%s}" % ", ".join(tensor(t) for t in ins),
                 "value = %s" % fmt(f), "grads = {%s}" % ", ".join(tensor(g) for g in grads)]
        if wout is not None:
            parts.append("wout = %s" % tensor(wout))
        lines.append("  %s = {%s}," % (name, ", ".join(parts)))
    lines += ["},", "}", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functional_golden.lua")
    with open(path, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
