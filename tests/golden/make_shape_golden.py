#!/usr/bin/python3
"""make_shape_golden.py - write tests/golden/shape_golden.lua, golden vectors for the shape
family (permute, squeeze, unsqueeze, flatten, expand, view, reshape, transpose, t,
contiguous, select, chunk, split, cat, stack, t[i], t[{...}] and their assignments).

Run from anywhere with Debian's python3 (torch 1.13):

    /usr/bin/python3 tests/golden/make_shape_golden.py

Every case is written in moonopt's own 1-based terms (dims and indices as a Lua caller
writes them; negative ones count from the end) and translated here to PyTorch's 0-based
calls. An input of shape s holds 1, 2, ..., numel in row-major order (mo.arange(n):view(s)
in Lua); `prep` then turns it into a non-contiguous tensor (transpose, narrow, expand) the
same way on both sides. cat and stack take several inputs, input k holding 100 * (k - 1)
more. Results are written as shape + row-major values (exact small integers in float32).
"""
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shape_golden.lua")


def d0(d):
    """A 1-based (or negative) moonopt dim/index as PyTorch's."""
    return d - 1 if d > 0 else d


def base(shape, k=0):
    n = 1
    for s in shape:
        n *= s
    return (torch.arange(1, n + 1, dtype=torch.float32) + 100 * k).reshape(shape)


def prep(x, steps):
    for st in steps:
        if st[0] == "transpose":
            x = x.transpose(d0(st[1]), d0(st[2]))
        elif st[0] == "narrow":
            x = x.narrow(d0(st[1]), st[2] - 1, st[3])
        elif st[0] == "expand":
            x = x.expand(*st[1])
        else:
            raise ValueError(st[0])
    return x


def key(x, k):
    """A moonopt index key (a number or a torch7 slicing list) as a PyTorch index."""
    if isinstance(k, int):
        return d0(k)
    out = []
    for pos, e in enumerate(k):
        size = x.shape[pos]
        if isinstance(e, int):
            out.append(d0(e))
        elif len(e) == 0:
            out.append(slice(None))
        else:
            a, b = e[0], e[-1]
            a = a if a > 0 else a + size + 1
            b = b if b > 0 else b + size + 1
            out.append(slice(a - 1, b))
    return tuple(out)


def run(op, xs, args):
    x = xs[0]
    if op == "permute":
        return x.permute([d0(d) for d in args])
    if op == "squeeze":
        return x.squeeze(d0(args[0])) if args else x.squeeze()
    if op == "unsqueeze":
        d = args[0]
        return x.unsqueeze(d - 1 if d > 0 else d)
    if op == "flatten":
        a = d0(args[0]) if len(args) > 0 else 0
        b = d0(args[1]) if len(args) > 1 else -1
        return x.flatten(a, b)
    if op == "expand":
        return x.expand(list(args))
    if op in ("view", "reshape"):
        return x.reshape(list(args))  # the view cases are viewable in PyTorch too (checked below)
    if op == "transpose":
        return x.transpose(d0(args[0]), d0(args[1]))
    if op == "t":
        return x.t()
    if op == "contiguous":
        return x.contiguous()
    if op == "select":
        return x.select(d0(args[0]), d0(args[1]))
    if op == "chunk":
        return list(x.chunk(args[0], d0(args[1]) if len(args) > 1 else 0))
    if op == "split":
        return list(x.split(args[0], d0(args[1]) if len(args) > 1 else 0))
    if op == "cat":
        return torch.cat(xs, d0(args[0]) if args else 0)
    if op == "stack":
        return torch.stack(xs, d0(args[0]) if args else 0)
    if op == "index":
        return x[key(x, args[0])]
    if op == "setindex":
        v = args[1]
        if isinstance(v, dict):
            v = base(v["shape"], 5)
        x[key(x, args[0])] = v
        return x
    raise ValueError(op)


