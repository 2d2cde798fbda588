#!/usr/bin/python3
"""make_optim_golden.py - write tests/golden/optim_golden.lua, the optimizer golden vectors.

Run from the repository root with Debian's python3 (torch 1.13 + numpy):

    /usr/bin/python3 tests/golden/make_optim_golden.py [-v] [--f32 | --f64]

(-v prints every case's checks.) It writes optim_golden.lua (float32, below) and, in its
float64 mode, optim_golden_f64.lua (see "float64 mode" below); --f32 / --f64 write only one.

Two sources of truth:

* "torch-1.13": torch.optim itself, float32, for every option PyTorch 1.13 has.
* "numpy-f64": a float64 NumPy transcription of a published formula (one small function per
  algorithm below, each quoting docs/design.md "The Adam family" or the paper), for what
  PyTorch 1.13 does not have: the mxnet / bert / keras / torch7 flavours of Adam and AdamW, the
  hand-set switches, NAdam/RAdam decoupled_weight_decay (PyTorch >= 2.0), Lion and LAMB.
  Inputs are float32 values; the arithmetic is float64; the expected values are rounded to
  float32 only when written.

Every case is checked here before it is written:

* noise: the same case recomputed at the other precision (torch in float64; the NumPy
  formulas in float32) must stay within NOISE_FRACTION of the tolerance, so the tolerance is
  comfortably above honest float32 rounding differences;
* contrast: where a case exists to pin down one option (nesterov, eps placement, a flavour...),
  the trajectory with that option changed must differ by more than CONTRAST_FACTOR times the
  tolerance, so the test would fail if the option were ignored;
* cross-checks: the NumPy transcriptions of Adam/AdamW (pytorch flavour), NAdam and RAdam agree
  with torch 1.13 on the cases both can run.

The data file is a Lua chunk returning {meta = ..., cases = {...}}; see tests/golden/README.md.
"""
import math
import os
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_golden.lua")

STEPS = 10
SHAPES = [(3,), (2, 3), (4, 1, 5)]
RTOL = 2e-5           # |got - want| <= RTOL * max(|want|, FLOOR)
FLOOR = 0.1           # below |want| = 0.1 the bound is absolute: 2e-6, ~8-16 ulp of an O(1) value
LBFGS_RTOL = 5e-4     # LBFGS: see README (float32 rounding in the dot products is amplified)
NOISE_FRACTION = 0.1  # the other-precision rerun must stay within 10% of the tolerance
CONTRAST_FACTOR = 50  # a contrast run must miss the tolerance by at least this factor

torch.set_num_threads(1)
CASES = []
VERBOSE = "-v" in sys.argv   # print each case's noise (fraction of the tolerance) and contrasts


# ----------------------------------------------------------------------------- inputs

