#!/usr/bin/python3
"""make_flavor_golden.py - write tests/golden/flavor_golden.lua, the Adam/AdamW flavour goldens.

Run from the repository root with Debian's python3 (python3-numpy, python3-torch 1.13):

    /usr/bin/python3 tests/golden/make_flavor_golden.py [-v]

Each `flavor` of mo.optim.Adam / AdamW claims to be one framework's optimizer. Here every
flavour's update is written again as a plain float32 NumPy loop that mirrors that framework's
own code in its order of operations: which constants are computed in double (Python, Lua) and
which in float32 (the C++ kernels, the TF/Keras graphs), the grouping of each product and sum,
the place of rescaling, clipping and weight decay. Each mirror names the file and function it
follows. The pytorch flavour is checked against torch.optim (1.13) itself.

Every value a framework holds in float32 is a np.float32 here, and every operation on two of
them rounds to float32 as the framework's kernel does (f32() converts a double constant the way
the framework passes it: a Python float given to a float32 kernel parameter or tensor).

tests/lua/test_optim_flavors.lua replays each case through the public Lua API and compares every
element after every step with rtol * max(|want|, floor). The differences that remain are
rounding, listed per flavour in docs/optimizers.md (e.g. MXNet's kernels compute 1 - beta in
float32, moonopt in double: such a case carries a wider rtol and the reason); before writing, each case's "contrast" (the neighbouring flavour or
switch) must move the trajectory by more than CONTRAST x the tolerance, so a wrong flavour fails.
"""
import math
import os
import sys
import zlib

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flavor_golden.lua")
RTOL = 2e-6        # |got - want| <= rtol * max(|want|, FLOOR); a case may widen rtol (`why`)
FLOOR = 0.1
CONTRAST = 20.0
STEPS = 6

F = np.float32


def f32(x):
    """A double constant as the framework hands it to float32 code."""
    return F(x)


def clip_mx(x, bound):
    """mshadow_op::clip::Map (src/operator/mshadow_op.h): x > b ? b : (x < -b ? -b : x)."""
    if x > bound:
        return bound
    if x < -bound:
        return -bound
    return x


# ----------------------------------------------------------------------------------------------
# MXNet
# ----------------------------------------------------------------------------------------------

def mxnet_adam(ws, steps, hp, clip_sum):
    """MXNet Adam, fused path (the default use_fused_step=True).

    Python side, per parameter and step: python/mxnet/optimizer/adam.py Adam.fused_step (2.x) and
    python/mxnet/optimizer/optimizer.py Adam.update (1.x), identical here:
        t = update count; coef1 = 1 - beta1**t; coef2 = 1 - beta2**t
        lr *= math.sqrt(coef2)/coef1                     (in double)
        clip_gradient passed only when truthy (else the kernel's -1: off)
    Kernel: src/operator/optimizer_op-inl.h AdamUpdateKernel::Map, every parameter a float:
        2.x:  grad_rescaled = grad*rescale_grad; if clip >= 0: clip; grad_rescaled += weight*wd
        <= 1.9.1 (clip_sum): grad_rescaled = grad*rescale_grad + weight*wd; if clip >= 0: clip
        mean = beta1*mean + (1.f - beta1)*grad_rescaled
        var  = beta2*var + (1.f - beta2)*grad_rescaled*grad_rescaled
        out  = weight - lr*mean/(sqrt(var) + epsilon)
    """
    b1, b2 = hp["betas"]
    B1, B2, EPS, WD = f32(b1), f32(b2), f32(hp["eps"]), f32(hp["weight_decay"])
    clip = hp.get("clip_gradient")
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    out = []
    rs = hp.get("rescale_grad", 1.0)
    for t, step in enumerate(steps, 1):
        rs = step.get("rescale_grad", rs)   # a value set in param_groups stays
        lr = hp["lr"]
        coef1 = 1.0 - b1 ** t
        coef2 = 1.0 - b2 ** t
        lr *= math.sqrt(coef2) / coef1
        LR, RS = f32(lr), f32(rs)
        for w, g, m, v in zip(ws, step["grads"], ms, vs):
            for i in range(w.size):
                if clip_sum:
                    gr = g[i] * RS + w[i] * WD
                    if clip:
                        gr = clip_mx(gr, f32(clip))
                else:
                    gr = g[i] * RS
                    if clip:
                        gr = clip_mx(gr, f32(clip))
                    gr = gr + w[i] * WD
                m[i] = B1 * m[i] + (F(1) - B1) * gr
                v[i] = B2 * v[i] + (F(1) - B2) * gr * gr
                w[i] = w[i] - LR * m[i] / (np.sqrt(v[i]) + EPS)
        out.append([w.copy() for w in ws])
    return out


