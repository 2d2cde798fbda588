#!/usr/bin/python3
"""Generate tests/golden/core_refs.h: inputs and NumPy-computed expected outputs
for the core's matmul, reductions, dot/norm tests, and the first outputs of the
seeded RNG (xoshiro256** seeded by splitmix64), transcribed here independently
from the algorithm's description so that a change in rng.c is caught.

Run from the repository root:  /usr/bin/python3 tests/golden/make_core_refs.py
The output is committed; the tests never run Python.
"""
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core_refs.h")
rs = np.random.default_rng(20240601)
parts = []


def f32(a):
    return np.asarray(a, dtype=np.float32)


def cfloat(v):
    """a C float literal that round-trips float32 exactly"""
    t = "%.9g" % v
    if not any(c in t for c in ".en"):
        t += ".0"
    return t + "f"


def emit_f(name, arr, comment):
    a = f32(arr).ravel()
    shape = "x".join(str(d) for d in np.shape(arr)) or "scalar"
    vals = ", ".join(cfloat(v) for v in a)
    parts.append("/* %s: %s */\nstatic const float %s[%d] = {%s};\n" % (shape, comment, name, a.size, vals))


def emit_d(name, arr, comment):
    a = np.asarray(arr, dtype=np.float64).ravel()
    vals = ", ".join("%.17g" % v for v in a)
    parts.append("/* %s */\nstatic const double %s[%d] = {%s};\n" % (comment, name, a.size, vals))


def emit_u64(name, arr, comment):
    vals = ", ".join("UINT64_C(%d)" % v for v in arr)
    parts.append("/* %s */\nstatic const uint64_t %s[%d] = {%s};\n" % (comment, name, len(arr), vals))


def emit_z(name, arr, comment):
    vals = ", ".join("%d" % v for v in arr)
    parts.append("/* %s */\nstatic const size_t %s[%d] = {%s};\n" % (comment, name, len(arr), vals))


def rnd(*shape):
    return f32(rs.uniform(-2.0, 2.0, size=shape))


def mm(a, b):
    """float64 product of float32 inputs, rounded to float32"""
    return f32(a.astype(np.float64) @ b.astype(np.float64))


# ---- matmul: op(A) 7x13, op(B) 13x5, C 7x5 ----
M, K, N = 7, 13, 5
A = rnd(M, K)
B = rnd(K, N)
C0 = rnd(M, N)
alpha, beta = 0.75, -0.5
emit_f("mm_a", A, "A, row-major")
emit_f("mm_at", A.T, "A^T stored row-major (for trans_a = 1 and column-major views)")
emit_f("mm_b", B, "B, row-major")
emit_f("mm_bt", B.T, "B^T stored row-major")
emit_f("mm_c0", C0, "the initial C for the alpha/beta case")
emit_f("mm_ab", mm(A, B), "A @ B")
emit_f("mm_ab_ab", f32(alpha * (A.astype(np.float64) @ B) + beta * C0.astype(np.float64)),
       "0.75 * A @ B - 0.5 * C0")

# strided operands: A is a 7x13 window of a 9x16 matrix (rows 1..7, cols 2..14);
# Bsel = X[:, :, 1] of a 13x5x2 tensor (strides {10, 2}: no unit stride at all)
BIG = rnd(9, 16)
X3 = rnd(K, N, 2)
emit_f("mm_big", BIG, "9x16; narrow(0, 1, 7) then narrow(1, 2, 13) gives a strided 7x13 A")
emit_f("mm_x3", X3, "13x5x2; select(2, 1) gives a 13x5 B with strides {10, 2}")
emit_f("mm_strided", mm(BIG[1:8, 2:15], X3[:, :, 1]), "BIG[1:8, 2:15] @ X3[:, :, 1]")

# ---- reductions on R {3, 4, 5} and on its transposed view R^T(0, 2) {5, 4, 3} ----
R = rnd(3, 4, 5)
R[2, 1, 3] = R.max() + 1.0  # the maximum appears twice: argmax must report the first
R[0, 3, 1] = R[2, 1, 3]
emit_f("red_r", R, "3x4x5")
# integers -2..2: many ties along every dim (argmax = first maximum)
RI = f32(rs.integers(-2, 3, size=(3, 4, 5)))
emit_f("red_ri", RI, "3x4x5 of small integers (ties)")


