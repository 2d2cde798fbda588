#!/usr/bin/python3
"""Writes tests/golden/reduce_golden.lua: PyTorch 1.13 (CPU) results of the reduce family
(sum mean prod std var max min argmax argmin norm logsumexp softmax log_softmax cumsum
sort topk any all) in float32 and float64, for tests/lua/test_reduce.lua.

Each case names an input, an optional view made in Lua (transpose, narrow, select: the
non-contiguous inputs), the method and its Lua arguments (dims 1-based or negative, as
moonopt takes them; translated to PyTorch's 0-based dims here). Results are flat
row-major values with their shape; indices are converted to moonopt's 1-based ones.
Sorting uses stable=True (moonopt's sort is stable); topk cases avoid ties except where
PyTorch's order is the stable one (see test_reduce.lua for tied topk).
Run: /usr/bin/python3 tests/golden/make_reduce_golden.py (writes the file itself)."""
import math
import os

import torch

torch.manual_seed(11)
NAN, INF = float("nan"), float("inf")

INPUTS = {
    "A": torch.randn(3, 4, 5, dtype=torch.float64),
    "M": torch.randn(4, 6, dtype=torch.float64),
    "T": torch.tensor([[1., 3., 3., 2.], [5., 5., 0., 5.], [2., 2., 2., 2.]], dtype=torch.float64),
    "N": torch.tensor([[1., NAN, 3., NAN], [2., 1., 2., 1.], [NAN, 0., -INF, -1.], [INF, 4., 4., 0.]],
                      dtype=torch.float64),
    "L": torch.tensor([[1000., 1000.5, -1000., 3., 2.], [-INF, -INF, -INF, -INF, -INF],
                       [INF, 1., 2., 3., 4.], [-80., -85., -90., -75., -100.]], dtype=torch.float64),
    "E": torch.zeros(2, 0, 3, dtype=torch.float64),
    "S": torch.randn(1, 4, 1, dtype=torch.float64),
    "Z": torch.tensor(3.5, dtype=torch.float64),
    "B": torch.tensor([[0., 0., 2.], [0., 0., 0.], [NAN, 1., -1.]], dtype=torch.float64),
    "W": torch.randn(2, 700, dtype=torch.float64),
}


def view(x, v):
    """The same view the Lua test makes (1-based dims and starts there)."""
    if v is None:
        return x
    if v[0] == "t":
        return x.t()
    if v[0] == "transpose":
        return x.transpose(v[1] - 1, v[2] - 1)
    if v[0] == "narrow":
        return x.narrow(v[1] - 1, v[2] - 1, v[3])
    if v[0] == "select":
        return x.select(v[1] - 1, v[2] - 1)
    raise ValueError(v)


def d0(d):
    """moonopt's dim (1-based or negative) -> PyTorch's."""
    return d - 1 if d > 0 else d


def run(op, x, a):
    """-> (values, indices or None) with indices 1-based; a value may be a Python bool."""
    a = list(a) + [None] * 5
    if op in ("sum", "mean", "prod"):
        if a[0] is None:
            if a[1]:
                return getattr(torch, op)(x, dim=tuple(range(x.dim())), keepdim=True) \
                    if op != "prod" else None, None
            return getattr(x, op)(), None
        return getattr(x, op)(d0(a[0]), keepdim=bool(a[1])), None
    if op in ("std", "var"):
        ub = True if a[1] is None else a[1]
        if isinstance(a[0], bool):  # std(false): every element, biased
            return getattr(x, op)(unbiased=a[0]), None
        if a[0] is None:
            return getattr(x, op)(unbiased=ub), None
        return getattr(x, op)(d0(a[0]), unbiased=ub, keepdim=bool(a[2])), None
    if op in ("max", "min"):
        if a[0] is None:
            return getattr(x, op)(), None
        r = getattr(x, op)(d0(a[0]), keepdim=bool(a[1]))
        return r.values, r.indices + 1
    if op in ("argmax", "argmin"):
        if a[0] is None:
            return getattr(x, op)() + 1, None
        return getattr(x, op)(d0(a[0]), keepdim=bool(a[1])) + 1, None
    if op == "norm":
        p = 2.0 if a[0] is None else a[0]
        if a[1] is None:
            return torch.linalg.vector_norm(x, ord=p), None
        return torch.linalg.vector_norm(x, ord=p, dim=d0(a[1]), keepdim=bool(a[2])), None
    if op == "logsumexp":
        return x.logsumexp(d0(a[0]), keepdim=bool(a[1])), None
    if op in ("softmax", "log_softmax", "cumsum"):
        return getattr(x, op)(d0(a[0])), None
    if op == "sort":
        r = torch.sort(x, dim=-1 if a[0] is None else d0(a[0]), descending=bool(a[1]), stable=True)
        return r.values, r.indices + 1
    if op == "topk":
        r = torch.topk(x, a[0], dim=-1 if a[1] is None else d0(a[1]),
                       largest=True if a[2] is None else a[2])
        return r.values, r.indices + 1
    if op in ("any", "all"):
        if a[0] is None:
            return bool(getattr(x, op)()), None
        return getattr(x, op)(d0(a[0]), keepdim=bool(a[1])).to(x.dtype), None
    raise ValueError(op)