def mxnet_adamw(ws, steps, hp):
    """MXNet AdamW: python/mxnet/optimizer/adamW.py AdamW.fused_step with
    MXNET_OPTIMIZER_AGGREGATION_SIZE=1 (the per-tensor kernel), and its defaults eps 1e-6,
    wd 0 (Optimizer's), correct_bias True. Python, per step (update count first, always):
        lrs = [lr * math.sqrt(coef2) / coef1]            (correct_bias; in double)
        adamw_update(w, g, mean, var, rescale_grad=<float32 tensor>, lr=1, wd=wd, eta=lr_t,
                     clip_gradient=clip if truthy)
    Kernel: src/operator/contrib/adamw-inl.h, MPUpdate -> PrepareInputBlobs returns false (the
    whole update skipped, weight decay included) when the float32 rescale_grad is 0 or not
    finite; else AdamWUpdate::Forward (mshadow expressions, all float):
        grad = rescale_grad*grad; if clip >= 0: grad = clip(grad)
        mean = beta1*mean + (1.f - beta1)*grad
        var  = beta2*var + (1.f - beta2)*square(grad)
        out  = weight - eta*(lr*mean/(sqrt(var) + epsilon) + wd*weight)
    (The aggregated multi_adamw_update kernel, MultiMPAdamWKernel, writes the moments as
    beta1*(mean - grad) + grad: the same values up to rounding.)
    """
    b1, b2 = hp["betas"]
    B1, B2, EPS, WD = f32(b1), f32(b2), f32(hp["eps"]), f32(hp["weight_decay"])
    clip = hp.get("clip_gradient")
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    out = []
    rs = hp.get("rescale_grad", 1.0)
    for t, step in enumerate(steps, 1):
        rs = step.get("rescale_grad", rs)   # a value set in param_groups stays
        lr = hp["lr"]
        if hp.get("bias_correction", True):
            coef1 = 1.0 - b1 ** t
            coef2 = 1.0 - b2 ** t
            lr = lr * math.sqrt(coef2) / coef1
        ETA, LR1 = f32(lr), F(1)
        with np.errstate(over="ignore"):
            RS = f32(rs)
        if not np.isfinite(RS) or RS == 0:
            out.append([w.copy() for w in ws])
            continue
        for w, g, m, v in zip(ws, step["grads"], ms, vs):
            for i in range(w.size):
                gr = RS * g[i]
                if clip:
                    gr = clip_mx(gr, f32(clip))
                m[i] = B1 * m[i] + (F(1) - B1) * gr
                v[i] = B2 * v[i] + (F(1) - B2) * (gr * gr)
                w[i] = w[i] - ETA * (LR1 * m[i] / (np.sqrt(v[i]) + EPS) + WD * w[i])
        out.append([w.copy() for w in ws])
    return out


# ----------------------------------------------------------------------------------------------
# Keras 3 (and tf.keras >= 2.11, the same update)
# ----------------------------------------------------------------------------------------------