def rng_for(name):
    """A generator seeded from the case name, so adding a case never changes another."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(name)) + 12345
    return np.random.default_rng(seed)


def make_params(rng, shapes=SHAPES, scale=1.0, dt=np.float32):
    return [(rng.standard_normal(s) * scale).astype(dt) for s in shapes]


def make_grads(rng, shapes=SHAPES, steps=STEPS, scale=1.0, tiny=False, dt=np.float32):
    """One list of float32 (dt) arrays per step, independent of the parameters."""
    seq = []
    for _ in range(steps):
        step = []
        for s in shapes:
            if tiny:   # |g| log-uniform in [1e-9, 1e-7], random sign: eps placement matters
                mag = 10.0 ** rng.uniform(-9.0, -7.0, size=s)
                g = np.where(rng.random(s) < 0.5, -mag, mag)
            else:
                g = rng.standard_normal(s) * scale
            step.append(g.astype(dt))
        seq.append(step)
    return seq


# ----------------------------------------------------------------------------- comparison

def max_violation(want, got, rtol, floor):
    """max over all steps and elements of |got - want| / (rtol * max(|want|, floor))."""
    worst = 0.0
    for ws, gs in zip(want, got):
        for w, g in zip(ws, gs):
            w = np.asarray(w, np.float64)
            g = np.asarray(g, np.float64)
            bound = rtol * np.maximum(np.abs(w), floor)
            worst = max(worst, float(np.max(np.abs(g - w) / bound)))
    return worst


# ----------------------------------------------------------------------------- torch runner

def torch_opts(opts):
    kw = {}
    for k, v in opts.items():
        kw[k] = tuple(v) if k == "betas" else v
    return kw


def run_torch(cls, opts, params, grads, groups=None, sets=None, dtype=torch.float32,
              extra=None, out=np.float32):
    """Run torch.optim.<cls> and return the params after every step (`out` arrays)."""
    ps = [torch.tensor(p, dtype=dtype).requires_grad_() for p in params]
    if groups:
        arg = []
        for g in groups:
            d = torch_opts({k: v for k, v in g.items() if k != "params"})
            d["params"] = [ps[i - 1] for i in g["params"]]
            arg.append(d)
    else:
        arg = ps
    opt = getattr(torch.optim, cls)(arg, **torch_opts(opts), **(extra or {}))
    traj = []
    for t, gstep in enumerate(grads, start=1):
        for gi, key, value in (sets or {}).get(t, []):
            opt.param_groups[gi - 1][key] = tuple(value) if key == "betas" else value
        for p, g in zip(ps, gstep):
            p.grad = None if g is None else torch.tensor(g, dtype=dtype)
        opt.step()
        traj.append([p.detach().numpy().astype(out).copy() for p in ps])
    return traj


# ----------------------------------------------------------------------------- NumPy formulas
#
# Each step function updates one parameter tensor in place-free style:
#   step(w, g, st, hp, t) -> new w     (w, g: arrays of dtype DT; st: dict of state arrays;
#                                       hp: this group's hyperparameters; t: this param's step)
# Per-step scalars are computed in float64 and rounded to the array dtype, like the kernels.

def _s(x, w):
    return w.dtype.type(x)


def preprocess(g, hp):
    """docs/design.md "The Adam family": g = g * rescale_grad; g = clamp(g, -clip_gradient, clip_gradient);
    g = -g when maximize."""
    if hp.get("rescale_grad", 1.0) != 1.0:
        g = g * _s(hp["rescale_grad"], g)
    c = hp.get("clip_gradient")
    if c is not None and c >= 0:
        g = np.clip(g, _s(-c, g), _s(c, g))
    if hp.get("maximize", False):
        g = -g
    return g


def adam_step(w, g, st, hp, t):
    """docs/design.md "The Adam family":
      l2:           g += wd*w before the moments
      m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  amsgrad: vmax = max(vmax, v), used for v
      bias_correction, eps_mode "raw":  w -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
      bias_correction, eps_mode "hat":  lr_t = lr*sqrt(bc2)/bc1; w -= lr_t * m / (sqrt(v) + eps)
      no bias correction:               w -= lr * m / (sqrt(v) + eps)   (lr_t = lr)
      decoupled:    w *= 1 - lr*wd   (raw lr, before the update, as PyTorch AdamW)
      decoupled_bc: w -= lr_t * (m/(sqrt(v)+eps) + wd*w)   (MXNet AdamW, the seed's variant 2)
      lr_decay (torch7's learningRateDecay): lr = lr / (1 + (t-1)*lr_decay) before all of this
    """
    b1, b2 = hp["betas"]
    lr, eps, wd = hp["lr"], hp["eps"], hp["weight_decay"]
    lr = lr / (1 + (t - 1) * hp["lr_decay"])
    mode = hp["weight_decay_mode"]
    g = preprocess(g, hp)
    if mode == "l2" and wd != 0:
        g = g + _s(wd, w) * w
    if "m" not in st:
        st["m"] = np.zeros_like(w)
        st["v"] = np.zeros_like(w)
        st["vmax"] = np.zeros_like(w)
    m = st["m"] = _s(b1, w) * st["m"] + _s(1 - b1, w) * g
    v = st["v"] = _s(b2, w) * st["v"] + _s(1 - b2, w) * g * g
    if hp["amsgrad"]:
        v = st["vmax"] = np.maximum(st["vmax"], v)
    if hp["bias_correction"]:
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        lr_t = lr * math.sqrt(bc2) / bc1
        if hp["eps_mode"] == "raw":
            u = m / (np.sqrt(v) / _s(math.sqrt(bc2), w) + _s(eps, w))
            step_size = lr / bc1
        else:
            u = m / (np.sqrt(v) + _s(eps, w))
            step_size = lr_t
    else:
        lr_t = lr
        u = m / (np.sqrt(v) + _s(eps, w))
        step_size = lr
    if mode == "decoupled" and wd != 0:
        w = w * _s(1 - lr * wd, w)
    if mode == "decoupled_bc":
        assert hp["eps_mode"] == "hat" or not hp["bias_correction"], "decoupled_bc needs lr_t"
        return w - _s(lr_t, w) * (u + _s(wd, w) * w)
    return w - _s(step_size, w) * u


def nadam_step(w, g, st, hp, t):
    """NAdam as PyTorch (>= 2.0, and 1.13's foreach path):
      mu_t = b1*(1 - 0.5*0.96^(t*psi)),  mu_{t+1} likewise;  mu_prod_t = prod_{i<=t} mu_i
      l2 (default): g += wd*w;  decoupled_weight_decay: w *= 1 - lr*wd
      m, v as Adam;  denom = sqrt(v/bc2) + eps
      w -= lr*(1-mu_t)/(1-mu_prod_t) * g/denom + lr*mu_{t+1}/(1-mu_prod_t*mu_{t+1}) * m/denom
    """
    b1, b2 = hp["betas"]
    lr, eps, wd, psi = hp["lr"], hp["eps"], hp["weight_decay"], hp["momentum_decay"]
    if "m" not in st:
        st["m"] = np.zeros_like(w)
        st["v"] = np.zeros_like(w)
        st["mu_product"] = 1.0
    if wd != 0:
        if hp.get("decoupled_weight_decay", False):
            w = w * _s(1 - lr * wd, w)
        else:
            g = g + _s(wd, w) * w
    mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
    st["mu_product"] *= mu
    mp = st["mu_product"]
    m = st["m"] = _s(b1, w) * st["m"] + _s(1 - b1, w) * g
    v = st["v"] = _s(b2, w) * st["v"] + _s(1 - b2, w) * g * g
    denom = np.sqrt(v) / _s(math.sqrt(1 - b2 ** t), w) + _s(eps, w)
    w = w - _s(lr * (1 - mu) / (1 - mp), w) * (g / denom)
    return w - _s(lr * mu_next / (1 - mp * mu_next), w) * (m / denom)


def radam_step(w, g, st, hp, t):
    """RAdam as PyTorch (Liu et al. 2020):
      l2 (default): g += wd*w;  decoupled_weight_decay: w *= 1 - lr*wd
      m, v as Adam; rho_inf = 2/(1-b2) - 1; rho_t = rho_inf - 2 t b2^t / bc2
      rho_t > 5: r = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))
                 w -= lr * m/bc1 * r * sqrt(bc2)/(sqrt(v) + eps)
      else:      w -= lr * m/bc1
    """
    b1, b2 = hp["betas"]
    lr, eps, wd = hp["lr"], hp["eps"], hp["weight_decay"]
    if "m" not in st:
        st["m"] = np.zeros_like(w)
        st["v"] = np.zeros_like(w)
    if wd != 0:
        if hp.get("decoupled_weight_decay", False):
            w = w * _s(1 - lr * wd, w)
        else:
            g = g + _s(wd, w) * w
    m = st["m"] = _s(b1, w) * st["m"] + _s(1 - b1, w) * g
    v = st["v"] = _s(b2, w) * st["v"] + _s(1 - b2, w) * g * g
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2 ** t / bc2
    mhat = m / _s(bc1, w)
    if rho_t > 5:
        r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        return w - mhat * _s(lr * r * math.sqrt(bc2), w) / (np.sqrt(v) + _s(eps, w))
    return w - _s(lr, w) * mhat


def lion_step(w, g, st, hp, t):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2):
      c = b1*m + (1-b1)*g;  w = w - lr*(sign(c) + wd*w);  m = b2*m + (1-b2)*g
    (w - lr*wd*w is written w *= 1 - lr*wd.)"""
    b1, b2 = hp["betas"]
    lr, wd = hp["lr"], hp["weight_decay"]
    if "m" not in st:
        st["m"] = np.zeros_like(w)
    c = _s(b1, w) * st["m"] + _s(1 - b1, w) * g
    st["min_abs_c"] = min(st.get("min_abs_c", math.inf), float(np.min(np.abs(c))))
    w = w * _s(1 - lr * wd, w) - _s(lr, w) * np.sign(c)
    st["m"] = _s(b2, w) * st["m"] + _s(1 - b2, w) * g
    return w


def lamb_step(w, g, st, hp, t):
    """LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning", Algorithm 2),
    per parameter tensor (one "layer" = one tensor), phi = identity:
      m, v as Adam; m_hat = m/bc1; v_hat = v/bc2; r = m_hat/(sqrt(v_hat) + eps) + wd*w
      ratio = ||w|| / ||r||  (1 when either norm is 0);  w -= lr * ratio * r
    """
    b1, b2 = hp["betas"]
    lr, eps, wd = hp["lr"], hp["eps"], hp["weight_decay"]
    if "m" not in st:
        st["m"] = np.zeros_like(w)
        st["v"] = np.zeros_like(w)
    m = st["m"] = _s(b1, w) * st["m"] + _s(1 - b1, w) * g
    v = st["v"] = _s(b2, w) * st["v"] + _s(1 - b2, w) * g * g
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    r = (m / _s(bc1, w)) / (np.sqrt(v / _s(bc2, w)) + _s(eps, w)) + _s(wd, w) * w
    wn = math.sqrt(float(np.sum(w.astype(np.float64) ** 2)))
    rn = math.sqrt(float(np.sum(r.astype(np.float64) ** 2)))
    ratio = wn / rn if wn > 0 and rn > 0 else 1.0
    return w - _s(lr * ratio, w) * r


def sfadamw_step(w, g, st, hp, t):
    """Schedule-free AdamW (Defazio et al. 2024, "The Road Less Scheduled"), as the authors'
    reference code computes it (schedulefree/adamw_schedulefree.py, AdamWScheduleFree.step),
    w holding y (train mode), k = t - 1:
      sched = (k+1)/warmup_steps if k < warmup_steps else 1
      lr_k = lr*sched*sqrt(1 - b2^(k+1));  lr_max = max(lr_max, lr_k)   (lr_max starts at -1)
      weight = (k+1)^r * lr_max^weight_lr_power;  weight_sum += weight;  ckp1 = weight/weight_sum
      v = b2*v + (1-b2)*g^2;  gn = g/(sqrt(v) + eps) + wd*y
      y = lerp(y, z, ckp1) + lr_k*(b1*(1-ckp1) - 1)*gn;  z = z - lr_k*gn   (z starts at y)"""
    b1, b2 = hp["betas"]
    lr, eps, wd = hp["lr"], hp["eps"], hp["weight_decay"]
    if "z" not in st:
        st["z"] = w.copy()
        st["v"] = np.zeros_like(w)
        st["weight_sum"], st["lr_max"] = 0.0, -1.0
    k = t - 1
    sched = (k + 1) / hp["warmup_steps"] if k < hp["warmup_steps"] else 1.0
    lr_k = lr * sched * math.sqrt(1 - b2 ** (k + 1))
    lr_max = st["lr_max"] = max(lr_k, st["lr_max"])
    weight = (k + 1) ** hp["r"] * lr_max ** hp["weight_lr_power"]
    st["weight_sum"] += weight
    ckp1 = weight / st["weight_sum"] if st["weight_sum"] != 0 else 0.0
    v = st["v"] = _s(b2, w) * st["v"] + _s(1 - b2, w) * g * g
    gn = g / (np.sqrt(v) + _s(eps, w))
    if wd != 0:
        gn = gn + _s(wd, w) * w
    z = st["z"]
    y = w + _s(ckp1, w) * (z - w) + _s(lr_k * (b1 * (1 - ckp1) - 1), w) * gn
    st["z"] = z - _s(lr_k, w) * gn
    return y

STEP_FN = {"Adam": adam_step, "AdamW": adam_step, "NAdam": nadam_step, "RAdam": radam_step,
           "Lion": lion_step, "LAMB": lamb_step, "ScheduleFreeAdamW": sfadamw_step}

# The flavour table (lua/moonopt/optim/adam.lua ADAM_PRESETS / ADAMW_PRESETS): each flavour is
# a preset of the switches plus defaults. The flavours' exactness to their frameworks' code is
# tested by make_flavor_golden.py; here they only exercise the switches.
FLAVORS = {
    ("Adam", "pytorch"): dict(bias_correction=True, eps_mode="raw", weight_decay_mode="l2",
                              eps=1e-8, weight_decay=0.0),
    ("AdamW", "pytorch"): dict(bias_correction=True, eps_mode="raw",
                               weight_decay_mode="decoupled", eps=1e-8, weight_decay=1e-2),
    ("Adam", "mxnet"): dict(bias_correction=True, eps_mode="hat", weight_decay_mode="l2",
                            eps=1e-8, weight_decay=0.0),
    ("AdamW", "mxnet"): dict(bias_correction=True, eps_mode="hat",
                             weight_decay_mode="decoupled_bc", eps=1e-6, weight_decay=0.0),
    ("AdamW", "bert"): dict(bias_correction=False, eps_mode="raw",
                            weight_decay_mode="decoupled_bc", eps=1e-6, weight_decay=0.01),
    ("Adam", "keras"): dict(bias_correction=True, eps_mode="hat", weight_decay_mode="decoupled",
                            eps=1e-7, weight_decay=0.0),
    ("AdamW", "keras"): dict(bias_correction=True, eps_mode="hat",
                             weight_decay_mode="decoupled", eps=1e-7, weight_decay=0.004),
    ("Adam", "torch7"): dict(bias_correction=True, eps_mode="hat", weight_decay_mode="l2",
                             eps=1e-8, weight_decay=0.0),
}
COMMON = {
    "Adam": dict(lr=1e-3, betas=[0.9, 0.999], amsgrad=False, maximize=False, rescale_grad=1.0,
                 clip_gradient=None, lr_decay=0.0),
    "NAdam": dict(lr=2e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0,
                  momentum_decay=4e-3, decoupled_weight_decay=False),
    "RAdam": dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False),
    "Lion": dict(lr=1e-4, betas=[0.9, 0.99], weight_decay=0.0),
    "LAMB": dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-6, weight_decay=0.0),
    "ScheduleFreeAdamW": dict(lr=0.0025, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0,
                              warmup_steps=0, r=0.0, weight_lr_power=2.0),
}
COMMON["AdamW"] = COMMON["Adam"]