def red_refs(prefix, X, label):
    x = X.astype(np.float64)
    emit_d(prefix + "_whole", [x.sum(), x.mean(), x.max(), x.min(), int(np.argmax(X))],
           label + ": sum, mean, max, min, argmax (flat row-major index) of the whole tensor")
    for d in range(X.ndim):
        emit_f("%s_sum%d" % (prefix, d), x.sum(axis=d), label + ": sum over dim %d" % d)
        emit_f("%s_mean%d" % (prefix, d), x.mean(axis=d), label + ": mean over dim %d" % d)
        emit_f("%s_max%d" % (prefix, d), x.max(axis=d), label + ": max over dim %d" % d)
        emit_f("%s_min%d" % (prefix, d), x.min(axis=d), label + ": min over dim %d" % d)
        emit_f("%s_argmax%d" % (prefix, d), np.argmax(X, axis=d), label + ": argmax over dim %d" % d)


red_refs("red_r", R, "R")
red_refs("red_rt", np.transpose(R, (2, 1, 0)), "R.transpose(0, 2)")
red_refs("red_ri", RI, "RI")
red_refs("red_rit", np.transpose(RI, (2, 1, 0)), "RI.transpose(0, 2)")

# ---- dot and norms ----
U = rnd(37)
V = rnd(37)
W1, W2 = rnd(4, 6), rnd(11)
emit_f("dn_u", U, "37")
emit_f("dn_v", V, "37")
emit_f("dn_w1", W1, "4x6")
emit_f("dn_w2", W2, "11")
u, v, w1, w2 = (t.astype(np.float64) for t in (U, V, W1, W2))
emit_d("dn_expect", [u @ v, math.sqrt((u * u).sum()),
                     math.sqrt((u * u).sum() + (w1 * w1).sum() + (w2 * w2).sum()),
                     (w1.T.ravel() * u[:24]).sum()],
       "dot(u, v), norm2(u), norm2_many(u, w1, w2), dot(w1^T (6x4 view, row-major order), u[0:24])")

# ---- RNG: an independent transcription of xoshiro256** / splitmix64 ----
MASK = (1 << 64) - 1


class Xoshiro:
    def __init__(self, seed):
        x = seed & MASK
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))
        self.spare = None

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK

    def next(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53

    def uniform24(self):
        return (self.next() >> 40) * 2.0 ** -24

    def normal(self):
        if self.spare is not None:
            z, self.spare = self.spare, None
            return z
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        r = math.sqrt(-2.0 * math.log(u1))
        th = 2.0 * math.pi * u2
        self.spare = r * math.sin(th)
        return r * math.cos(th)

    def below(self, n):
        threshold = ((1 << 64) - n) % n
        while True:
            x = self.next()
            if x >= threshold:
                return x % n


g = Xoshiro(42)
emit_u64("rng_next42", [g.next() for _ in range(8)], "mo_rng_next after mo_rng_seed(42)")
g = Xoshiro(42)
emit_d("rng_uniform42", [g.uniform() for _ in range(6)], "mo_rng_uniform after seed 42")
g = Xoshiro(42)
lo, hi = -2.0, 3.0
emit_f("rng_rand_uniform42", [np.float32(lo + (hi - lo) * g.uniform24()) for _ in range(6)],
       "mo_rand_uniform(t of 6, lo -2, hi 3) after seed 42")
g = Xoshiro(42)
emit_d("rng_normal42", [g.normal() for _ in range(7)], "mo_rng_normal x7 after seed 42")
g = Xoshiro(42)
emit_f("rng_rand_normal42", [np.float32(1.5 + 0.5 * g.normal()) for _ in range(5)],
       "mo_rand_normal(t of 5, mean 1.5, sd 0.5) after seed 42")
g = Xoshiro(42)
emit_u64("rng_below42", [g.below(10) for _ in range(8)], "mo_rng_below(10) x8 after seed 42")
g = Xoshiro(42)
perm = list(range(10))
for i in range(10, 1, -1):
    j = g.below(i)
    perm[i - 1], perm[j] = perm[j], perm[i - 1]
emit_z("rng_perm42", perm, "mo_randperm(10) after seed 42")

with open(OUT, "w") as f:
    f.write("/* Generated by tests/golden/make_core_refs.py (NumPy %s); do not edit. */\n" % np.__version__)
    f.write("#ifndef CORE_REFS_H\n#define CORE_REFS_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n")
    f.write("\n".join(parts))
    f.write("\n#endif /* CORE_REFS_H */\n")
print("wrote", OUT)