# name, input shapes, prep, op, args (1-based), [view: the result shares the input's storage]
CASES = [
    ("permute_3d", [[2, 3, 4]], [], "permute", [3, 1, 2], True),
    ("permute_neg", [[2, 3, 4]], [], "permute", [-1, -3, 2], True),
    ("permute_transposed", [[2, 3, 4]], [["transpose", 1, 3]], "permute", [2, 3, 1], True),
    ("permute_0d", [[]], [], "permute", [], True),
    ("permute_size0", [[2, 0, 3]], [], "permute", [3, 2, 1], True),
    ("squeeze_all", [[1, 3, 1, 2]], [], "squeeze", [], True),
    ("squeeze_dim", [[1, 3, 1, 2]], [], "squeeze", [3], True),
    ("squeeze_dim_not1", [[1, 3, 1, 2]], [], "squeeze", [2], True),
    ("squeeze_neg", [[3, 1]], [], "squeeze", [-1], True),
    ("squeeze_narrowed", [[3, 4]], [["narrow", 1, 2, 1]], "squeeze", [], True),
    ("squeeze_0d", [[]], [], "squeeze", [], True),
    ("unsqueeze_front", [[2, 3]], [], "unsqueeze", [1], True),
    ("unsqueeze_mid", [[2, 3]], [], "unsqueeze", [2], True),
    ("unsqueeze_end", [[2, 3]], [], "unsqueeze", [3], True),
    ("unsqueeze_neg", [[2, 3]], [], "unsqueeze", [-1], True),
    ("unsqueeze_transposed", [[2, 3]], [["transpose", 1, 2]], "unsqueeze", [2], True),
    ("unsqueeze_0d", [[]], [], "unsqueeze", [1], True),
    ("flatten_all", [[2, 3, 4]], [], "flatten", [], True),
    ("flatten_range", [[2, 3, 4, 5]], [], "flatten", [2, 3], True),
    ("flatten_neg", [[2, 3, 4]], [], "flatten", [-2], True),
    ("flatten_transposed", [[2, 3, 4]], [["transpose", 1, 2]], "flatten", [], False),
    ("flatten_transposed_viewable", [[2, 3, 4]], [["transpose", 1, 2]], "flatten", [3], True),
    ("flatten_0d", [[]], [], "flatten", [], True),
    ("expand_size1", [[3, 1]], [], "expand", [3, 4], True),
    ("expand_lead", [[3]], [], "expand", [2, 4, 3], True),
    ("expand_keep", [[1, 3]], [], "expand", [2, -1], True),
    ("expand_0d", [[]], [], "expand", [2, 3], True),
    ("expand_to0", [[1, 3]], [], "expand", [0, 3], True),
    ("expand_transposed", [[1, 3]], [["transpose", 1, 2]], "expand", [3, 2], True),
    ("view_contig", [[2, 3, 4]], [], "view", [6, 4], True),
    ("view_infer", [[2, 3, 4]], [], "view", [-1, 2], True),
    ("view_narrowed_rows", [[4, 3]], [["narrow", 1, 2, 2]], "view", [6], True),
    ("view_split_strided", [[4, 6]], [["narrow", 2, 1, 4]], "view", [4, 2, 2], True),
    ("view_transposed_merge_ok", [[2, 3, 4]], [["transpose", 1, 2]], "view", [3, 2, 2, 2], True),
    ("view_expanded", [[1, 3]], [["expand", [4, 3]]], "view", [2, 2, 3], True),
    ("view_size0", [[0, 3]], [], "view", [3, 0], True),
    ("view_0d_to_1x1", [[]], [], "view", [1, 1], True),
    ("reshape_transposed_copy", [[2, 3]], [["transpose", 1, 2]], "reshape", [6], False),
    ("reshape_expanded_copy", [[1, 3]], [["expand", [2, 3]]], "reshape", [6], False),
    ("reshape_narrowed_copy", [[3, 4]], [["narrow", 2, 2, 2]], "reshape", [2, 3], False),
    ("transpose_3d", [[2, 3, 4]], [], "transpose", [1, 3], True),
    ("transpose_neg", [[2, 3, 4]], [], "transpose", [-1, -2], True),
    ("t_2d", [[2, 3]], [], "t", [], True),
    ("t_1d", [[3]], [], "t", [], True),
    ("contiguous_transposed", [[2, 3]], [["transpose", 1, 2]], "contiguous", [], False),
    ("contiguous_expanded", [[3]], [["expand", [2, 3]]], "contiguous", [], False),
    ("select_row", [[3, 4]], [], "select", [1, 2], True),
    ("select_col_neg", [[3, 4]], [], "select", [2, -1], True),
    ("select_1d", [[5]], [], "select", [1, 3], True),
    ("select_transposed", [[3, 4]], [["transpose", 1, 2]], "select", [1, 4], True),
    ("chunk_even", [[6, 2]], [], "chunk", [3], True),
    ("chunk_uneven", [[5]], [], "chunk", [4], True),
    ("chunk_more_than_size", [[2, 3]], [], "chunk", [5, 2], True),
    ("chunk_dim_neg", [[2, 5]], [], "chunk", [2, -1], True),
    ("chunk_size0", [[0, 2]], [], "chunk", [3], True),
    ("split_size", [[5, 2]], [], "split", [2], True),
    ("split_dim", [[2, 7]], [], "split", [3, 2], True),
    ("split_sizes", [[6]], [], "split", [[1, 0, 2, 3]], True),
    ("split_transposed", [[3, 4]], [["transpose", 1, 2]], "split", [3], True),
    ("cat_dim1", [[2, 3], [1, 3], [3, 3]], [], "cat", [], False),
    ("cat_dim2", [[2, 3], [2, 1]], [], "cat", [2], False),
    ("cat_neg", [[2, 2, 1], [2, 2, 3]], [], "cat", [-1], False),
    ("cat_transposed", [[3, 2], [3, 2]], [["transpose", 1, 2]], "cat", [2], False),
    ("cat_size0", [[2, 0], [2, 3]], [], "cat", [2], False),
    ("cat_expanded", [[1, 3], [1, 3]], [["expand", [2, 3]]], "cat", [1], False),
    ("stack_dim1", [[2, 3], [2, 3]], [], "stack", [], False),
    ("stack_mid", [[2, 3], [2, 3], [2, 3]], [], "stack", [2], False),
    ("stack_end", [[2, 3], [2, 3]], [], "stack", [-1], False),
    ("stack_0d", [[], [], []], [], "stack", [], False),
    ("stack_transposed", [[2, 3], [2, 3]], [["transpose", 1, 2]], "stack", [3], False),
    ("index_row", [[3, 4]], [], "index", [2], True),
    ("index_last", [[3, 4]], [], "index", [-1], True),
    ("index_1d", [[4]], [], "index", [3], True),
    ("index_transposed", [[3, 4]], [["transpose", 1, 2]], "index", [4], True),
    ("slice_range_number", [[4, 3]], [], "index", [[[1, 3], 2]], True),
    ("slice_all_range", [[4, 3]], [], "index", [[[], [2, 3]]], True),
    ("slice_one", [[4, 3]], [], "index", [[[2]]], True),
    ("slice_neg", [[4, 3]], [], "index", [[[-2, -1], [1, -2]]], True),
    ("slice_empty", [[4, 3]], [], "index", [[[3, 2]]], True),
    ("slice_numbers", [[2, 3, 4]], [], "index", [[2, 3]], True),
    ("slice_3d_mixed", [[2, 3, 4]], [], "index", [[[], 2, [2, 4]]], True),
    ("slice_expanded", [[1, 4]], [["expand", [3, 4]]], "index", [[[2, 3], [2, 3]]], True),
    ("set_row_number", [[3, 4]], [], "setindex", [2, 7.5], True),
    ("set_row_tensor", [[3, 4]], [], "setindex", [-1, {"shape": [4]}], True),
    ("set_row_broadcast", [[3, 4]], [], "setindex", [1, {"shape": [1]}], True),
    ("set_row_lead1", [[3, 4]], [], "setindex", [2, {"shape": [1, 4]}], True),
    ("set_slice_tensor", [[4, 3]], [], "setindex", [[[2, 3], [1, 2]], {"shape": [2, 2]}], True),
    ("set_slice_bcast", [[4, 3]], [], "setindex", [[[], 2], {"shape": [1]}], True),
    ("set_slice_rows", [[4, 3]], [], "setindex", [[[1, 2]], {"shape": [3]}], True),
    ("set_transposed", [[3, 4]], [["transpose", 1, 2]], "setindex", [[[2, 3]], 0.0], True),
    ("set_1d_element", [[5]], [], "setindex", [-2, 9.0], True),
]