def resolve(cls, opts):
    """Hyperparameters of a group: defaults < flavour preset < user options."""
    hp = dict(COMMON[cls])
    if cls in ("Adam", "AdamW"):
        hp.update(FLAVORS[(cls, opts.get("flavor", "pytorch"))])
    hp.update(opts)
    return hp


def run_ref(cls, opts, params, grads, groups=None, sets=None, dtype=np.float64, hook=None,
            out=np.float32):
    """Run a NumPy formula; returns the params after every step (`out` arrays)."""
    ws = [p.astype(dtype) for p in params]
    if groups:
        ghp = [(resolve(cls, {**opts, **{k: v for k, v in g.items() if k != "params"}}),
                [i - 1 for i in g["params"]]) for g in groups]
    else:
        ghp = [(resolve(cls, opts), list(range(len(params))))]
    states = [dict() for _ in params]
    counts = [0] * len(params)
    traj = []
    step = STEP_FN[cls]
    for t, gstep in enumerate(grads, start=1):
        for gi, key, value in (sets or {}).get(t, []):
            ghp[gi - 1][0][key] = value
        for hp, idx in ghp:
            for i in idx:
                if gstep[i] is None:
                    continue
                counts[i] += 1
                ws[i] = step(ws[i], gstep[i].astype(dtype), states[i], hp, counts[i])
                if hook:
                    hook(states[i], ws[i])
        traj.append([w.astype(out) for w in ws])
    return traj


# ----------------------------------------------------------------------------- case building

def add_case(name, cls, opts, source, *, params=None, grads=None, groups=None, sets=None,
             note=None, contrast=None, tiny=False, shapes=SHAPES, steps=STEPS, gscale=1.0,
             pscale=1.0, torch_extra=None, check_ref=False):
    """Build one case, run its checks, append it to CASES."""
    assert all(c["name"] != name for c in CASES), name
    rng = rng_for(name)
    params = params if params is not None else make_params(rng, shapes, pscale)
    if grads is None:
        grads = make_grads(rng, shapes, steps, gscale, tiny)
        # Lion: redraw the gradients until no sign(b1*m + (1-b1)*g) sits near a tie
        while cls == "Lion" and not lion_margin_ok(opts, params, grads, groups):
            grads = make_grads(rng, shapes, steps, gscale, tiny)

    def run(o, dtype_hi=False):
        if source == "torch-1.13":
            return run_torch(cls, o, params, grads, groups, sets,
                             torch.float64 if dtype_hi else torch.float32, torch_extra)
        return run_ref(cls, o, params, grads, groups, sets,
                       np.float32 if dtype_hi else np.float64)

    expected = run(opts)
    # noise: the other precision must agree far inside the tolerance
    noise = max_violation(expected, run(opts, dtype_hi=True), RTOL, FLOOR)
    if noise > NOISE_FRACTION:
        sys.exit(f"{name}: precision noise {noise:.3f} of the tolerance; make the case sturdier")
    # contrast: the option this case pins down must matter
    gaps = []
    for alt in contrast or []:
        o2 = {k: v for k, v in opts.items() if k not in alt or alt[k] is not None}
        o2.update({k: v for k, v in alt.items() if v is not None})
        gap = max_violation(expected, run(o2), RTOL, FLOOR)
        if gap < CONTRAST_FACTOR:
            sys.exit(f"{name}: contrast {alt} differs only {gap:.1f}x the tolerance")
        gaps.append(f"{gap:.0f}x")
    # the NumPy transcription agrees with torch where both exist
    if check_ref:
        ref = run_ref(cls, opts, params, grads, groups, sets)
        d = max_violation(expected, ref, RTOL, FLOOR)
        if d > NOISE_FRACTION:
            sys.exit(f"{name}: NumPy formula differs from torch ({d:.3f} of the tolerance)")
    if VERBOSE:
        print(f"  {name:32s} {source:10s} noise {noise:.3f}  contrast {' '.join(gaps) or '-'}")
    CASES.append(dict(name=name, cls=cls, source=source, opts=opts, groups=groups, sets=sets,
                      note=note, params=params, grads=grads, expected=expected))