def num(v):
    if math.isnan(v):
        return "0/0"
    if math.isinf(v):
        return "math.huge" if v > 0 else "-math.huge"
    return repr(float(v))


def lua(v):
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return num(v)
    if isinstance(v, torch.Tensor):
        flat = v.reshape(-1).tolist()
        return "{shape = {" + ", ".join(str(s) for s in v.shape) + "}, " + \
            "data = {" + ", ".join(num(e) for e in flat) + "}}"
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua(e) for e in v) + "}"
    raise TypeError(type(v))


CASES = []


def case(x, op, args=(), v=None):
    CASES.append((x, op, list(args), v))


# every reduction, every dim (positive and negative), keepdim both ways, on a 3-d input
for op in ("sum", "mean", "prod", "argmax", "argmin", "max", "min", "logsumexp", "any", "all"):
    for d in (1, 2, 3, -1, -3):
        case("A", op, [d])
        case("A", op, [d, True])
for op in ("sum", "mean", "prod", "argmax", "argmin", "max", "min", "any", "all"):
    case("A", op)
for op in ("std", "var"):
    case("A", op)
    case("A", op, [False])
    for d in (1, 2, 3, -1):
        case("A", op, [d])
        case("A", op, [d, False])
        case("A", op, [d, True, True])
for p in (None, 1, 2, 3, 0.5, INF):
    case("A", "norm", [p])
    for d in (1, 3, -2):
        case("A", "norm", [p if p is not None else 2, d])
        case("A", "norm", [p if p is not None else 2, d, True])
for op in ("softmax", "log_softmax", "cumsum"):
    for d in (1, 2, 3, -1):
        case("A", op, [d])
for d in (1, 2, 3, -1):
    case("A", "sort", [d])
    case("A", "sort", [d, True])
    case("A", "topk", [2, d])
    case("A", "topk", [2, d, False])
case("A", "sort")
case("A", "topk", [3])
case("A", "sum", [None, True])
case("A", "mean", [None, True])

# non-contiguous: transposed, narrowed, selected
for v in (["t"], ["narrow", 2, 2, 3], ["narrow", 1, 2, 2]):
    for op in ("sum", "mean", "prod", "std", "var", "max", "min", "argmax", "argmin", "norm"):
        case("M", op, [], v)
    for d in (1, 2):
        for op in ("sum", "mean", "max", "min", "argmax", "argmin", "logsumexp", "softmax",
                   "log_softmax", "cumsum", "sort", "std", "prod", "any", "all"):
            case("M", op, [d], v)
        case("M", "norm", [3, d], v)
        case("M", "topk", [2, d], v)
for v in (["transpose", 1, 3], ["select", 2, 3], ["narrow", 3, 2, 3]):
    for op in ("sum", "max", "argmin", "std", "norm"):
        case("A", op, [], v)
    for d in (1, 2, -1):
        for op in ("sum", "mean", "max", "argmax", "softmax", "cumsum", "sort", "var", "logsumexp"):
            case("A", op, [d], v)

