#!/usr/bin/python3
"""Write tests/golden/ckpt_fixture.safetensors, a safetensors file made the way
Python tools make them, for tests/lua/test_ckpt.lua (mo.load_tensors must read
it exactly); and check moonopt-written files with NumPy alone.

    /usr/bin/python3 tests/golden/make_ckpt_fixture.py           # (re)write the fixture
    /usr/bin/python3 tests/golden/make_ckpt_fixture.py FILE...   # parse FILEs, print them

The format is written and parsed by hand (NumPy only; the `safetensors` package
is not needed): 8-byte little-endian header length N, N bytes of JSON, the data.
Like the safetensors library, the fixture orders the data by dtype size (largest
first) and then by name, lists the header keys in another order (sorted), pads
the header with spaces to a multiple of 8, and stores {"format": "pt"} metadata.
It holds every dtype moonopt reads (F64, F32, F16, BF16), a 0-d and a zero-size
tensor, negative zero, and values that F16/BF16/F64 -> float32 must convert
exactly (or round: 1/3 in F64, overflow to -inf). Running it again reproduces
the file byte for byte.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ckpt_fixture.safetensors")

DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
          "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
          "U8": np.dtype("u1")}


def bf16_bits(values):
    """bfloat16 bits of float32 values that bfloat16 holds exactly (top 16 bits)."""
    a = np.asarray(values, dtype="<f4").view("<u4")
    assert np.all(a & 0xFFFF == 0), "value not exact in bfloat16"
    return (a >> 16).astype("<u2")


def fixture():
    """name -> (dtype, array holding the stored bytes' values)"""
    return {
        "weight": ("F32", (np.arange(6, dtype=np.float64).reshape(2, 3) / 7 - 0.25).astype("<f4")),
        "bias": ("F32", np.array([1.5, -0.0, 3.25], dtype="<f4")),
        "scalar": ("F32", np.array(np.pi, dtype="<f4")),
        "empty": ("F32", np.zeros((0, 2), dtype="<f4")),
        "double": ("F64", np.array([[1 / 3, -1e300], [2.5, 1e-50]], dtype="<f8")),
        "half": ("F16", np.array([1.0, -2.5, 65504.0, 2.0 ** -24], dtype="<f2")),
        "bf": ("BF16", bf16_bits([1.0, -3.0, 1.0078125])),
        "layers.0.w": ("F32", np.array([[2.0, 4.0]], dtype="<f4")),
    }


def write(path, tensors, metadata):
    size = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
    order = sorted(tensors, key=lambda n: (-size[tensors[n][0]], n))
    header, blobs, off = {}, [], 0
    for name in order:
        dtype, arr = tensors[name]
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
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


def read(path):
    """Parse a safetensors file by hand; check what moonopt promises; return (tensors, metadata)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    at = 0
    for b, e, k in spans:
        assert b == at, "gap or overlap before %s" % k
        at = e
    assert at == len(data), "trailing bytes"
    if "moonopt.crc32" in meta:
        assert int(meta["moonopt.crc32"], 16) == zlib.crc32(data), "checksum mismatch"
    out = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out, meta


def main():
    if len(sys.argv) > 1:
        for path in sys.argv[1:]:
            tensors, meta = read(path)
            print("%s: %d tensors, checksum %s" % (path, len(tensors),
                  "ok" if "moonopt.crc32" in meta else "absent"))
            for k in sorted(tensors):
                a = tensors[k]
                print("  %-32s %-8s %s" % (k, a.dtype, list(a.shape)))
            for k in sorted(meta):
                v = meta[k]
                print("  meta %-27s %s" % (k, v if len(v) < 60 else v[:57] + "..."))
                if k in ("moonopt.optimizer", "moonopt.scheduler", "moonopt.extra", "moonopt.fit"):
                    json.loads(v)   # Python's json reads moonopt's JSON (Infinity, NaN included)
        return
    t = fixture()
    write(OUT, t, {"format": "pt", "source": "tests/golden/make_ckpt_fixture.py"})
    back, meta = read(OUT)
    for k, (_, arr) in t.items():
        assert back[k].tobytes() == np.ascontiguousarray(arr).tobytes(), k
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