def lion_margin_ok(opts, params, grads, groups):
    """sign(c) must not sit near a tie, or float32 rounding could flip a whole lr-sized step."""
    states = []
    run_ref("Lion", opts, params, grads, groups, hook=lambda st, w: states.append(st))
    return min(st["min_abs_c"] for st in states) > 1e-4


def T(name, cls, opts, **kw):
    add_case(name, cls, opts, "torch-1.13", **kw)


def R(name, cls, opts, **kw):
    add_case(name, cls, opts, "numpy-f64", **kw)


def with_nil_grads(name, steps_without, param_index):
    """Gradient sequence of `name` with param `param_index` (1-based) lacking .grad at some steps."""
    rng = rng_for(name)
    params = make_params(rng)
    grads = make_grads(rng)
    for t in steps_without:
        grads[t - 1][param_index - 1] = None
    return params, grads


# ----------------------------------------------------------------------------- the cases

def torch_cases():
    # SGD ------------------------------------------------------------------------------------
    T("sgd_plain", "SGD", dict(lr=0.1))
    T("sgd_momentum", "SGD", dict(lr=0.05, momentum=0.9), contrast=[dict(momentum=None)])
    T("sgd_dampening", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.5),
      contrast=[dict(dampening=None)])
    T("sgd_nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True),
      contrast=[dict(nesterov=None)])
    T("sgd_weight_decay", "SGD", dict(lr=0.1, weight_decay=0.1),
      contrast=[dict(weight_decay=None)])
    T("sgd_momentum_wd_nesterov", "SGD",
      dict(lr=0.05, momentum=0.8, weight_decay=0.05, nesterov=True))
    T("sgd_maximize", "SGD", dict(lr=0.05, momentum=0.9, maximize=True),
      contrast=[dict(maximize=None)])
    T("sgd_groups", "SGD", dict(lr=0.01, momentum=0.9),
      groups=[dict(params=[1], lr=0.1, weight_decay=0.01), dict(params=[2, 3], nesterov=True)],
      note="group 1 overrides lr and weight_decay, group 2 inherits lr 0.01 and adds nesterov")
    T("sgd_lr_change", "SGD", dict(lr=0.1, momentum=0.9),
      sets={4: [(1, "lr", 0.02)], 7: [(1, "lr", 0.005)]},
      note="param_groups[1].lr changed before steps 4 and 7")
    T("sgd_nil_grad", "SGD", dict(lr=0.1, momentum=0.9),
      **dict(zip(("params", "grads"), with_nil_grads("sgd_nil_grad", (3, 4, 8), 2))),
      note="param 2 has no .grad at steps 3, 4 and 8: skipped, momentum untouched")

    # Adam / AdamW -------------------------------------------------------------------------
    T("adam_defaults", "Adam", dict(), check_ref=True)
    T("adam_full_options", "Adam", dict(lr=3e-3, betas=[0.8, 0.99], eps=1e-6, weight_decay=0.0),
      check_ref=True)
    T("adam_weight_decay", "Adam", dict(lr=1e-2, weight_decay=0.1), check_ref=True,
      contrast=[dict(weight_decay=None)])
    T("adam_amsgrad", "Adam", dict(lr=1e-2, betas=[0.5, 0.9], amsgrad=True), check_ref=True,
      contrast=[dict(amsgrad=None)])
    T("adam_maximize", "Adam", dict(lr=1e-2, maximize=True, weight_decay=0.05), check_ref=True,
      contrast=[dict(maximize=None)])
    T("adam_tiny_grads", "Adam", dict(lr=1e-2), tiny=True, check_ref=True,
      note="|g| in [1e-9, 1e-7]: eps 1e-8 competes with sqrt(v)/sqrt(bc2)",
      contrast=[dict(eps=1e-9)])
    T("adam_groups", "Adam", dict(lr=1e-2),
      groups=[dict(params=[1, 3], betas=[0.8, 0.9], weight_decay=0.1), dict(params=[2], lr=1e-3)],
      check_ref=True)
    T("adam_lr_change", "Adam", dict(lr=1e-2),
      sets={3: [(1, "lr", 3e-3)], 6: [(1, "lr", 3e-2)]}, check_ref=True)
    T("adam_nil_grad", "Adam", dict(lr=1e-2),
      **dict(zip(("params", "grads"), with_nil_grads("adam_nil_grad", (2, 5, 6), 1))),
      check_ref=True, note="param 1 has no .grad at steps 2, 5, 6: its step count lags")
    T("adamw_defaults", "AdamW", dict(), check_ref=True)
    T("adamw_amsgrad", "AdamW", dict(lr=1e-2, amsgrad=True, betas=[0.5, 0.9]), check_ref=True,
      contrast=[dict(amsgrad=None)])
    T("adamw_wd01", "AdamW", dict(lr=1e-2, weight_decay=0.1), check_ref=True)
    T("adamw_maximize", "AdamW", dict(lr=1e-2, maximize=True), check_ref=True)
    T("adamw_tiny_grads", "AdamW", dict(lr=1e-2, weight_decay=0.1), tiny=True, check_ref=True,
      contrast=[dict(eps=1e-9)])
    T("adamw_groups_wd", "AdamW", dict(lr=1e-2, weight_decay=0.1),
      groups=[dict(params=[1, 2]), dict(params=[3], weight_decay=0.0, lr=3e-3)],
      check_ref=True, note="the second group is a 'no decay' group, as for biases")
    T("adamw_lr_wd_change", "AdamW", dict(lr=1e-2, weight_decay=0.1),
      sets={4: [(1, "lr", 2e-3)], 7: [(1, "weight_decay", 0.5)]}, check_ref=True)

    # Adamax, NAdam, RAdam -------------------------------------------------------------------
    T("adamax_defaults", "Adamax", dict())
    T("adamax_wd", "Adamax", dict(lr=1e-2, betas=[0.8, 0.99], weight_decay=0.1))
    T("adamax_maximize", "Adamax", dict(lr=1e-2, maximize=True))
    T("adamax_tiny_grads", "Adamax", dict(lr=1e-2), tiny=True,
      note="exp_inf = max(b2*exp_inf, |g| + eps): eps dominates", contrast=[dict(eps=1e-10)])
    # NAdam: 1.13's single-tensor path multiplies mu_t twice into mu_product_next (fixed in
    # PyTorch 2.0, pytorch/pytorch#92699); the foreach path has the published formula, so use it.
    nadam = dict(torch_extra=dict(foreach=True), check_ref=True)
    T("nadam_defaults", "NAdam", dict(), **nadam)
    T("nadam_momentum_decay", "NAdam", dict(lr=1e-2, momentum_decay=0.05), **nadam,
      contrast=[dict(momentum_decay=None)])
    T("nadam_wd", "NAdam", dict(lr=1e-2, weight_decay=0.1, betas=[0.8, 0.99]), **nadam)
    T("nadam_tiny_grads", "NAdam", dict(lr=1e-2), tiny=True, **nadam)
    T("radam_defaults", "RAdam", dict(lr=1e-2), check_ref=True,
      note="rho_t > 5 from step 6 on: steps 1-5 are plain SGD-with-momentum steps")
    T("radam_wd", "RAdam", dict(lr=1e-2, weight_decay=0.1, betas=[0.9, 0.99]), check_ref=True)
    T("radam_tiny_grads", "RAdam", dict(lr=1e-2), tiny=True, check_ref=True,
      contrast=[dict(eps=1e-9)])

    # RMSprop, Adagrad, Adadelta ------------------------------------------------------------
    T("rmsprop_defaults", "RMSprop", dict())
    T("rmsprop_alpha", "RMSprop", dict(lr=1e-3, alpha=0.9), contrast=[dict(alpha=None)])
    T("rmsprop_centered", "RMSprop", dict(lr=1e-3, centered=True),
      contrast=[dict(centered=None)])
    T("rmsprop_momentum", "RMSprop", dict(lr=1e-3, momentum=0.9))
    T("rmsprop_centered_momentum_wd", "RMSprop",
      dict(lr=1e-3, alpha=0.95, centered=True, momentum=0.5, weight_decay=0.1))
    T("rmsprop_maximize", "RMSprop", dict(lr=1e-3, maximize=True))
    T("rmsprop_tiny_grads", "RMSprop", dict(lr=1e-3), tiny=True, contrast=[dict(eps=1e-10)])
    T("adagrad_defaults", "Adagrad", dict())
    T("adagrad_lr_decay", "Adagrad", dict(lr=0.1, lr_decay=0.5), contrast=[dict(lr_decay=None)])
    T("adagrad_init_acc", "Adagrad", dict(lr=0.1, initial_accumulator_value=0.5),
      contrast=[dict(initial_accumulator_value=None)])
    T("adagrad_wd", "Adagrad", dict(lr=0.1, weight_decay=0.1, lr_decay=0.1))
    T("adagrad_maximize", "Adagrad", dict(lr=0.1, maximize=True))
    T("adagrad_tiny_grads", "Adagrad", dict(lr=0.1), tiny=True, contrast=[dict(eps=1e-7)])
    T("adagrad_lr_change", "Adagrad", dict(lr=0.1, lr_decay=0.1),
      sets={5: [(1, "lr", 0.02)]})
    T("adadelta_defaults", "Adadelta", dict())
    T("adadelta_rho", "Adadelta", dict(lr=1.0, rho=0.5), contrast=[dict(rho=None)])
    T("adadelta_wd", "Adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.1, eps=1e-5))
    T("adadelta_maximize", "Adadelta", dict(maximize=True))


def ref_cases():
    # Adam / AdamW flavours (docs/design.md "The Adam family"), each also with rescale_grad and clip_gradient
    rc = dict(rescale_grad=0.5, clip_gradient=0.6)
    R("adam_mxnet", "Adam", dict(flavor="mxnet", lr=1e-2, weight_decay=0.05),
      note="seed variant 1: hat, bias correction, l2")
    R("adam_mxnet_rescale_clip", "Adam", dict(flavor="mxnet", lr=1e-2, weight_decay=0.05, **rc),
      contrast=[dict(clip_gradient=None), dict(rescale_grad=None)])
    R("adam_mxnet_tiny_grads", "Adam", dict(flavor="mxnet", lr=1e-2), tiny=True,
      note="eps added to the raw sqrt(v): differs from the pytorch flavour",
      contrast=[dict(flavor=None)])
    R("adamw_mxnet", "AdamW", dict(flavor="mxnet", lr=1e-2, weight_decay=0.1),
      note="seed variant 2: hat, bias correction, decoupled_bc",
      contrast=[dict(flavor=None)])
    R("adamw_mxnet_rescale_clip", "AdamW",
      dict(flavor="mxnet", lr=1e-2, weight_decay=0.1, **rc))
    R("adamw_bert", "AdamW", dict(flavor="bert", lr=1e-2),
      note="seed variant 3: no bias correction, eps 1e-6, wd 0.01 by default",
      contrast=[dict(flavor=None)])
    R("adamw_bert_rescale_clip", "AdamW", dict(flavor="bert", lr=1e-2, weight_decay=0.1, **rc))
    R("adamw_bert_tiny_grads", "AdamW", dict(flavor="bert", lr=1e-2), tiny=True)
    R("adam_keras", "Adam", dict(flavor="keras", lr=1e-2))
    R("adam_keras_defaults", "Adam", dict(flavor="keras"), tiny=True,
      note="keras defaults: lr 1e-3, eps 1e-7 (visible with tiny gradients)",
      contrast=[dict(flavor="mxnet")])
    R("adam_keras_rescale_clip", "Adam", dict(flavor="keras", lr=1e-2, **rc))
    R("adamw_keras", "AdamW", dict(flavor="keras", lr=1e-2, weight_decay=0.1))
    R("adamw_keras_defaults", "AdamW", dict(flavor="keras", lr=5e-2),
      note="keras AdamW defaults: wd 0.004, eps 1e-7 (lr 0.05 makes the decay visible)",
      contrast=[dict(weight_decay=0.0)])
    R("adamw_keras_rescale_clip", "AdamW", dict(flavor="keras", lr=1e-2, weight_decay=0.1, **rc))
    R("adam_torch7", "Adam", dict(flavor="torch7", lr=1e-2, weight_decay=0.05))
    R("adam_torch7_rescale_clip", "Adam", dict(flavor="torch7", lr=1e-2, weight_decay=0.05, **rc))
    R("adam_torch7_tiny_grads", "Adam", dict(flavor="torch7", lr=1e-2), tiny=True,
      contrast=[dict(flavor=None)])
    R("adam_torch7_lr_decay", "Adam", dict(flavor="torch7", lr=1e-2, lr_decay=0.1,
                                           weight_decay=0.05),
      note="torch7 optim.adam: clr = lr / (1 + (t-1)*learningRateDecay)",
      contrast=[dict(lr_decay=None)])
    R("adamw_lr_decay", "AdamW", dict(lr=5e-2, lr_decay=0.5, weight_decay=0.2),
      note="lr_decay acts as a schedule: the decayed lr also drives w *= 1 - lr*wd",
      contrast=[dict(lr_decay=None)])
    R("adam_pytorch_rescale_clip", "Adam", dict(lr=1e-2, weight_decay=0.05, **rc))
    R("adamw_pytorch_rescale_clip", "AdamW", dict(lr=1e-2, weight_decay=0.1, **rc))
    R("adam_mxnet_maximize_amsgrad", "Adam",
      dict(flavor="mxnet", lr=1e-2, maximize=True, amsgrad=True, betas=[0.5, 0.9]))
    R("adamw_mxnet_groups_lr_change", "AdamW", dict(flavor="mxnet", lr=1e-2, weight_decay=0.1),
      groups=[dict(params=[1, 2]), dict(params=[3], weight_decay=0.0)],
      sets={5: [(1, "lr", 3e-3), (2, "lr", 3e-2)]})

    # hand-set switches
    R("adam_nobc_raw", "Adam", dict(lr=1e-2, bias_correction=False, eps_mode="raw"),
      contrast=[dict(bias_correction=None)])
    R("adam_nobc_hat", "Adam", dict(lr=1e-2, bias_correction=False, eps_mode="hat"),
      note="without bias correction eps_mode changes nothing: same trajectory as raw")
    R("adam_nobc_raw_tiny_grads", "Adam", dict(lr=1e-2, bias_correction=False, eps_mode="raw"),
      tiny=True)
    R("adam_hat_tiny_grads", "Adam", dict(lr=1e-2, eps_mode="hat"), tiny=True,
      contrast=[dict(eps_mode="raw")])
    R("adam_decoupled", "Adam", dict(lr=1e-2, weight_decay=0.1, weight_decay_mode="decoupled"),
      contrast=[dict(weight_decay_mode=None)])
    R("adam_hat_decoupled_bc", "Adam",
      dict(lr=1e-2, weight_decay=0.1, eps_mode="hat", weight_decay_mode="decoupled_bc"),
      contrast=[dict(weight_decay_mode="decoupled")])
    R("adamw_l2", "AdamW", dict(lr=1e-2, weight_decay=0.1, weight_decay_mode="l2"),
      contrast=[dict(weight_decay_mode=None)])
    R("adamw_hat_decoupled", "AdamW",
      dict(lr=1e-2, weight_decay=0.1, eps_mode="hat", weight_decay_mode="decoupled"))
    R("adamw_nobc_decoupled_bc", "AdamW",
      dict(lr=1e-2, weight_decay=0.1, bias_correction=False, weight_decay_mode="decoupled_bc"),
      note="without bias correction decoupled_bc reads w -= lr*(m/(sqrt(v)+eps) + wd*w)")
    R("adamw_bert_with_bc", "AdamW", dict(flavor="bert", lr=1e-2, bias_correction=True,
                                          eps_mode="hat"),
      note="an explicit switch overrides the flavour preset")
    R("adam_amsgrad_hat", "Adam", dict(lr=1e-2, amsgrad=True, eps_mode="hat", betas=[0.5, 0.9]))

    # NAdam / RAdam decoupled_weight_decay (PyTorch >= 2.0: w *= 1 - lr*wd)
    R("nadam_decoupled_wd", "NAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
      contrast=[dict(decoupled_weight_decay=None)])
    R("radam_decoupled_wd", "RAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
      contrast=[dict(decoupled_weight_decay=None)])

    R("lion_defaults", "Lion", dict(lr=1e-3))
    R("lion_wd", "Lion", dict(lr=1e-3, weight_decay=1.0, betas=[0.95, 0.98]),
      contrast=[dict(weight_decay=None)])
    R("lion_groups", "Lion", dict(lr=1e-3),
      groups=[dict(params=[1], lr=3e-3, weight_decay=0.5), dict(params=[2, 3])],
      sets={6: [(2, "lr", 1e-2)]})

    # LAMB: trust ratio per tensor; a zero tensor has ratio 1 at its first step.
    zero_first = make_params(rng_for("lamb_zero_param"))
    zero_first[0][...] = 0
    R("lamb_defaults", "LAMB", dict(lr=1e-2))
    R("lamb_wd", "LAMB", dict(lr=1e-2, weight_decay=0.1, betas=[0.8, 0.99]),
      contrast=[dict(weight_decay=None)])
    R("lamb_zero_param", "LAMB", dict(lr=1e-2, weight_decay=0.01), params=zero_first,
      note="param 1 starts at zero: ||w|| = 0 gives trust ratio 1")
    R("lamb_groups", "LAMB", dict(lr=1e-2, weight_decay=0.1),
      groups=[dict(params=[1, 2]), dict(params=[3], weight_decay=0.0, lr=1e-3)])

    # Schedule-free AdamW (the authors' reference code; params hold y, the train-mode point)
    R("sfadamw_defaults", "ScheduleFreeAdamW", dict(lr=1e-2))
    R("sfadamw_warmup", "ScheduleFreeAdamW", dict(lr=1e-2, warmup_steps=4),
      contrast=[dict(warmup_steps=0)])
    R("sfadamw_wd", "ScheduleFreeAdamW", dict(lr=1e-2, weight_decay=0.5, betas=[0.8, 0.99]),
      contrast=[dict(weight_decay=0.0)])
    R("sfadamw_r_power", "ScheduleFreeAdamW",
      dict(lr=1e-2, warmup_steps=3, r=1.0, weight_lr_power=1.0),
      contrast=[dict(r=0.0, weight_lr_power=2.0)])
    R("sfadamw_groups", "ScheduleFreeAdamW", dict(lr=1e-2, warmup_steps=2),
      groups=[dict(params=[1], lr=3e-2, weight_decay=0.1), dict(params=[2, 3])])


# ----------------------------------------------------------------------------- LBFGS

LBFGS_SHAPES = [(4,), (2, 3)]


def lbfgs_problem(name, xscale):
    """f(x) = sum_i 0.5*a_i*x_i^2 + b_i*x_i over all params, a_i in [1, 10]: minimum -b/a."""
    rng = rng_for(name)
    a = [rng.uniform(1.0, 10.0, s).astype(np.float32) for s in LBFGS_SHAPES]
    b = [rng.standard_normal(s).astype(np.float32) for s in LBFGS_SHAPES]
    x0 = [(rng.standard_normal(s) * xscale).astype(np.float32) for s in LBFGS_SHAPES]
    return a, b, x0


def run_lbfgs(opts, a, b, x0, steps, dtype, out=np.float32):
    """torch LBFGS with the closure the Lua test computes: grad = float32(a*x) + b in the
    tensors' precision, loss = the float64 sum, element by element in row-major order."""
    ps = [torch.tensor(x, dtype=dtype).requires_grad_() for x in x0]
    at = [torch.tensor(v, dtype=dtype) for v in a]
    bt = [torch.tensor(v, dtype=dtype) for v in b]
    opt = torch.optim.LBFGS(ps, **opts)
    al = [v.astype(np.float64).ravel().tolist() for v in a]
    bl = [v.astype(np.float64).ravel().tolist() for v in b]
    evals = [0]

    def closure():
        evals[0] += 1
        loss = 0.0
        for p, ai, bi, av, bv in zip(ps, at, bt, al, bl):
            x = p.detach()
            p.grad = ai * x + bi
            for xk, ak, bk in zip(x.ravel().tolist(), av, bv):
                loss = loss + (0.5 * ak * xk * xk + bk * xk)
        return loss

    traj = []
    for _ in range(steps):
        opt.step(closure)
        traj.append([p.detach().numpy().astype(out).copy() for p in ps])
    return traj, evals[0]


def lbfgs_cases():
    # x0 ~ N(0, 10^2) for strong_wolfe: the first trial step 1/sum|g| is then too short for
    # the curvature condition, so the line search really extrapolates and interpolates.
    for name, opts, steps, xscale, alts in [
        ("lbfgs_plain", dict(max_iter=3), 5, 2.0, [dict(max_iter=4)]),
        ("lbfgs_history", dict(max_iter=3, history_size=3, lr=0.5), 5, 2.0,
         [dict(max_iter=3, lr=0.5)]),
        ("lbfgs_strong_wolfe", dict(max_iter=3, line_search_fn="strong_wolfe"), 4, 10.0,
         [dict(max_iter=3)]),
    ]:
        a, b, x0 = lbfgs_problem(name, xscale)
        expected, evals = run_lbfgs(opts, a, b, x0, steps, torch.float32)
        hi, _ = run_lbfgs(opts, a, b, x0, steps, torch.float64)
        noise = max_violation(expected, hi, LBFGS_RTOL, FLOOR)
        if noise > NOISE_FRACTION:
            sys.exit(f"{name}: float64 rerun differs {noise:.3f} of the LBFGS tolerance")
        for alt in alts:
            gap = max_violation(expected, run_lbfgs(alt, a, b, x0, steps, torch.float32)[0],
                                LBFGS_RTOL, FLOOR)
            if gap < CONTRAST_FACTOR:
                sys.exit(f"{name}: contrast {alt} differs only {gap:.1f}x the tolerance")
            if VERBOSE:
                print(f"  {name:32s} torch-1.13 noise {noise:.3f}  contrast {gap:.0f}x"
                      f"  ({evals} closure calls)")
        # not converged after the first step, so the trajectory is really compared
        xstar = [-bv / av for av, bv in zip(a, b)]
        assert max_violation([xstar], [expected[0]], LBFGS_RTOL, FLOOR) > CONTRAST_FACTOR
        CASES.append(dict(
            name=name, cls="LBFGS", source="torch-1.13", opts=opts, params=x0,
            closure=dict(a=a, b=b), steps=steps, expected=expected, rtol=LBFGS_RTOL,
            note=f"f = sum 0.5*a*x^2 + b*x; {evals} closure calls in torch over {steps} steps"))


# ----------------------------------------------------------------------------- float64 mode
#
# tests/golden/optim_golden_f64.lua (tests/lua/test_optim_f64.lua): float64 params and
# gradients (drawn in float64, never rounded to float32) stepped by torch.optim in float64 or
# by the NumPy formulas above in float64, written with %.17g. One or two cases per class and
# one per Adam flavour. The tolerance is RTOL64 relative; every case checks that a float32
# run of the same inputs misses it by more than CONTRAST_FACTOR (so the test fails if the
# library stepped float64 params in float32), and where both a torch and a NumPy reference
# exist, that they agree within NOISE_FRACTION of it.

OUT64 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_golden_f64.lua")
RTOL64 = 1e-12
LBFGS_RTOL64 = 1e-9   # the line search's branches amplify last-bit differences of dot products
CASES64 = []


def add_case64(name, cls, opts, source, *, tiny=False, groups=None, torch_extra=None,
               cross=False, note=None):
    """A float64 case: expected from `source` in float64; checked as described above."""
    assert all(c["name"] != name for c in CASES64), name
    rng = rng_for("f64_" + name)
    params = make_params(rng, SHAPES, 1.0, np.float64)
    grads = make_grads(rng, SHAPES, STEPS, 1.0, tiny, np.float64)
    while cls == "Lion" and not lion_margin_ok(opts, params, grads, groups):
        grads = make_grads(rng, SHAPES, STEPS, 1.0, tiny, np.float64)

    def torch_run(dtype):
        # PyTorch keeps NAdam's mu_product in a tensor of the default dtype
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return run_torch(cls, opts, params, grads, groups, None, dtype, torch_extra, np.float64)
        finally:
            torch.set_default_dtype(old)

    def ref_run(dtype):
        return run_ref(cls, opts, params, grads, groups, None, dtype, out=np.float64)

    run = torch_run if source == "torch-1.13" else ref_run
    expected = run(torch.float64 if source == "torch-1.13" else np.float64)
    low = run(torch.float32 if source == "torch-1.13" else np.float32)
    gap = max_violation(expected, low, RTOL64, FLOOR)
    if gap < CONTRAST_FACTOR:
        sys.exit(f"{name}: a float32 run differs only {gap:.1f}x the float64 tolerance")
    if cross:
        other = ref_run(np.float64) if source == "torch-1.13" else torch_run(torch.float64)
        d = max_violation(expected, other, RTOL64, FLOOR)
        if d > NOISE_FRACTION:
            sys.exit(f"{name}: torch and NumPy float64 differ {d:.3f} of the tolerance")
    if VERBOSE:
        print(f"  {name:32s} {source:10s} float32 gap {gap:.3g}x")
    CASES64.append(dict(name=name, cls=cls, source=source, opts=opts, groups=groups, sets=None,
                        note=note, params=params, grads=grads, expected=expected))


def f64_cases():
    T64 = lambda name, cls, opts, **kw: add_case64(name, cls, opts, "torch-1.13", **kw)
    R64 = lambda name, cls, opts, **kw: add_case64(name, cls, opts, "numpy-f64", **kw)
    T64("sgd_momentum_wd_nesterov", "SGD",
        dict(lr=0.05, momentum=0.8, weight_decay=0.05, nesterov=True))
    T64("sgd_dampening_maximize", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.5, maximize=True))
    T64("adam_defaults", "Adam", dict(lr=1e-2), cross=True)
    T64("adam_amsgrad_wd", "Adam", dict(lr=1e-2, betas=[0.5, 0.9], amsgrad=True, weight_decay=0.1),
        cross=True)
    T64("adam_tiny_grads", "Adam", dict(lr=1e-2), tiny=True, cross=True)
    T64("adamw_defaults", "AdamW", dict(lr=1e-2), cross=True)
    T64("adamw_amsgrad_maximize", "AdamW", dict(lr=1e-2, amsgrad=True, maximize=True,
                                                weight_decay=0.1), cross=True)
    T64("adamax_wd", "Adamax", dict(lr=1e-2, betas=[0.8, 0.99], weight_decay=0.1))
    T64("nadam_wd", "NAdam", dict(lr=1e-2, weight_decay=0.1, betas=[0.8, 0.99]),
        torch_extra=dict(foreach=True), cross=True,
        note="1.13's foreach path (the published formula); mu_product kept in float64")
    T64("radam_defaults", "RAdam", dict(lr=1e-2), cross=True,
        note="10 steps: both sides of rho_t = 5")
    T64("radam_wd", "RAdam", dict(lr=1e-2, weight_decay=0.1, betas=[0.9, 0.99]), cross=True)
    T64("rmsprop_centered_momentum_wd", "RMSprop",
        dict(lr=1e-3, centered=True, momentum=0.9, weight_decay=0.1))
    T64("rmsprop_tiny_grads", "RMSprop", dict(lr=1e-3), tiny=True)
    T64("adagrad_lr_decay_init", "Adagrad",
        dict(lr=0.1, lr_decay=0.5, initial_accumulator_value=0.5, weight_decay=0.1))
    T64("adadelta_wd", "Adadelta", dict(lr=0.5, rho=0.95, weight_decay=0.1, eps=1e-5))
    # every Adam flavour (lua/moonopt/optim/adam.lua), rescale_grad and clip_gradient on some
    rc = dict(rescale_grad=0.5, clip_gradient=0.6)
    R64("adam_pytorch_rescale_clip", "Adam", dict(lr=1e-2, weight_decay=0.05, **rc))
    R64("adamw_pytorch_rescale_clip", "AdamW", dict(lr=1e-2, weight_decay=0.1, **rc))
    R64("adam_mxnet", "Adam", dict(flavor="mxnet", lr=1e-2, weight_decay=0.05, **rc))
    R64("adamw_mxnet", "AdamW", dict(flavor="mxnet", lr=1e-2, weight_decay=0.1, **rc))
    R64("adamw_bert", "AdamW", dict(flavor="bert", lr=1e-2))
    R64("adam_keras", "Adam", dict(flavor="keras", lr=1e-2))
    R64("adamw_keras", "AdamW", dict(flavor="keras", lr=5e-2))
    R64("adam_torch7_lr_decay", "Adam", dict(flavor="torch7", lr=1e-2, lr_decay=0.1,
                                             weight_decay=0.05))
    R64("adam_mxnet_maximize_amsgrad", "Adam",
        dict(flavor="mxnet", lr=1e-2, maximize=True, amsgrad=True, betas=[0.5, 0.9]))
    R64("adam_nobc_raw", "Adam", dict(lr=1e-2, bias_correction=False, eps_mode="raw"))
    R64("nadam_decoupled_wd", "NAdam", dict(lr=1e-2, weight_decay=0.1,
                                            decoupled_weight_decay=True),
        note="PyTorch >= 2.0 semantics (1.13 lacks the option)")
    R64("radam_decoupled_wd", "RAdam", dict(lr=1e-2, weight_decay=0.1,
                                            decoupled_weight_decay=True))
    R64("lion_wd", "Lion", dict(lr=1e-3, weight_decay=1.0, betas=[0.95, 0.98]))
    R64("lamb_wd", "LAMB", dict(lr=1e-2, weight_decay=0.1, betas=[0.8, 0.99]))
    R64("sfadamw_warmup_wd", "ScheduleFreeAdamW", dict(lr=1e-2, warmup_steps=3, weight_decay=0.5))
    # LBFGS: the float32 cases' problem, drawn in float64
    for name, opts, steps, xscale in [
        ("lbfgs_plain", dict(max_iter=3), 5, 2.0),
        ("lbfgs_strong_wolfe", dict(max_iter=3, line_search_fn="strong_wolfe"), 4, 10.0),
    ]:
        rng = rng_for("f64_" + name)
        a = [rng.uniform(1.0, 10.0, sh) for sh in LBFGS_SHAPES]
        b = [rng.standard_normal(sh) for sh in LBFGS_SHAPES]
        x0 = [rng.standard_normal(sh) * xscale for sh in LBFGS_SHAPES]
        expected, evals = run_lbfgs(opts, a, b, x0, steps, torch.float64, np.float64)
        low, _ = run_lbfgs(opts, a, b, x0, steps, torch.float32, np.float64)
        gap = max_violation(expected, low, LBFGS_RTOL64, FLOOR)
        if gap < CONTRAST_FACTOR:
            sys.exit(f"{name}: a float32 run differs only {gap:.1f}x the float64 tolerance")
        if VERBOSE:
            print(f"  {name:32s} torch-1.13 float32 gap {gap:.3g}x")
        CASES64.append(dict(
            name=name, cls="LBFGS", source="torch-1.13", opts=opts, params=x0,
            closure=dict(a=a, b=b), steps=steps, expected=expected, rtol=LBFGS_RTOL64,
            note=f"f = sum 0.5*a*x^2 + b*x in float64; {evals} closure calls over {steps} steps"))


