#!/usr/bin/python3
"""Writes tests/golden/nn_golden.lua: PyTorch 1.13 references for moonopt.nn in float64
(and the same network in float32): a small network Linear(4, 5) -> GELU -> LayerNorm(5) ->
Tanh -> Linear(5, 3) with given weights, its output, the cross-entropy loss (label
smoothing 0.1) and the gradients of every parameter and of the input; every activation's
forward and backward; softmax; MSE and BCE-with-logits losses and their gradients. The
inputs carry a 1e-12 offset that float32 cannot hold, so a float64 path computing in
float32 fails. Run: /usr/bin/python3 tests/golden/make_nn_golden.py (writes the file itself)."""
import os

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(1113)


def mat(*shape):
    return rng.standard_normal(shape) * 0.7 + 1e-12


def lua(v):
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return lua(float(v))
        return "{" + ", ".join(lua(e) for e in v) + "}"
    return repr(float(v))


X, W1, B1 = mat(6, 4), mat(5, 4), mat(5)
G, BETA = 1.0 + mat(5) * 0.3, mat(5) * 0.3
W2, B2 = mat(3, 5), mat(3)
Y = [2, 0, 1, 1, 2, 0]  # 0-based; Lua gets +1
V = mat(7) * 2.0  # activation inputs
GO = mat(7)       # grad_output for the activations
O, T = mat(3, 4), mat(3, 4)
TB = (rng.random((3, 4)) > 0.5).astype(np.float64)


def net(dtype):
    t = lambda a: torch.tensor(a, dtype=dtype, requires_grad=True)  # noqa: E731
    x, w1, b1, g, beta, w2, b2 = (t(a) for a in (X, W1, B1, G, BETA, W2, B2))
    h = F.linear(x, w1, b1)
    h = F.gelu(h)
    h = F.layer_norm(h, (5,), g, beta, 1e-5)
    h = torch.tanh(h)
    out = F.linear(h, w2, b2)
    loss = F.cross_entropy(out, torch.tensor(Y), label_smoothing=0.1)
    loss.backward()
    r = {"out": out, "loss": loss}
    for k, v in (("x", x), ("w1", w1), ("b1", b1), ("g", g), ("beta", beta), ("w2", w2), ("b2", b2)):
        r["d" + k] = v.grad
    return {k: v.detach().numpy().astype(np.float64) for k, v in r.items()}


def acts():
    r = {}
    fns = {
        "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
        "leaky_relu": lambda a: F.leaky_relu(a, 0.2), "gelu": F.gelu,
        "gelu_tanh": lambda a: F.gelu(a, approximate="tanh"),
    }
    for name, f in fns.items():
        v = torch.tensor(V, dtype=torch.float64, requires_grad=True)
        y = f(v)
        y.backward(torch.tensor(GO, dtype=torch.float64))
        r[name] = y.detach().numpy()
        r[name + "_grad"] = v.grad.numpy()
    s = torch.tensor(O, dtype=torch.float64, requires_grad=True)
    y = torch.softmax(s, 1)
    y.backward(torch.tensor(T, dtype=torch.float64))
    r["softmax"], r["softmax_grad"] = y.detach().numpy(), s.grad.numpy()
    return r


def losses():
    r = {}
    for name, f, tgt in (("mse", F.mse_loss, T), ("bce", F.binary_cross_entropy_with_logits, TB)):
        for red in ("mean", "sum"):
            o = torch.tensor(O, dtype=torch.float64, requires_grad=True)
            loss = f(o, torch.tensor(tgt, dtype=torch.float64), reduction=red)
            loss.backward()
            r["%s_%s" % (name, red)] = loss.detach().numpy()
            r["%s_%s_grad" % (name, red)] = o.grad.numpy()
    return r


out = {"X": X, "W1": W1, "B1": B1, "G": G, "BETA": BETA, "W2": W2, "B2": B2,
       "Y": np.array(Y, dtype=np.float64) + 1, "V": V, "GO": GO, "O": O, "T": T, "TB": TB}
out["f64"] = net(torch.float64)
out["f32"] = net(torch.float32)
out.update(acts())
out.update(losses())

lines = ["-- made by tests/golden/make_nn_golden.py (PyTorch %s); do not edit" % torch.__version__,
         "return {"]
for k, v in out.items():
    if isinstance(v, dict):
        lines.append("  %s = {" % k)
        for k2, v2 in v.items():
            lines.append("    %s = %s," % (k2, lua(np.asarray(v2))))
        lines.append("  },")
    else:
        lines.append("  %s = %s," % (k, lua(np.asarray(v))))
lines.append("}")
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn_golden.lua")
with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
