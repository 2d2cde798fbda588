#!/usr/bin/python3
"""Writes tests/golden/elementwise_golden.lua: PyTorch 1.13 results of the elementwise family
(unary math, broadcasting binary ops, comparisons, maximum/minimum, where, masked_fill, clamp)
in float32 and float64, for tests/lua/test_elementwise.lua.

Inputs are drawn in each dtype and written as exact decimal doubles, so moonopt builds the very
same tensors. Shapes exercise broadcasting: x {3, 4} against a row r {4}, a column c {3, 1},
a 0-d s, a {2, 1, 4} block; the "special" vectors hold NaN, +-inf and signed zeros.
Run from the repository root: /usr/bin/python3 tests/golden/make_elementwise_golden.py"""
import math
import torch

OUT = "tests/golden/elementwise_golden.lua"


def num(v):
    v = float(v)
    if math.isnan(v):
        return "0/0"
    if math.isinf(v):
        return "math.huge" if v > 0 else "-math.huge"
    return repr(v)


def lua(t):
    """{shape = {...}, data = {flat row-major values}}"""
    t = t.detach().contiguous()
    shape = "{" + ", ".join(str(s) for s in t.shape) + "}"
    data = "{" + ", ".join(num(v) for v in t.reshape(-1).tolist()) + "}"
    return "{shape = %s, data = %s}" % (shape, data)


def cases(dt):
    g = torch.Generator().manual_seed(11 if dt == torch.float32 else 64)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dt)

    x = randn(3, 4)
    pos = x.abs() + 0.25
    r = randn(4)
    c = randn(3, 1)
    s = randn(())               # 0-d
    blk = randn(2, 1, 4)
    # halves and small integers: equal values for the comparisons, ties for round
    q = (randn(3, 4) * 2).round() / 2
    qr = (randn(4) * 2).round() / 2
    sp = torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.5, -2.5, 2.5], dtype=dt)
    sp2 = torch.tensor([1.0, math.nan, 2.0, -0.0, 0.0, math.inf, -math.inf, 2.5], dtype=dt)
    mask = (randn(3, 4) > 0).to(dt)
    mrow = (randn(4) > 0).to(dt)
    out = {"x": x, "pos": pos, "r": r, "c": c, "s": s, "blk": blk, "q": q, "qr": qr,
           "sp": sp, "sp2": sp2, "mask": mask, "mrow": mrow}
    unary = {"exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
             "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "abs": torch.abs, "sign": torch.sign,
             "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "tanh": torch.tanh,
             "sigmoid": torch.sigmoid, "relu": torch.relu, "floor": torch.floor,
             "ceil": torch.ceil, "round": torch.round, "neg": torch.neg, "erf": torch.erf}
    for name, f in unary.items():
        src = pos if name in ("log", "sqrt", "rsqrt", "log1p") else (x * 3 if name in (
            "floor", "ceil", "round") else x)
        out["u_" + name] = f(src)
        out["sp_" + name] = f(sp)
    out["round_q"] = torch.round(q)
    out["clamp"] = x.clamp(-0.3, 0.7)
    out["clamp_lo"] = x.clamp(min=-0.3)
    out["clamp_hi"] = x.clamp(max=0.2)
    out["sp_clamp"] = sp.clamp(-1, 1)
    binary = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
              "maximum": torch.maximum, "minimum": torch.minimum}
    for name, f in binary.items():
        out["xr_" + name] = f(x, r)
        out["cx_" + name] = f(c, x)
        out["xs_" + name] = f(x, s)
        out["blkc_" + name] = f(blk, c)      # {2, 1, 4} with {3, 1} -> {2, 3, 4}
        out["sp_" + name + "2"] = f(sp, sp2)
    out["pow_pr"] = torch.pow(pos, r)
    out["pow_pc"] = torch.pow(pos, c)
    for name in ("eq", "ne", "lt", "le", "gt", "ge"):
        f = getattr(torch, name)
        out["cmp_" + name] = f(q, qr).to(dt)
        out["cmpn_" + name] = f(q, 0.5).to(dt)
        out["cmpsp_" + name] = f(sp, sp2).to(dt)
    # numbers on either side
    out["n_rsub"] = 2 - x
    out["n_rdiv"] = 1 / x
    out["n_sub"] = x - 0.1
    out["n_powh"] = pos ** 0.5
    out["n_rpow"] = 2 ** x
    out["n_pow3"] = x ** 3
    out["where_xr"] = torch.where(mask != 0, x, r)
    out["where_rn"] = torch.where(mrow != 0, x, torch.tensor(-1.0, dtype=dt))
    out["where_nn"] = torch.where(mask != 0, torch.tensor(2.0, dtype=dt),
                                  torch.tensor(-3.0, dtype=dt))
    out["masked_fill"] = x.masked_fill(mrow != 0, 9.5)
    out["masked_fill_m"] = x.masked_fill(mask != 0, -0.25)
    # non-contiguous: the transpose of x plus a column, a narrowed x times a stride-0 row
    out["xt_c"] = x.t() + torch.ones(4, 1, dtype=dt) * 0.5
    out["xn_r"] = x[:, 1:3] * r[1:3]
    return out


def main():
    lines = ["-- made by tests/golden/make_elementwise_golden.py (PyTorch %s); do not edit"
             % torch.__version__, "return {"]
    for dt, key in ((torch.float32, "float32"), (torch.float64, "float64")):
        lines.append("  %s = {" % key)
        for k, v in cases(dt).items():
            lines.append("    %s = %s," % (k, lua(v)))
        lines.append("  },")
    lines.append("}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