def write_f64():
    with open(OUT64, "w") as out:
        out.write("-- tests/golden/optim_golden_f64.lua - GENERATED by tests/golden/make_optim_golden.py;\n"
                  "-- do not edit. See tests/golden/README.md. The layout of optim_golden.lua, in\n"
                  "-- float64: params, grads (and LBFGS's a, b) are doubles written with %.17g, and\n"
                  "-- expected[step][param] the float64 reference after every step.\n")
        out.write("return {\n")
        out.write("meta = {\n")
        out.write('  generator = "tests/golden/make_optim_golden.py",\n')
        out.write(f'  torch = "{torch.__version__}", numpy = "{np.__version__}",\n')
        out.write(f"  rtol = {lua_num(RTOL64)}, floor = {lua_num(FLOOR)},"
                  f" lbfgs_rtol = {lua_num(LBFGS_RTOL64)},\n")
        out.write('  tolerance = "|got - want| <= rtol * max(|want|, floor)",\n')
        out.write("},\n")
        out.write("cases = {\n")
        for c in CASES64:
            write_case(out, c, lua_f64)
        out.write("},\n}\n")
    print(f"wrote {OUT64}: {len(CASES64)} cases, {os.path.getsize(OUT64) / 1e6:.2f} MB")



# ----------------------------------------------------------------------------- Lua writer