def keras_adam(ws, steps, hp):
    """Keras 3: keras/src/optimizers/base_optimizer.py BaseOptimizer.apply, then
    keras/src/optimizers/adam.py Adam.update_step (AdamW is Adam with weight_decay 0.004).
        grads = g / loss_scale_factor                    (moonopt: rescale_grad = 1/factor)
        _clip_gradients: clipvalue -> ops.clip(g, -clipvalue, clipvalue)   (moonopt: clip_gradient)
        _apply_weight_decay: variable.assign(variable - variable*wd*lr)    (every optimizer)
        update_step (float32 throughout):
            local_step = iterations + 1; beta_1_power = beta_1 ** local_step (float32 pow)
            alpha = lr*sqrt(1 - beta_2_power)/(1 - beta_1_power)
            m += (g - m)*(1 - beta_1); v += (square(g) - v)*(1 - beta_2)
            amsgrad: v_hat = maximum(v_hat, v); v = v_hat
            variable -= (m*alpha)/(sqrt(v) + epsilon)
    """
    b1, b2 = hp["betas"]
    B1, B2, EPS = f32(b1), f32(b2), f32(hp["eps"])
    OMB1, OMB2 = f32(1 - b1), f32(1 - b2)
    LR, WD = f32(hp["lr"]), f32(hp["weight_decay"])
    scale, clipvalue = hp.get("loss_scale_factor"), hp.get("clip_gradient")
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    vh = [np.zeros_like(w) for w in ws]
    out = []
    for t, step in enumerate(steps, 1):
        grads = [g.copy() for g in step["grads"]]
        if scale is not None:
            grads = [g / f32(scale) for g in grads]
        if clipvalue:
            grads = [np.clip(g, -f32(clipvalue), f32(clipvalue)) for g in grads]
        if hp["weight_decay"]:
            for w in ws:
                for i in range(w.size):
                    w[i] = w[i] - w[i] * WD * LR
        step_f = F(t)
        b1p, b2p = B1 ** step_f, B2 ** step_f
        alpha = LR * np.sqrt(F(1) - b2p) / (F(1) - b1p)
        for w, g, m, v, vhat in zip(ws, grads, ms, vs, vh):
            for i in range(w.size):
                m[i] = m[i] + (g[i] - m[i]) * OMB1
                v[i] = v[i] + (g[i] * g[i] - v[i]) * OMB2
                vv = v[i]
                if hp.get("amsgrad"):
                    vhat[i] = max(vhat[i], v[i])
                    vv = vhat[i]
                w[i] = w[i] - (m[i] * alpha) / (np.sqrt(vv) + EPS)
        out.append([w.copy() for w in ws])
    return out


# ----------------------------------------------------------------------------------------------
# BERT
# ----------------------------------------------------------------------------------------------

def bert_adamw(ws, steps, hp, names):
    """google-research/bert optimization.py AdamWeightDecayOptimizer.apply_gradients (float32
    graph; Python floats become float32 tensors):
        next_m = beta_1*m + (1 - beta_1)*grad
        next_v = beta_2*v + (1 - beta_2)*square(grad)
        update = next_m/(sqrt(next_v) + epsilon)
        if _do_use_weight_decay(name): update += weight_decay_rate*param
            (re.search of each exclude_from_weight_decay pattern in the name)
        next_param = param - learning_rate*update
    create_optimizer's tf.clip_by_global_norm and its learning-rate schedule are outside the
    optimizer; these cases feed the optimizer its (already clipped) gradients.
    """
    import re
    b1, b2 = hp["betas"]
    B1, B2, OMB1, OMB2 = f32(b1), f32(b2), f32(1 - b1), f32(1 - b2)
    EPS, LR, WD = f32(hp["eps"]), f32(hp["lr"]), f32(hp["weight_decay"])
    excl = hp["exclude"]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    out = []
    for step in steps:
        for w, g, m, v, name in zip(ws, step["grads"], ms, vs, names):
            decay = hp["weight_decay"] and not any(re.search(r, name) for r in excl)
            for i in range(w.size):
                m[i] = B1 * m[i] + OMB1 * g[i]
                v[i] = B2 * v[i] + OMB2 * (g[i] * g[i])
                update = m[i] / (np.sqrt(v[i]) + EPS)
                if decay:
                    update = update + WD * w[i]
                w[i] = w[i] - LR * update
        out.append([w.copy() for w in ws])
    return out