def lua(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, float):
        return "%.9g" % v
    if isinstance(v, str):
        return '"%s"' % v
    if isinstance(v, dict):
        return "{" + ", ".join("%s = %s" % (k, lua(x)) for k, x in sorted(v.items())) + "}"
    return "{" + ", ".join(lua(x) for x in v) + "}"


def picture(t):
    return {"shape": list(t.shape), "values": [float(v) for v in t.contiguous().view(-1).tolist()]}


def main():
    lines = ["-- Generated by tests/golden/make_shape_golden.py (torch %s); do not edit." %
             torch.__version__, "return {"]
    for name, shapes, steps, op, args, view in CASES:
        bases = [base(s, k) for k, s in enumerate(shapes)]
        xs = [prep(b, steps) for b in bases]
        res = run(op, xs, args)
        if op == "view":
            xs[0].view(list(args))  # raises if PyTorch could not view it either
        if isinstance(res, list):
            out = [picture(r) for r in res]
            shares = all(r.data_ptr() == 0 or r.storage().data_ptr() == bases[0].storage().data_ptr()
                         for r in res)
        else:
            out = picture(res)
            shares = res.storage().data_ptr() == bases[0].storage().data_ptr()
        assert shares == view, (name, shares)
        case = {"name": name, "shapes": shapes, "prep": steps, "op": op, "args": args,
                "view": view}
        if isinstance(res, list):
            case["parts"] = out
        else:
            case["out"] = out
        lines.append("  " + lua(case) + ",")
    lines.append("}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