def lua_num(x):
    """Hyperparameters: the shortest decimal that round-trips the double."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    r = repr(float(x))
    return r


def lua_f32(arr):
    return "{" + ", ".join("%.9g" % v for v in np.asarray(arr, np.float32).ravel()) + "}"


def lua_f64(arr):
    """%.17g round-trips a double."""
    return "{" + ", ".join("%.17g" % v for v in np.asarray(arr, np.float64).ravel()) + "}"


def lua_value(v):
    if v is None:
        return "nil"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, (bool, int, float)):
        return lua_num(v)
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {lua_value(v[k])}" for k in sorted(v)) + "}"
    raise TypeError(type(v))


def write_case(out, c, arr=lua_f32):
    w = out.write
    w("  {\n")
    w(f'    name = "{c["name"]}", class = "{c["cls"]}", source = "{c["source"]}",\n')
    if c.get("note"):
        w(f'    note = {lua_value(c["note"])},\n')
    w(f"    opts = {lua_value(c['opts'])},\n")
    if c.get("groups"):
        w(f"    groups = {lua_value(c['groups'])},\n")
    if c.get("sets"):
        parts = []
        for t in sorted(c["sets"]):
            ch = ", ".join(f"{{group = {g}, key = \"{k}\", value = {lua_value(v)}}}"
                           for g, k, v in c["sets"][t])
            parts.append(f"[{t}] = {{{ch}}}")
        w("    set = {" + ", ".join(parts) + "},\n")
    if c.get("rtol"):
        w(f"    rtol = {lua_num(c['rtol'])},\n")
    w("    params = {\n")
    for p in c["params"]:
        w(f"      {{shape = {lua_value(list(p.shape))}, data = {arr(p)}}},\n")
    w("    },\n")
    if "closure" in c:
        w(f"    steps = {c['steps']},\n")
        w("    closure = {\n")
        w("      a = {" + ", ".join(arr(x) for x in c["closure"]["a"]) + "},\n")
        w("      b = {" + ", ".join(arr(x) for x in c["closure"]["b"]) + "},\n")
        w("    },\n")
    else:
        w("    grads = {\n")
        for step in c["grads"]:
            w("      {" + ", ".join("false" if g is None else arr(g) for g in step) + "},\n")
        w("    },\n")
    w("    expected = {\n")
    for step in c["expected"]:
        w("      {" + ", ".join(arr(x) for x in step) + "},\n")
    w("    },\n")
    w("  },\n")


def main():
    """Both files; --f32 or --f64 writes only that one."""
    if "--f64" not in sys.argv:
        write_f32()
    if "--f32" not in sys.argv:
        f64_cases()
        write_f64()


def write_f32():
    torch_cases()
    ref_cases()
    lbfgs_cases()
    with open(OUT, "w") as out:
        out.write("-- tests/golden/optim_golden.lua - GENERATED by tests/golden/make_optim_golden.py;\n"
                  "-- do not edit. See tests/golden/README.md. Each case: class, opts (PyTorch names),\n"
                  "-- optional groups (params = 1-based indices), optional set[step] = hyperparameter\n"
                  "-- changes applied before that step, params (shape + row-major float32 data),\n"
                  "-- grads[step][param] (false: no .grad at that step) or an LBFGS closure, and\n"
                  "-- expected[step][param] after every step.\n")
        out.write("return {\n")
        out.write("meta = {\n")
        out.write('  generator = "tests/golden/make_optim_golden.py",\n')
        out.write(f'  torch = "{torch.__version__}", numpy = "{np.__version__}",\n')
        out.write(f"  rtol = {lua_num(RTOL)}, floor = {lua_num(FLOOR)},"
                  f" lbfgs_rtol = {lua_num(LBFGS_RTOL)},\n")
        out.write('  tolerance = "|got - want| <= rtol * max(|want|, floor)",\n')
        out.write("},\n")
        out.write("cases = {\n")
        for c in CASES:
            write_case(out, c)
        out.write("},\n}\n")
    size = os.path.getsize(OUT)
    print(f"wrote {OUT}: {len(CASES)} cases, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
