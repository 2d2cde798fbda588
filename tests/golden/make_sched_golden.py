#!/usr/bin/python3
"""make_sched_golden.py - write tests/golden/sched_golden.lua, the lr-schedule golden vectors.

Run from anywhere with Debian's python3 (torch 1.13):

    /usr/bin/python3 tests/golden/make_sched_golden.py

Every case steps a PyTorch 1.13 scheduler (torch.optim.lr_scheduler) on an SGD optimizer
with two param groups of different learning rates, recording get_last_lr() after
construction (step 0) and after each step; ReduceLROnPlateau is fed a fixed metric sequence
that is written with the case. The Lua test (tests/lua/test_sched.lua) builds the moonopt
schedule named in the case with the options written in the case and compares every step.

Two cases have no PyTorch class: WarmupCosine and WarmupLinear are transformers'
get_cosine_schedule_with_warmup (num_cycles = 0.5) and get_linear_schedule_with_warmup,
whose published lambdas are run here through torch's LambdaLR; WarmupCosine with eta_min
and warmup_start (a moonopt extension) is written from its closed form in float64.

Values are Python floats (float64) printed with "%.17g", so they read back bit-exact.
"""
import math
import os
import warnings

import torch
from torch.optim import lr_scheduler as S

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sched_golden.lua")
LRS = [0.1, 0.025]          # the two param groups' initial lrs

warnings.filterwarnings("ignore")


def optimizer():
    p1 = torch.nn.Parameter(torch.zeros(1))
    p2 = torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [p1], "lr": LRS[0]}, {"params": [p2], "lr": LRS[1]}],
                           lr=LRS[0], momentum=0.9)


# lambdas shared with the Lua test, by name (tests/lua/test_sched.lua has the same table)
LAMBDAS = {
    "exp97": lambda t: 0.97 ** t,
    "inv": lambda t: 1.0 / (1.0 + 0.05 * t),
    "stairs": lambda t: 0.5 ** (t // 10),
}


def warmup_cosine(warmup, total):
    # transformers.get_cosine_schedule_with_warmup, num_cycles = 0.5
    def f(t):
        if t < warmup:
            return float(t) / float(max(1, warmup))
        progress = float(t - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(0.5) * 2.0 * progress)))
    return f


def warmup_linear(warmup, total):
    # transformers.get_linear_schedule_with_warmup
    def f(t):
        if t < warmup:
            return float(t) / float(max(1, warmup))
        return max(0.0, float(total - t) / float(max(1, total - warmup)))
    return f


def run(make, steps, metrics=None):
    opt = optimizer()
    sched = make(opt)
    lrs = [list(sched.get_last_lr()) if hasattr(sched, "_last_lr") else [g["lr"] for g in opt.param_groups]]
    for t in range(steps):
        opt.step()
        if metrics is not None:
            sched.step(metrics[t])
        else:
            sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        assert lrs[-1] == list(sched._last_lr), "the last lr disagrees with the groups"
    return lrs


def plateau_metrics(n):
    # a loss that improves, stalls, improves a little (below and above the threshold), stalls
    out, v = [], 1.0
    for t in range(n):
        if t < 15:
            v *= 0.9
        elif t < 40:
            v = v * (1 - 1e-5) if t % 2 else v * (1 + 0.5e-5)  # changes below rel 1e-4
        elif t < 50:
            v *= 0.97
        elif t % 7 == 0:
            v *= 0.999
        out.append(v if t % 5 else v * 1.02)          # a bump every 5 steps
    return out


CASES = []


def case(name, schedule, opts, steps, make, compare_until=None, metrics=None, members=None,
         milestones=None, note=None):
    c = {"name": name, "schedule": schedule, "opts": opts, "steps": steps,
         "lr": run(make, steps, metrics)}
    if compare_until is not None:
        c["compare_until"] = compare_until
    if metrics is not None:
        c["metrics"] = metrics
    if members is not None:
        c["members"] = members
    if milestones is not None:
        c["milestones"] = milestones
    if note:
        c["note"] = note
    CASES.append(c)