# ties: the first maximum / minimum; stable sort (ascending and descending)
for d in (1, 2):
    for op in ("max", "min", "argmax", "argmin", "sort"):
        case("T", op, [d])
    case("T", "sort", [d, True])
    case("T", "max", [d], ["t"])
    case("T", "argmin", [d], ["t"])
for op in ("argmax", "argmin", "max", "min"):
    case("T", op)

# NaN and infinities
for d in (1, 2):
    for op in ("max", "min", "argmax", "argmin", "sort", "sum", "norm", "any", "all", "cumsum"):
        case("N", op, [d] if op != "norm" else [2, d])
    case("N", "sort", [d, True])
    case("N", "norm", [INF, d])
for op in ("max", "min", "argmax", "argmin", "sum", "any", "all"):
    case("N", op)

# stability: huge logits, all -inf lanes, +inf lanes
for d in (1, 2):
    for op in ("logsumexp", "softmax", "log_softmax"):
        case("L", op, [d])

# size-0 dims, size-1 dims, 0-d
for op in ("sum", "mean", "prod", "std", "var", "norm", "any", "all"):
    case("E", op)
for d in (1, 2, 3):
    for op in ("sum", "mean", "prod", "std", "logsumexp", "softmax", "log_softmax", "cumsum", "sort",
               "any", "all"):
        case("E", op, [d])
    case("E", "norm", [2, d])
for d in (1, 3):
    for op in ("max", "argmin"):
        case("E", op, [d])  # size-0 lanes do not exist along 1 and 3: empty results
case("E", "topk", [0, 2])
for d in (1, 2, 3, -1):
    for op in ("sum", "mean", "std", "var", "max", "argmax", "softmax", "log_softmax", "cumsum", "sort",
               "logsumexp", "norm"):
        case("S", op, [d] if op != "norm" else [2, d])
    case("S", "max", [d, True])
    case("S", "topk", [1, d])
for op in ("sum", "mean", "prod", "std", "var", "max", "min", "argmax", "argmin", "norm", "any", "all"):
    case("Z", op)
for d in (1, -1):
    for op in ("sum", "mean", "prod", "max", "min", "argmax", "argmin", "logsumexp", "softmax",
               "log_softmax", "cumsum", "sort", "any", "all"):
        case("Z", op, [d])
    case("Z", "sum", [d, True])
    case("Z", "var", [d, False])
    case("Z", "topk", [1, d])
    case("Z", "norm", [2, d])

# any / all
for op in ("any", "all"):
    case("B", op)
    for d in (1, 2):
        case("B", op, [d])
        case("B", op, [d, True])

# long lanes (the pairwise block sums): sum/mean along the contiguous dim and across
for op in ("sum", "mean", "std", "norm", "logsumexp"):
    case("W", op, [2] if op != "norm" else [2, 2])
case("W", "sum", [1])
case("W", "sum")


def main():
    out = ["-- generated by tests/golden/make_reduce_golden.py (PyTorch %s); do not edit" %
           torch.__version__, "return {", "inputs = {"]
    for name, x in INPUTS.items():
        out.append("  %s = %s," % (name, lua(x)))
    out.append("},")
    out.append("cases = {")
    for x, op, args, v in CASES:
        res = {}
        for dt, tdt in (("float32", torch.float32), ("float64", torch.float64)):
            xv = view(INPUTS[x].to(tdt), v)
            vals, idx = run(op, xv, args)
            res[dt] = (vals, idx)
        # Lua args: nil holes kept with an explicit n
        largs = "{n = %d%s}" % (len(args), "".join(", " + lua(a) for a in args))
        out.append("  {x = %s, op = %s, args = %s, view = %s,\n   f32 = {%s, %s},\n   f64 = {%s, %s}}," % (
            lua(x), lua(op), largs, lua(v),
            lua(res["float32"][0]), lua(res["float32"][1]),
            lua(res["float64"][0]), lua(res["float64"][1])))
    out.append("},")
    out.append("}")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reduce_golden.lua")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


main()