# ----------------------------------------------------------------------------------------------
# torch7
# ----------------------------------------------------------------------------------------------

def torch7_adam(ws, steps, hp):
    """torch/optim adam.lua, optim.adam (the final version, with learningRateDecay and
    weightDecay), on FloatTensors (Lua numbers are doubles; TH casts a scalar argument to float):
        dfdx:add(wd, x)                                   (L2 into the gradient)
        clr = lr/(1 + state.t*lrd); state.t = state.t + 1 (t counted before this step)
        m:mul(beta1):add(1-beta1, dfdx); v:mul(beta2):addcmul(1-beta2, dfdx, dfdx)
        denom = sqrt(v) + epsilon
        stepSize = clr*math.sqrt(1 - beta2^t)/(1 - beta1^t)
        x:addcdiv(-stepSize, m, denom)                    (TH: x += value*m/denom)
    """
    b1, b2 = hp["betas"]
    B1, B2, OMB1, OMB2 = f32(b1), f32(b2), f32(1 - b1), f32(1 - b2)
    EPS, WD = f32(hp["eps"]), f32(hp["weight_decay"])
    lr, lrd = hp["lr"], hp["lr_decay"]
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    out = []
    for t0, step in enumerate(steps):
        clr = lr / (1 + t0 * lrd)
        t = t0 + 1
        step_size = clr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        NEG = f32(-step_size)
        for w, g, m, v in zip(ws, step["grads"], ms, vs):
            for i in range(w.size):
                gi = g[i]
                if hp["weight_decay"]:
                    gi = gi + WD * w[i]
                m[i] = m[i] * B1 + OMB1 * gi
                v[i] = v[i] * B2 + OMB2 * gi * gi
                d = np.sqrt(v[i]) + EPS
                w[i] = w[i] + NEG * m[i] / d
        out.append([w.copy() for w in ws])
    return out


# ----------------------------------------------------------------------------------------------
# PyTorch 1.13 itself
# ----------------------------------------------------------------------------------------------

def pytorch(cls, ws, steps, hp):
    """torch.optim.Adam / AdamW (torch/optim/adam.py _single_tensor_adam, adamw.py
    _single_tensor_adamw, PyTorch 1.13), float32, foreach=False."""
    ps = [torch.tensor(w, dtype=torch.float32, requires_grad=True) for w in ws]
    kw = dict(lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"],
              weight_decay=hp["weight_decay"], amsgrad=hp.get("amsgrad", False),
              maximize=hp.get("maximize", False), foreach=False)
    opt = (torch.optim.AdamW if cls == "AdamW" else torch.optim.Adam)(ps, **kw)
    out = []
    for step in steps:
        for p, g in zip(ps, step["grads"]):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        out.append([p.detach().numpy().astype(np.float32).copy() for p in ps])
    return out


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------

def make_steps(rng, sizes, n, scale=0.05):
    """n steps of float32 gradients: mixed signs and magnitudes (a few over a 0.04 clip)."""
    steps = []
    for _ in range(n):
        grads = []
        for s in sizes:
            g = rng.standard_normal(s) * scale * rng.choice([0.1, 1.0, 3.0], size=s)
            grads.append(g.astype(np.float32))
        steps.append({"grads": grads})
    return steps


def make_params(rng, sizes):
    return [(rng.standard_normal(s) * 0.8).astype(np.float32) for s in sizes]


COMMON = dict(lr=1e-3, betas=[0.9, 0.999])


def run(mirror, cls, params, steps, hp, names):
    ws = [p.copy() for p in params]
    if mirror == "pytorch":
        return pytorch(cls, ws, steps, hp)
    if mirror == "mxnet_adam":
        return mxnet_adam(ws, steps, hp, clip_sum=False)
    if mirror == "mxnet1_adam":
        return mxnet_adam(ws, steps, hp, clip_sum=True)
    if mirror == "mxnet_adamw":
        return mxnet_adamw(ws, steps, hp)
    if mirror == "keras":
        return keras_adam(ws, steps, hp)
    if mirror == "bert":
        return bert_adamw(ws, steps, hp, names)
    if mirror == "torch7":
        return torch7_adam(ws, steps, hp)
    raise ValueError(mirror)