def build():
    case("ConstantLR", "Constant", {"factor": 0.5, "total_iters": 4}, 50,
         lambda o: S.ConstantLR(o, factor=0.5, total_iters=4))
    case("ConstantLR defaults", "Constant", {}, 50, lambda o: S.ConstantLR(o))
    case("StepLR", "Step", {"step_size": 7, "gamma": 0.5}, 60,
         lambda o: S.StepLR(o, step_size=7, gamma=0.5))
    case("MultiStepLR", "MultiStep", {"milestones": [10, 25, 40], "gamma": 0.3}, 60,
         lambda o: S.MultiStepLR(o, milestones=[10, 25, 40], gamma=0.3))
    case("ExponentialLR", "Exponential", {"gamma": 0.95}, 120,
         lambda o: S.ExponentialLR(o, gamma=0.95))
    case("LinearLR warmup", "Linear", {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 20}, 60,
         lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=20))
    case("LinearLR decay", "Linear", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 30}, 60,
         lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=30))
    case("PolynomialLR power 2", "Polynomial", {"total_iters": 40, "power": 2.0}, 60,
         lambda o: S.PolynomialLR(o, total_iters=40, power=2.0))
    case("PolynomialLR power 0.5", "Polynomial", {"total_iters": 50, "power": 0.5}, 60,
         lambda o: S.PolynomialLR(o, total_iters=50, power=0.5))
    case("CosineAnnealingLR", "CosineAnnealing", {"T_max": 50, "eta_min": 0.001}, 150,
         lambda o: S.CosineAnnealingLR(o, T_max=50, eta_min=0.001), compare_until=50,
         note="PyTorch steps a recursive form; moonopt uses the closed form; compared within T_max")
    case("CosineAnnealingWarmRestarts T_mult 1", "CosineAnnealingWarmRestarts",
         {"T_0": 10, "T_mult": 1, "eta_min": 0.0005}, 100,
         lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=1, eta_min=0.0005))
    case("CosineAnnealingWarmRestarts T_mult 2", "CosineAnnealingWarmRestarts",
         {"T_0": 5, "T_mult": 2}, 160,
         lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2))
    case("OneCycleLR cos", "OneCycle", {"max_lr": [0.5, 0.2], "total_steps": 100}, 100,
         lambda o: S.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=100, cycle_momentum=False))
    case("OneCycleLR linear", "OneCycle",
         {"max_lr": 0.3, "total_steps": 80, "pct_start": 0.25, "anneal_strategy": "linear"}, 80,
         lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=80, pct_start=0.25,
                                anneal_strategy="linear", cycle_momentum=False))
    case("OneCycleLR three_phase", "OneCycle",
         {"max_lr": [0.4, 0.1], "total_steps": 120, "three_phase": True, "div_factor": 10.0,
          "final_div_factor": 100.0}, 120,
         lambda o: S.OneCycleLR(o, max_lr=[0.4, 0.1], total_steps=120, three_phase=True, div_factor=10.0,
                                final_div_factor=100.0, cycle_momentum=False))
    case("OneCycleLR epochs", "OneCycle",
         {"max_lr": 0.2, "epochs": 5, "steps_per_epoch": 20, "pct_start": 0.4}, 100,
         lambda o: S.OneCycleLR(o, max_lr=0.2, epochs=5, steps_per_epoch=20, pct_start=0.4,
                                cycle_momentum=False))
    case("CyclicLR triangular", "Cyclic",
         {"base_lr": [0.01, 0.001], "max_lr": [0.1, 0.05], "step_size_up": 10, "step_size_down": 15}, 100,
         lambda o: S.CyclicLR(o, base_lr=[0.01, 0.001], max_lr=[0.1, 0.05], step_size_up=10,
                              step_size_down=15, cycle_momentum=False))
    case("CyclicLR triangular2", "Cyclic",
         {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 8, "mode": "triangular2"}, 100,
         lambda o: S.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=8, mode="triangular2",
                              cycle_momentum=False))
    case("CyclicLR exp_range", "Cyclic",
         {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 10, "mode": "exp_range", "gamma": 0.97}, 120,
         lambda o: S.CyclicLR(o, base_lr=0.001, max_lr=0.1, step_size_up=10, mode="exp_range", gamma=0.97,
                              cycle_momentum=False))
    m = plateau_metrics(120)
    case("ReduceLROnPlateau min rel", "ReduceLROnPlateau",
         {"factor": 0.5, "patience": 3, "cooldown": 2, "min_lr": [0.001, 0.002]}, 120,
         lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=3, cooldown=2, min_lr=[0.001, 0.002]),
         metrics=m)
    neg = [-x for x in m]
    case("ReduceLROnPlateau max abs", "ReduceLROnPlateau",
         {"mode": "max", "threshold_mode": "abs", "threshold": 0.002, "factor": 0.3, "patience": 2}, 120,
         lambda o: S.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.002, factor=0.3,
                                       patience=2), metrics=neg)
    case("ReduceLROnPlateau defaults", "ReduceLROnPlateau", {}, 120,
         lambda o: S.ReduceLROnPlateau(o), metrics=m)
    case("LambdaLR one lambda", "Lambda", {"lr_lambda": "exp97"}, 80,
         lambda o: S.LambdaLR(o, LAMBDAS["exp97"]))
    case("LambdaLR per group", "Lambda", {"lr_lambda": ["inv", "stairs"]}, 80,
         lambda o: S.LambdaLR(o, [LAMBDAS["inv"], LAMBDAS["stairs"]]))
    case("WarmupCosine (transformers)", "WarmupCosine", {"warmup": 10, "total": 100}, 100,
         lambda o: S.LambdaLR(o, warmup_cosine(10, 100)),
         note="transformers get_cosine_schedule_with_warmup through LambdaLR")
    case("WarmupLinear (transformers)", "WarmupLinear", {"warmup": 10, "total": 80}, 100,
         lambda o: S.LambdaLR(o, warmup_linear(10, 80)),
         note="transformers get_linear_schedule_with_warmup through LambdaLR")
    case("WarmupLinear no warmup", "WarmupLinear", {"warmup": 0, "total": 50}, 60,
         lambda o: S.LambdaLR(o, warmup_linear(0, 50)))

    # WarmupCosine with eta_min and warmup_start: float64 closed form (no PyTorch class)
    W, T, lo, start = 8, 60, 0.002, 0.001
    rows = []
    for t in range(71):
        row = []
        for base in LRS:
            if t < W:
                row.append(start + (base - start) * (t / W))
            elif t <= T:
                p = (t - W) / max(1, T - W)
                row.append(lo + (base - lo) * (0.5 * (1.0 + math.cos(math.pi * p))))
            else:
                row.append(lo)
        rows.append(row)
    CASES.append({"name": "WarmupCosine eta_min warmup_start (closed form)", "schedule": "WarmupCosine",
                  "opts": {"warmup": W, "total": T, "eta_min": lo, "warmup_start": start}, "steps": 70,
                  "lr": rows, "note": "float64 closed form written by this script"})

    # composition
    case("SequentialLR linear warmup + cosine", "Sequential", {}, 80,
         lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=10),
                                      S.CosineAnnealingLR(o, T_max=50)], milestones=[10]),
         members=[{"schedule": "Linear", "opts": {"start_factor": 0.1, "total_iters": 10}},
                  {"schedule": "CosineAnnealing", "opts": {"T_max": 50}}],
         milestones=[10], compare_until=60)
    case("SequentialLR constant + exponential + step", "Sequential", {}, 60,
         lambda o: S.SequentialLR(o, [S.ConstantLR(o, factor=0.5, total_iters=3),
                                      S.ExponentialLR(o, gamma=0.9),
                                      S.StepLR(o, step_size=5, gamma=0.5)], milestones=[5, 20]),
         members=[{"schedule": "Constant", "opts": {"factor": 0.5, "total_iters": 3}},
                  {"schedule": "Exponential", "opts": {"gamma": 0.9}},
                  {"schedule": "Step", "opts": {"step_size": 5, "gamma": 0.5}}],
         milestones=[5, 20])
    case("ChainedScheduler constant + exponential", "Chained", {}, 50,
         lambda o: S.ChainedScheduler([S.ConstantLR(o, factor=0.1, total_iters=2), S.ExponentialLR(o, gamma=0.9)]),
         members=[{"schedule": "Constant", "opts": {"factor": 0.1, "total_iters": 2}},
                  {"schedule": "Exponential", "opts": {"gamma": 0.9}}])
    case("ChainedScheduler step + linear + multistep", "Chained", {}, 60,
         lambda o: S.ChainedScheduler([S.StepLR(o, step_size=10, gamma=0.5),
                                       S.LinearLR(o, start_factor=0.2, total_iters=15),
                                       S.MultiStepLR(o, milestones=[30, 45], gamma=0.1)]),
         members=[{"schedule": "Step", "opts": {"step_size": 10, "gamma": 0.5}},
                  {"schedule": "Linear", "opts": {"start_factor": 0.2, "total_iters": 15}},
                  {"schedule": "MultiStep", "opts": {"milestones": [30, 45], "gamma": 0.1}}])
    case("ChainedScheduler cosine + exponential", "Chained", {}, 40,
         lambda o: S.ChainedScheduler([S.CosineAnnealingLR(o, T_max=40), S.ExponentialLR(o, gamma=0.98)]),
         members=[{"schedule": "CosineAnnealing", "opts": {"T_max": 40}},
                  {"schedule": "Exponential", "opts": {"gamma": 0.98}}])


def lua(v, indent=""):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        assert math.isfinite(v), v
        return "%.17g" % v
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        if all(not isinstance(x, (list, dict)) for x in v):
            return "{" + ", ".join(lua(x) for x in v) + "}"
        inner = indent + "  "
        return "{\n" + "".join(inner + lua(x, inner) + ",\n" for x in v) + indent + "}"
    if isinstance(v, dict):
        if not v:
            return "{}"
        inner = indent + "  "
        keys = sorted(v, key=lambda k: (k != "name", k))
        return "{\n" + "".join("%s%s = %s,\n" % (inner, k, lua(v[k], inner)) for k in keys) + indent + "}"
    raise TypeError(type(v))


def main():
    build()
    with open(OUT, "w") as f:
        f.write("-- tests/golden/sched_golden.lua - GENERATED by tests/golden/make_sched_golden.py\n")
        f.write("-- (torch %s); do not edit. lr[t + 1] = {group 1, group 2} after t steps.\n" % torch.__version__)
        f.write("return " + lua({"torch": torch.__version__, "base_lrs": LRS, "cases": CASES}) + "\n")
    print("wrote %s: %d cases" % (OUT, len(CASES)))


if __name__ == "__main__":
    main()
