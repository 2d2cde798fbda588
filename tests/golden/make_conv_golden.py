#!/usr/bin/python3
"""make_conv_golden.py - write tests/golden/conv_golden.lua, the golden vectors of the
convolution kernels: conv2d, max/avg/adaptive-avg pooling and batch norm, forward values
and gradients, from PyTorch 1.13.

Run from anywhere with Debian's python3:

    /usr/bin/python3 tests/golden/make_conv_golden.py

Each case holds its float64 inputs (flat, row-major, with their shapes) and the results
of PyTorch in float64 (key f64) and in float32 from the same inputs rounded to float32
(key f32): the forward output y and the gradients of sum(y * gy) for a fixed random gy.
Batch norm also records the running statistics after the call. Deterministic: a fixed
seed. Sizes are small so the file stays well under 200 KB.
"""
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_golden.lua")
g = torch.Generator().manual_seed(13)


def randn(*shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def num(v, f32):
    return "%.9g" % v if f32 else repr(float(v))


def arr(t, f32=False):
    """A tensor as {shape = {...}, ...flat values}."""
    t = t.detach().reshape(-1).tolist()
    return "{" + ", ".join(num(v, f32) for v in t) + "}"


def shape(t):
    return "{" + ", ".join(str(s) for s in t.shape) + "}"


def entry(name, t, f32=False):
    return "%s = %s, %s_shape = %s" % (name, arr(t, f32), name, shape(t))


def run(fn, inputs, grad_of, dtype):
    """fn(**tensors) -> y (or (y, extras)); returns y, grads (name -> tensor), extras."""
    ts = {k: (v.to(dtype).clone().requires_grad_(k in grad_of) if isinstance(v, torch.Tensor)
              else v) for k, v in inputs.items()}
    out = fn(ts)
    y, extra = (out if isinstance(out, tuple) else (out, {}))
    gy = inputs["_gy"](y.shape).to(dtype)
    (y * gy).sum().backward()
    grads = {k: ts[k].grad for k in grad_of if ts[k].grad is not None}
    return y, grads, extra, gy


def case(op, args, inputs, fn, grad_of):
    """One case: args (Lua text), float64 inputs, the function, the inputs to differentiate."""
    gys = {}

    def make_gy(shp):
        if "gy" not in gys:
            gys["gy"] = randn(*shp)
        return gys["gy"]

    inputs = dict(inputs, _gy=make_gy)
    parts = ["op = %q" % op if False else 'op = "%s"' % op, args]
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            parts.append(entry(k, v))
    for key, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        y, grads, extra, _ = run(fn, inputs, grad_of, dtype)
        f32 = dtype == torch.float32
        sub = [entry("y", y, f32)]
        for k, v in grads.items():
            sub.append(entry("g" + k, v, f32))
        for k, v in extra.items():
            sub.append(entry(k, v, f32))
        parts.append("%s = {%s}" % (key, ", ".join(sub)))
    parts.append(entry("gy", gys["gy"]))
    return "  {" + ", ".join(parts) + "},"


cases = []

# ---- conv2d: (x shape, w shape, bias, stride, padding, dilation, groups, name)
CONV = [
    ((2, 3, 5, 6), (4, 3, 3, 3), True, (1, 1), (1, 1), (1, 1), 1, "basic 3x3 pad 1"),
    ((1, 2, 7, 5), (3, 2, 2, 3), True, (2, 2), (1, 2), (1, 1), 1, "stride 2, non-square"),
    ((2, 2, 7, 7), (2, 2, 3, 3), False, (1, 1), (2, 1), (2, 1), 1, "dilation (2, 1)"),
    ((1, 4, 5, 5), (6, 2, 3, 3), True, (2, 1), (1, 0), (1, 1), 2, "groups 2"),
    ((2, 3, 6, 5), (3, 1, 3, 3), True, (1, 1), (1, 1), (1, 1), 3, "depthwise"),
    ((1, 3, 7, 6), (6, 1, 3, 2), True, (2, 1), (1, 1), (1, 2), 3, "depthwise x2, dilated"),
    ((2, 5, 4, 3), (3, 5, 1, 1), True, (1, 1), (0, 0), (1, 1), 1, "1x1"),
    ((1, 4, 3, 3), (4, 2, 1, 1), False, (1, 1), (0, 0), (1, 1), 2, "1x1 groups 2"),
    ((1, 3, 5, 5), (2, 3, 1, 1), True, (2, 2), (0, 0), (1, 1), 1, "1x1 stride 2"),
    ((1, 1, 9, 7), (2, 1, 4, 3), False, (3, 2), (0, 1), (1, 1), 1, "odd, batch 1"),
    ((1, 2, 3, 3), (1, 2, 5, 5), True, (1, 1), (1, 1), (1, 1), 1, "kernel = padded input"),
    ((2, 4, 5, 4), (4, 2, 3, 2), True, (2, 1), (1, 2), (2, 1), 2, "stride, dilation, groups"),
]
for xs, ws, bias, s, p, d, gr, name in CONV:
    inp = {"x": randn(*xs), "w": randn(*ws)}
    if bias:
        inp["b"] = randn(ws[0])
    args = ('name = "%s", stride = {%d, %d}, padding = {%d, %d}, dilation = {%d, %d}, '
            'groups = %d' % (name, s[0], s[1], p[0], p[1], d[0], d[1], gr))
    fn = (lambda s, p, d, gr: lambda t: F.conv2d(t["x"], t["w"], t.get("b"), s, p, d, gr))(
        s, p, d, gr)
    cases.append(case("conv2d", args, inp, fn, ["x", "w", "b"] if bias else ["x", "w"]))

# ---- pooling: (x shape, kernel, stride, padding, name)
POOL = [
    ((2, 3, 6, 7), (3, 3), (2, 2), (1, 1), "3x3 stride 2 pad 1"),
    ((1, 2, 5, 6), (2, 3), (1, 2), (1, 1), "2x3 stride (1, 2)"),
    ((1, 2, 5, 5), (2, 2), (2, 2), (0, 0), "2x2 odd input"),
    ((2, 1, 4, 4), (4, 4), (1, 1), (2, 2), "pad half the kernel"),
]
for xs, k, s, p, name in POOL:
    args = 'name = "%s", kernel = {%d, %d}, stride = {%d, %d}, padding = {%d, %d}' % (
        name, k[0], k[1], s[0], s[1], p[0], p[1])
    x = randn(*xs)
    fn = (lambda k, s, p: lambda t: F.max_pool2d(t["x"], k, s, p))(k, s, p)
    cases.append(case("max_pool2d", args, {"x": x}, fn, ["x"]))
    for cip in (True, False):
        fn = (lambda k, s, p, cip: lambda t: F.avg_pool2d(t["x"], k, s, p,
                                                          count_include_pad=cip))(k, s, p, cip)
        a = args + ", count_include_pad = %s" % ("true" if cip else "false")
        cases.append(case("avg_pool2d", a, {"x": x}, fn, ["x"]))

for xs, o in [((2, 2, 7, 5), (3, 2)), ((1, 2, 5, 7), (5, 7)), ((1, 3, 4, 5), (1, 1)),
              ((1, 1, 10, 9), (4, 6)), ((1, 1, 3, 3), (5, 4))]:
    args = "out = {%d, %d}" % o
    fn = (lambda o: lambda t: F.adaptive_avg_pool2d(t["x"], o))(o)
    cases.append(case("adaptive_avg_pool2d", args, {"x": randn(*xs)}, fn, ["x"]))

# ---- batch norm: (x shape, affine, training, momentum, eps)
BN = [
    ((4, 3), True, True, 0.1, 1e-5),
    ((3, 2, 5), True, True, 0.3, 1e-3),
    ((2, 3, 4, 3), True, True, 0.1, 1e-5),
    ((2, 3, 4, 3), False, True, 0.2, 1e-5),
    ((4, 3), True, False, 0.1, 1e-5),
    ((2, 3, 4, 3), True, False, 0.1, 1e-2),
    ((3, 2, 5), False, False, 0.1, 1e-5),
]
for xs, affine, training, mom, eps in BN:
    c = xs[1]
    inp = {"x": randn(*xs) * 2 + 0.5, "running_mean": randn(c) * 0.3,
           "running_var": torch.rand(c, generator=g, dtype=torch.float64) + 0.5}
    if affine:
        inp["weight"] = randn(c)
        inp["bias"] = randn(c)
    args = "training = %s, momentum = %r, eps = %r" % ("true" if training else "false", mom, eps)

    def fn(t, training=training, mom=mom, eps=eps):
        rm, rv = t["running_mean"].detach().clone(), t["running_var"].detach().clone()
        y = F.batch_norm(t["x"], rm, rv, t.get("weight"), t.get("bias"), training, mom, eps)
        return y, {"running_mean_after": rm, "running_var_after": rv}
    cases.append(case("batch_norm", args, inp, fn,
                      ["x", "weight", "bias"] if affine else ["x"]))

with open(OUT, "w") as f:
    f.write("-- made by tests/golden/make_conv_golden.py (PyTorch %s); do not edit\n"
            % torch.__version__)
    f.write("return {\n")
    for c in cases:
        f.write(c + "\n")
    f.write("}\n")
print("wrote", OUT, os.path.getsize(OUT), "bytes,", len(cases), "cases")
