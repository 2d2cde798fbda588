#!/usr/bin/python3
"""Writes tests/golden/gaps_golden.lua: PyTorch 1.13 references, in float32 and float64,
for reductions over several dims at once (sum, mean, std, var, logsumexp, norm with a
list of dims, keepdim, negative dims, a transposed input), clamp with tensor bounds
(broadcasting, lo > hi), addcmul/addcdiv with broadcasting operands, the in-place
comparisons and dot. Inputs carry a 1e-12 offset that float32 cannot hold.
Run: /usr/bin/python3 tests/golden/make_gaps_golden.py (writes the file itself)."""
import os

import numpy as np
import torch

rng = np.random.default_rng(1111)
X = rng.standard_normal((2, 3, 4)) + 1e-12
LO = rng.standard_normal((3, 1)) * 0.5 - 0.3
HI = rng.standard_normal((4,)) * 0.5 + 0.3
T1 = rng.standard_normal((3, 1))
T2 = rng.standard_normal((4,)) + 2.0
A = rng.standard_normal((2, 3, 4))
V = rng.standard_normal((5,)) + 1e-12
W = rng.standard_normal((5,))


def lua(v):
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return lua(float(v))
        return "{" + ", ".join(lua(e) for e in v) + "}"
    return repr(float(v))


def refs(dt):
    x = torch.tensor(X, dtype=dt)
    xt = x.transpose(0, 2)  # {4, 3, 2}, non-contiguous
    r = {}
    for name, dims in (("13", (0, 2)), ("23", (1, 2)), ("123", (0, 1, 2)), ("m1m3", (-1, -3))):
        r["sum_" + name] = x.sum(dims)
        r["mean_" + name] = x.mean(dims)
        r["std_" + name] = x.std(dims)
        r["var_" + name] = x.var(dims, unbiased=False)
        r["lse_" + name] = torch.logsumexp(x, dims)
        r["norm_" + name] = torch.norm(x, p=3, dim=dims)
    r["sum_13_keep"] = x.sum((0, 2), keepdim=True)
    r["std_23_keep"] = x.std((1, 2), keepdim=True)
    r["sum_t12"] = xt.sum((0, 1))
    r["var_t13"] = xt.var((0, 2))
    lo, hi = torch.tensor(LO, dtype=dt), torch.tensor(HI, dtype=dt)
    r["clamp_tt"] = torch.clamp(x, min=lo, max=hi)
    r["clamp_lo"] = torch.clamp(x, min=lo)
    r["clamp_hi"] = torch.clamp(x, max=hi)
    r["clamp_tn"] = torch.clamp(x, min=lo, max=torch.tensor(0.2, dtype=dt))
    a = torch.tensor(A, dtype=dt)
    t1, t2 = torch.tensor(T1, dtype=dt), torch.tensor(T2, dtype=dt)
    r["addcmul"] = torch.addcmul(a, t1, t2, value=0.7)
    r["addcdiv"] = torch.addcdiv(a, t1, t2, value=-1.5)
    small = torch.tensor(T1, dtype=dt)  # {3, 1} self broadcasting against t2 {4}
    r["addcmul_grow"] = torch.addcmul(small, t1, t2)
    for op in ("eq", "ne", "lt", "le", "gt", "ge"):
        y = x.clone()
        getattr(y, op + "_")(torch.tensor(HI, dtype=dt))
        r[op + "_"] = y
    r["lt_scalar_"] = x.clone().lt_(0.1)
    r["dot"] = torch.dot(torch.tensor(V, dtype=dt), torch.tensor(W, dtype=dt))
    return {k: v.numpy().astype(np.float64) for k, v in r.items()}


out = {"X": X, "LO": LO, "HI": HI, "T1": T1, "T2": T2, "A": A, "V": V, "W": W,
       "f64": refs(torch.float64), "f32": refs(torch.float32)}
lines = ["-- made by tests/golden/make_gaps_golden.py (PyTorch %s); do not edit" % torch.__version__,
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
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gaps_golden.lua")
with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