CASES = []


# The two float32 constant derivations moonopt does not reproduce (it derives every per-step
# constant in double and rounds once), with the relative tolerance each one needs here.
MX_ONE_MINUS_BETA = (2e-5, "MXNet's kernel computes 1.f - beta in float32 (1 - 0.999f = "
                     "0.00099998713; moonopt rounds 1 - 0.999 = 0.001): 1.3e-5 relative in v's "
                     "increment")
KERAS_POW = (2e-5, "Keras computes beta**t and 1 - beta**t in float32 (1 - 0.999f = "
             "0.00099998713 at t = 1): alpha up to 6.4e-6 relative smaller in the first steps")


def case(name, cls, mirror, follows, opts, hp, contrast=None, sets=None, names=None,
         sizes=(5, 3), seed=None, grad_scale=0.05, rounding=None):
    """opts: the mo.optim options (Lua side); hp: the framework's hyperparameters (mirror
    side); contrast: a mirror / hp change that must move the trajectory well past tolerance;
    sets: {step: {option: value}} written into param_groups[1] before that step."""
    rtol, why = rounding or (RTOL, None)
    CASES.append(dict(name=name, cls=cls, mirror=mirror, follows=follows, opts=opts,
                      rtol=rtol, why=why,
                      hp={**COMMON, **hp}, contrast=contrast, sets=sets or {}, names=names,
                      sizes=sizes, seed=seed if seed is not None else zlib.crc32(name.encode()),
                      grad_scale=grad_scale))


RC = dict(rescale_grad=0.5, clip_gradient=0.04)

case("adam_pytorch", "Adam", "pytorch", "torch/optim/adam.py _single_tensor_adam (1.13)",
     dict(lr=1e-2, weight_decay=0.05, amsgrad=True),
     dict(lr=1e-2, eps=1e-8, weight_decay=0.05, amsgrad=True),
     contrast=dict(mirror="keras", hp=dict(eps=1e-8)))
case("adamw_pytorch", "AdamW", "pytorch", "torch/optim/adamw.py _single_tensor_adamw (1.13)",
     dict(lr=1e-2, weight_decay=0.1, maximize=True),
     dict(lr=1e-2, eps=1e-8, weight_decay=0.1, maximize=True),
     contrast=dict(hp=dict(maximize=False)))

case("adam_mxnet", "Adam", "mxnet_adam",
     "MXNet 2.x adam.py Adam.fused_step; optimizer_op-inl.h AdamUpdateKernel",
     dict(flavor="mxnet", lr=1e-2, weight_decay=0.5, **RC),
     dict(lr=1e-2, eps=1e-8, weight_decay=0.5, **RC),
     contrast=dict(mirror="mxnet1_adam"),
     rounding=MX_ONE_MINUS_BETA)
case("adam_mxnet1", "Adam", "mxnet1_adam",
     "MXNet 1.9.1 optimizer.py Adam.update; optimizer_op-inl.h AdamUpdateKernel",
     dict(flavor="mxnet1", lr=1e-2, weight_decay=0.5, **RC),
     dict(lr=1e-2, eps=1e-8, weight_decay=0.5, **RC),
     contrast=dict(mirror="mxnet_adam"),
     rounding=MX_ONE_MINUS_BETA)
case("adam_mxnet1_no_clip", "Adam", "mxnet1_adam",
     "MXNet 1.9.1 AdamUpdateKernel without clip_gradient: the same as 2.x",
     dict(flavor="mxnet1", lr=1e-2, weight_decay=0.05, rescale_grad=0.5),
     dict(lr=1e-2, eps=1e-8, weight_decay=0.05, rescale_grad=0.5),
     contrast=dict(hp=dict(eps=1e-4)),
     rounding=MX_ONE_MINUS_BETA)
