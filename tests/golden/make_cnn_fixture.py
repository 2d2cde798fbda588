#!/usr/bin/python3
"""Write tests/golden/cnn_fixture.safetensors and cnn_bn_fixture.safetensors for
tests/lua/test_conv_nn.lua: two small CNNs built in PyTorch 1.13 with a fixed seed, their
state_dicts exactly as PyTorch names and shapes them ("0.weight", "1.running_mean",
"1.num_batches_tracked" as I64, ...), an input batch, labels, and PyTorch's results:

  cnn:    the issue's CNN layer for layer at a smaller width (Conv2d(1,8,3,p1) ReLU
          MaxPool2d(2) Conv2d(8,16,3,p1) ReLU MaxPool2d(2) Flatten Linear(256,32) ReLU
          Linear(32,10)) on {4, 1, 16, 16}: logits, and after cross-entropy (mean) backward
          the gradient of every parameter.
  cnn_bn: Conv2d(1,8,3,p1,bias=False) BatchNorm2d(8) ReLU MaxPool2d(2)
          Conv2d(8,16,3,p2,dilation 2,groups 2) BatchNorm2d(16) ReLU Dropout2d(0.25)
          AvgPool2d(3,stride 2,p1,count_include_pad=False) AdaptiveAvgPool2d(3) Flatten
          Linear(144,32) BatchNorm1d(32) ReLU Linear(32,10) on {5, 1, 13, 11}, after 3
          training batches (so the running statistics are not the initial ones):
          evaluation-mode logits; then training-mode logits (Dropout2d alone in eval
          mode: its mask is random), every parameter's gradient of the mean cross-entropy,
          and the running statistics after that training forward.

Parameters are stored as float32; the results are computed in float64 from exactly those
float32 values (so they are the exact answers, rounded once). The file is written by hand
(the `safetensors` package is not needed) in the layout that package uses.

    /usr/bin/python3 tests/golden/make_cnn_fixture.py
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"F64": 8, "I64": 8, "F32": 4}


def write(path, tensors, metadata):
    """tensors: name -> numpy array (float32 -> F32, int64 -> I64)."""
    def dtype(a):
        return {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("float64"): "F64"}[a.dtype]
    order = sorted(tensors, key=lambda n: (-SIZES[dtype(tensors[n])], n))
    header, blobs, off = {}, [], 0
    for name in order:
        a = tensors[name]
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype(a), "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    doc = {"__metadata__": metadata}
    for name in sorted(header):
        doc[name] = header[name]
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def f32(t):
    return t.detach().to(torch.float32).numpy().copy()


def state(model):
    """PyTorch's state_dict as numpy, keys unchanged (float32 values, I64 counters)."""
    out = {}
    for k, v in model.state_dict().items():
        out["model." + k] = v.numpy().copy() if v.dtype == torch.int64 else f32(v)
    return out


def round_params_to_f32(model):
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.to(torch.float32).to(v.dtype))


def grads(model):
    return {"grad." + k: f32(p.grad) for k, p in model.named_parameters()}


def plain_cnn():
    torch.manual_seed(1301)
    m = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.randn(4, 1, 16, 16).to(torch.float32)
    y = torch.tensor([3, 0, 9, 5])
    tensors = state(m)
    m = m.double()
    round_params_to_f32(m)
    out = m(x.double())
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    tensors.update({"input": f32(x), "target": (y + 1).to(torch.float32).numpy(), "logits": f32(out),
                    "loss": np.array(loss.item(), dtype=np.float32)})
    tensors.update(grads(m))
    write(os.path.join(HERE, "cnn_fixture.safetensors"), tensors,
          {"format": "pt", "made_by": "tests/golden/make_cnn_fixture.py", "torch": torch.__version__})


def bn_cnn():
    torch.manual_seed(1302)
    m = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=2), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout2d(0.25),
        nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
        nn.Linear(144, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        for k, v in m.named_parameters():
            if v.dim() == 1 and (k.endswith("weight") or k.endswith("bias")):
                v.copy_(torch.randn_like(v) * 0.3 + (1.0 if k.endswith("weight") else 0.0))
    # three training batches: running statistics and num_batches_tracked move
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(6, 1, 13, 11) * 1.5 + 0.2)
    x = (torch.randn(5, 1, 13, 11) * 1.3 - 0.1).to(torch.float32)
    y = torch.tensor([1, 7, 7, 0, 4])
    tensors = state(m)
    m = m.double()
    round_params_to_f32(m)
    m.eval()
    with torch.no_grad():
        logits_eval = m(x.double())
    m.train()
    m[7].eval()
    out = m(x.double())
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    tensors.update({"input": f32(x), "target": (y + 1).to(torch.float32).numpy(), "logits_eval": f32(logits_eval),
                    "logits_train": f32(out), "loss_train": np.array(loss.item(), dtype=np.float32)})
    tensors.update(grads(m))
    for k, v in m.state_dict().items():
        if "running" in k:
            tensors["after." + k] = f32(v)
        elif "num_batches" in k:
            tensors["after." + k] = v.numpy().copy()
    write(os.path.join(HERE, "cnn_bn_fixture.safetensors"), tensors,
          {"format": "pt", "made_by": "tests/golden/make_cnn_fixture.py", "torch": torch.__version__})


if __name__ == "__main__":
    torch.set_num_threads(1)
    plain_cnn()
    bn_cnn()
