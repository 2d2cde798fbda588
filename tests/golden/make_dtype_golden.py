#!/usr/bin/python3
"""Writes tests/golden/dtype_golden.lua: float64 references for every tensor op of
moonopt's Lua API, computed by NumPy in float64 (PyTorch 1.13's float64 kernels agree to
the last bit or two on these). Inputs are chosen so that float32 could not reproduce the
outputs (values like 0.1 + 1e-12), which makes a float64 path that secretly runs in float32
fail. Run: /usr/bin/python3 tests/golden/make_dtype_golden.py > tests/golden/dtype_golden.lua"""
import numpy as np

rng = np.random.default_rng(11)
x = (rng.standard_normal((3, 4)) + 1e-12).astype(np.float64)
y = (rng.standard_normal((3, 4)) * 0.5 + 0.1 + 1e-12).astype(np.float64)
pos = np.abs(x) + 0.25
m = rng.standard_normal((4, 5))


def lua(v):
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return lua(float(v))
        return "{" + ", ".join(lua(e) for e in v) + "}"
    return repr(float(v)) if np.isfinite(v) else ("math.huge" if v > 0 else "-math.huge")


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


out = {
    "x": x, "y": y, "pos": pos, "m": m,
    "neg": -x, "exp": np.exp(x), "tanh": np.tanh(x), "sigmoid": sigmoid(x),
    "relu": np.maximum(x, 0), "abs": np.abs(x), "sign": np.sign(x),
    "sqrt": np.sqrt(pos), "log": np.log(pos),
    "add": x + y, "sub": x - y, "mul": x * y, "div": x / y,
    "add_s": x + 0.1, "rsub_s": 0.1 - x, "rdiv_s": 0.1 / y,
    "pow3": pos ** 3.0, "pow2": x ** 2.0, "powh": pos ** 0.5,
    "clamp": np.clip(x, -0.3, 0.7),
    "addcmul": x + 0.3 * x * y, "addcdiv": x + 0.3 * x / y,
    "sum": x.sum(), "mean": x.mean(), "max": x.max(), "min": x.min(),
    "sum1": x.sum(0), "sum2": x.sum(1), "mean2": x.mean(1), "max1": x.max(0),
    "min2": x.min(1), "argmax2": x.argmax(1) + 1.0,
    "dot": (x * y).sum(), "norm": np.sqrt((x * x).sum()),
    "matmul": x @ m, "matmul_tt": (x.T).T @ m,
}
print("-- made by tests/golden/make_dtype_golden.py (NumPy float64); do not edit")
print("return {")
for k, v in out.items():
    print("  %s = %s," % (k, lua(np.asarray(v))))
print("}")