case("adamw_mxnet", "AdamW", "mxnet_adamw",
     "MXNet 2.x adamW.py AdamW.fused_step; contrib/adamw-inl.h AdamWUpdate",
     dict(flavor="mxnet", lr=1e-2, weight_decay=0.1, **RC),
     dict(lr=1e-2, eps=1e-6, weight_decay=0.1, **RC),
     contrast=dict(mirror="keras", hp=dict(eps=1e-6, weight_decay=0.1, **RC)),
     rounding=MX_ONE_MINUS_BETA)
case("adamw_mxnet_defaults", "AdamW", "mxnet_adamw",
     "MXNet adamW.py AdamW defaults: eps 1e-6, wd 0", dict(flavor="mxnet"),
     dict(eps=1e-6, weight_decay=0.0), grad_scale=2e-6,
     contrast=dict(hp=dict(eps=1e-8)))
case("adamw_mxnet1_no_bc", "AdamW", "mxnet_adamw",
     "MXNet 1.x contrib adamw_update (same kernel), correct_bias=False",
     dict(flavor="mxnet1", lr=1e-2, weight_decay=0.1, bias_correction=False),
     dict(lr=1e-2, eps=1e-6, weight_decay=0.1, bias_correction=False),
     contrast=dict(hp=dict(bias_correction=True)),
     rounding=MX_ONE_MINUS_BETA)
SKIPS = {2: 0.0, 3: math.inf, 4: math.nan, 5: 1e-50, 6: -math.inf, 7: 0.25}
case("adamw_mxnet_skip", "AdamW", "mxnet_adamw",
     "contrib/adamw-inl.h PrepareInputBlobs: rescale_grad 0 / inf / nan / 1e-50 skips the update",
     dict(flavor="mxnet", lr=1e-2, weight_decay=0.1, rescale_grad=0.5),
     dict(lr=1e-2, eps=1e-6, weight_decay=0.1, rescale_grad=0.5),
     sets={t: {"rescale_grad": r} for t, r in SKIPS.items()},
     contrast=dict(no_skip=True),
     rounding=MX_ONE_MINUS_BETA)

case("adam_keras", "Adam", "keras",
     "Keras 3 adam.py Adam.update_step; base_optimizer.py apply, _apply_weight_decay",
     dict(flavor="keras", lr=1e-2, weight_decay=0.05, amsgrad=True, rescale_grad=0.25,
          clip_gradient=0.03),
     dict(lr=1e-2, eps=1e-7, weight_decay=0.05, amsgrad=True, loss_scale_factor=4.0,
          clip_gradient=0.03),
     contrast=dict(mirror="mxnet_adam", hp=dict(eps=1e-7, weight_decay=0.05, rescale_grad=0.25,
                                                clip_gradient=0.03)),
     rounding=KERAS_POW)
case("adamw_keras_defaults", "AdamW", "keras", "Keras 3 adamw.py AdamW (weight_decay 0.004)",
     dict(flavor="keras", lr=5e-2), dict(lr=5e-2, eps=1e-7, weight_decay=0.004),
     contrast=dict(hp=dict(weight_decay=0.0)),
     rounding=KERAS_POW)

case("adamw_bert", "AdamW", "bert",
     "google-research/bert optimization.py AdamWeightDecayOptimizer.apply_gradients",
     dict(flavor="bert", lr=1e-2),
     dict(lr=1e-2, eps=1e-6, weight_decay=0.01, exclude=["LayerNorm", "layer_norm", "bias"]),
     names=["encoder.weight", "encoder.bias", "encoder.LayerNorm.weight"], sizes=(5, 3, 2),
     grad_scale=1e-3, contrast=dict(hp=dict(exclude=[])))

case("adam_torch7", "Adam", "torch7", "torch/optim adam.lua optim.adam",
     dict(flavor="torch7", lr=1e-2, weight_decay=0.05, lr_decay=0.1),
     dict(lr=1e-2, eps=1e-8, weight_decay=0.05, lr_decay=0.1),
     contrast=dict(hp=dict(lr_decay=0.0)))


