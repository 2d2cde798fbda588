#!/usr/bin/python3
"""make_index_golden.py - write tests/golden/index_golden.lua, the golden vectors of the index
family: index_select, gather, scatter_add, torch.matmul for 1-d, 2-d and 3-d operands, and
linspace / eye.

Run from anywhere with Debian's python3 (PyTorch 1.13):

    /usr/bin/python3 tests/golden/make_index_golden.py

Every result is computed by PyTorch in float32 AND float64 (keys f32 / f64) from the same
float64 inputs (rounded to float32 for the f32 run). Index tensors are written 1-based, as
moonopt reads them (PyTorch gets them minus 1). Inputs with "_t" in a case's args are
transposed before the op (the Lua test passes the transposed VIEW, a non-contiguous input).
Values are printed with repr(), so they read back bit-exact. Deterministic: a fixed seed.
"""
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "index_golden.lua")
g = torch.Generator().manual_seed(11)


def randn(*shape):
    # float64 values with bits below float32's precision, so a float64 path that runs in
    # float32 fails the f64 comparison
    return torch.randn(*shape, generator=g, dtype=torch.float64) + 1e-9


def lua(v):
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:
            return lua(v.item())
        return "{" + ", ".join(lua(e) for e in v) + "}"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua(e) for e in v) + "}"
    if isinstance(v, str):
        return '"%s"' % v
    return repr(float(v))


inputs = {
    "x": randn(3, 4),
    "y": randn(2, 3, 4),
    "s": randn(3, 4),
    "base": randn(3, 4),
    "v3": randn(3),
    "v4": randn(4),
    "m34": randn(3, 4),
    "m45": randn(4, 5),
    "b234": randn(2, 3, 4),
    "b245": randn(2, 4, 5),
    "b134": randn(1, 3, 4),
    "b235": randn(2, 3, 5),
}
# 1-based index tensors (written as they are; PyTorch sees them minus 1)
index = {
    "i_sel": [3, 1, 3],
    "i_sel4": [4, 1, 2, 4, 3],
    "i_g1": [[3, 1, 2, 3], [1, 1, 3, 2]],        # gather dim 1 of x {3, 4}
    "i_g2": [[4, 1], [2, 2], [1, 3]],            # gather dim 2 of x
    "i_g3": [[[2, 1, 3, 1], [3, 3, 1, 2]], [[1, 2, 2, 3], [3, 1, 1, 1]]],  # dim 2 of y {2,3,4}
    "i_s1": [[1, 3, 1, 2], [1, 1, 3, 3], [2, 2, 2, 1]],                    # scatter dim 1
    "i_s2": [[4, 4, 1], [2, 3, 2], [1, 1, 1]],                              # scatter dim 2
}


def ix(name):
    return torch.tensor(index[name], dtype=torch.int64) - 1


def arg(name, dt):
    t = inputs[name[:-2]] if name.endswith("_t") else inputs[name]
    t = t.to(dt)
    return t.t() if name.endswith("_t") else t


# (name, op, args): each arg a name in inputs (optionally "_t": transposed), an index
# name or a number
cases = [
    ("sel_d1", "index_select", ["x", 1, "i_sel"]),
    ("sel_d2", "index_select", ["x", 2, "i_sel"]),
    ("sel_d2_t", "index_select", ["x_t", 1, "i_sel4"]),
    ("sel_3d", "index_select", ["y", 3, "i_sel4"]),
    ("gather_d1", "gather", ["x", 1, "i_g1"]),
    ("gather_d2", "gather", ["x", 2, "i_g2"]),
    ("gather_d2_t", "gather", ["x_t", 2, "i_g1"]),
    ("gather_3d", "gather", ["y", 2, "i_g3"]),
    ("scatter_d1", "scatter_add", ["base", 1, "i_s1", "s"]),
    ("scatter_d2", "scatter_add", ["base", 2, "i_s2", "s"]),
    ("scatter_d2_t", "scatter_add", ["base", 2, "i_s2", "s_t"]),
    ("mm_vv", "matmul", ["v4", "v4"]),
    ("mm_vm", "matmul", ["v4", "m45"]),
    ("mm_mv", "matmul", ["m34", "v4"]),
    ("mm_mm", "matmul", ["m34", "m45"]),
    ("mm_mm_t", "matmul", ["m45_t", "m34_t"]),
    ("mm_bb", "matmul", ["b234", "b245"]),
    ("mm_bm", "matmul", ["b234", "m45"]),
    ("mm_mb", "matmul", ["m34", "b245"]),
    ("mm_1b", "matmul", ["b134", "b245"]),
    ("mm_bv", "matmul", ["b234", "v4"]),
    ("mm_vb", "matmul", ["v3", "b235"]),
]


def run(op, args, dt):
    if op == "index_select":
        return torch.index_select(arg(args[0], dt), args[1] - 1, ix(args[2]))
    if op == "gather":
        return torch.gather(arg(args[0], dt), args[1] - 1, ix(args[2]))
    if op == "scatter_add":
        return arg(args[0], dt).scatter_add(args[1] - 1, ix(args[2]), arg(args[3], dt))
    return torch.matmul(arg(args[0], dt), arg(args[1], dt))


def main():
    lines = ["-- made by tests/golden/make_index_golden.py (PyTorch %s); do not edit"
             % torch.__version__, "return {", "  inputs = {"]
    for k, v in inputs.items():
        lines.append("    %s = %s," % (k, lua(v)))
    lines.append("  },")
    lines.append("  index = {")
    for k, v in index.items():
        lines.append("    %s = %s," % (k, lua(torch.tensor(v, dtype=torch.float64))))
    lines.append("  },")
    lines.append("  cases = {")
    for name, op, args in cases:
        r32 = run(op, args, torch.float32)
        r64 = run(op, args, torch.float64)
        largs = ", ".join(lua(a) if isinstance(a, str) else str(a) for a in args)
        lines.append("    {name = %s, op = %s, args = {%s}, shape = %s,"
                     % (lua(name), lua(op), largs, lua(list(r64.shape)) if r64.dim() else "{}"))
        lines.append("     f32 = %s," % lua(r32.reshape(-1) if r32.dim() else r32))
        lines.append("     f64 = %s}," % lua(r64.reshape(-1) if r64.dim() else r64))
    lines.append("  },")
    # creation helpers: linspace(a, b, n) and eye(n [, m])
    lines.append("  linspace = {")
    for a, b, n in [(0.0, 1.0, 7), (-2.0, 3.0, 6), (1.0, 1.0, 1), (0.1, 0.7, 13), (5.0, -5.0, 10)]:
        lines.append("    {args = {%r, %r, %d}, f32 = %s, f64 = %s},"
                     % (a, b, n, lua(torch.linspace(a, b, n, dtype=torch.float32)),
                        lua(torch.linspace(a, b, n, dtype=torch.float64))))
    lines.append("  },")
    lines.append("  eye = {")
    for nm in [(3,), (2, 4), (4, 2), (1,)]:
        lines.append("    {args = %s, f64 = %s}," % (lua(list(nm)), lua(torch.eye(*nm).double())))
    lines.append("  },")
    lines.append("}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