# ----------------------------------------------------------------------------------------------

def max_excess(a, b, rtol):
    """max over steps and elements of |a - b| / (rtol * max(|b|, FLOOR))."""
    worst = 0.0
    for sa, sb in zip(a, b):
        for x, y in zip(sa, sb):
            y64 = y.astype(np.float64)
            d = np.abs(x.astype(np.float64) - y64) / (rtol * np.maximum(np.abs(y64), FLOOR))
            worst = max(worst, float(np.nanmax(d)))
    return worst


def build(c):
    rng = np.random.default_rng(c["seed"])
    params = make_params(rng, c["sizes"])
    steps = make_steps(rng, c["sizes"], STEPS + len(c["sets"]), c["grad_scale"])
    for t, s in c["sets"].items():
        steps[t - 1].update(s)
    want = run(c["mirror"], c["cls"], params, steps, c["hp"], c["names"])
    con = c["contrast"]
    if con.get("no_skip"):
        plain = [{"grads": s["grads"]} for s in steps]
        other = run(c["mirror"], c["cls"], params, plain, c["hp"], c["names"])
    else:
        other = run(con.get("mirror", c["mirror"]), c["cls"], params, steps,
                    {**c["hp"], **con.get("hp", {})}, c["names"])
    sep = max_excess(other, want, c["rtol"])
    assert sep > CONTRAST, f"{c['name']}: contrast only {sep:.3g} x tolerance"
    for s in want:
        for x in s:
            assert x.dtype == np.float32 and np.all(np.isfinite(x)), c["name"]
    return params, steps, want, sep


def lua_num(x):
    x = float(x)
    if math.isnan(x):
        return "0/0"
    if math.isinf(x):
        return "1/0" if x > 0 else "-1/0"
    return repr(x)


def f32s(a):
    return "{" + ", ".join("%.9g" % float(v) for v in a) + "}"


def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return lua_num(v)
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua_value(x) for x in v) + "}"
    raise TypeError(v)


def lua_table(d):
    return "{" + ", ".join(f"{k} = {lua_value(v)}" for k, v in sorted(d.items())) + "}"


def main():
    verbose = "-v" in sys.argv
    out = ["-- Generated by tests/golden/make_flavor_golden.py; do not edit.",
           "-- Each case: a flavour of mo.optim.Adam/AdamW against a float32 mirror of the",
           "-- framework code named in `follows`; want[t][j] = param j after step t.",
           "return {",
           f"  meta = {{rtol = {RTOL!r}, floor = {FLOOR!r}, steps_per_case = {STEPS}}},",
           "  cases = {"]
    for c in CASES:
        params, steps, want, sep = build(c)
        if verbose:
            print(f"{c['name']:24s} contrast {sep:10.1f} x tol   ({c['follows']})")
        out.append("    {")
        out.append(f'      name = "{c["name"]}", class = "{c["cls"]}",')
        out.append(f'      follows = "{c["follows"]}",')
        if c["why"]:
            out.append(f'      rtol = {c["rtol"]!r}, why = "{c["why"]}",')
        out.append(f"      opts = {lua_table(c['opts'])},")
        if c["names"]:
            out.append(f"      names = {lua_value(c['names'])},")
        out.append("      params = {" + ", ".join(f32s(p) for p in params) + "},")
        out.append("      steps = {")
        for s in steps:
            extra = {k: v for k, v in s.items() if k != "grads"}
            sets = f", set = {lua_table(extra)}" if extra else ""
            out.append("        {grads = {" + ", ".join(f32s(g) for g in s["grads"]) + "}" +
                       sets + "},")
        out.append("      },")
        out.append("      want = {")
        for s in want:
            out.append("        {" + ", ".join(f32s(w) for w in s) + "},")
        out.append("      },")
        out.append("    },")
    out += ["  },", "}", ""]
    with open(OUT, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {OUT}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
