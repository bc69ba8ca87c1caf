"""Writes fixtures/golden/inception.json: pytorch-fid's InceptionV3 (the FID variant, pool3
features) run on fixed images with deterministic, untrained weights that tests/integration/inception.rs
generates identically, plus every key and shape of the FID state dict.

Weights: element k of the tensor named NAME gets v in [-1, 1) from a 32-bit integer hash of
k and h(NAME) = Σ bytes · 31 mod 997 (see `uniform`), stored as float32: conv weights
v √(6 / fan_in) (He scale); BatchNorm weight 1 + 0.1 v, bias 0.05 v, running_mean 0.05 v,
running_var 1 + 0.2 |v|; fc 0.01 v.

It also writes fixtures/golden/inception_stem.pth, a torch-saved state dict holding the
stem layer (Conv2d_1a_3x3) with the same weights, for the .pth reader.

Usage (a venv with torch, torchvision and pytorch-fid):
    python tests/python/make_inception_golden.py > fixtures/golden/inception.json
"""
import json
import math
import os
import sys

import numpy as np
import torch
import pytorch_fid
import pytorch_fid.inception as I


def h(name):
    return sum(name.encode()) * 31 % 997


def uniform(n, seed):
    """v in [-1, 1): x = k·2654435761 + seed·40503 (mod 2³²), then the murmur3 finalizer."""
    m = np.uint64(0xFFFFFFFF)
    x = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(seed * 40503)) & m
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & m
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & m
    x ^= x >> np.uint64(16)
    return x.astype(np.float64) / 2.0**32 * 2.0 - 1.0


def values(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    v = uniform(n, h(name))
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if name.startswith("fc."):
        w = 0.01 * v
    elif name.endswith("conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        w = v * math.sqrt(6.0 / fan_in)
    elif name.endswith("bn.weight"):
        w = 1.0 + 0.1 * v
    elif name.endswith("bn.bias"):
        w = 0.05 * v
    elif name.endswith("bn.running_mean"):
        w = 0.05 * v
    elif name.endswith("bn.running_var"):
        w = 1.0 + 0.2 * np.abs(v)
    else:
        raise ValueError(name)
    return torch.from_numpy(w.astype(np.float32).reshape(shape))


def template():
    """The FID layout, built as pytorch_fid.inception.fid_inception_v3 builds it."""
    m = I._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    m.Mixed_5b = I.FIDInceptionA(192, pool_features=32)
    m.Mixed_5c = I.FIDInceptionA(256, pool_features=64)
    m.Mixed_5d = I.FIDInceptionA(288, pool_features=64)
    m.Mixed_6b = I.FIDInceptionC(768, channels_7x7=128)
    m.Mixed_6c = I.FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6d = I.FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6e = I.FIDInceptionC(768, channels_7x7=192)
    m.Mixed_7b = I.FIDInceptionE_1(1280)
    m.Mixed_7c = I.FIDInceptionE_2(2048)
    return m.state_dict()


def images():
    """Two 3 x 40 x 48 images in [0, 1]: a colour pattern and a grey one repeated to RGB."""
    y, x = np.meshgrid(np.arange(40.0), np.arange(48.0), indexing="ij")
    a = np.stack([0.5 + 0.5 * np.sin(0.3 * x + 0.2 * y + c) * np.cos(0.01 * x * y) for c in range(3)])
    g = 0.5 + 0.45 * np.sin(0.05 * (x - 20) ** 2 / 10 + 0.17 * y)
    b = np.stack([g, g, g])
    return np.stack([a, b]).astype(np.float32)


def main():
    keys = template()
    state = {k: values(k, tuple(t.shape)) for k, t in keys.items()}
    stem = {k: v for k, v in state.items() if k.startswith("Conv2d_1a_3x3.")}
    torch.save(stem, os.path.join(os.path.dirname(__file__), "../../fixtures/golden/inception_stem.pth"))
    I.load_state_dict_from_url = lambda *a, **kw: state
    model = I.InceptionV3([I.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                          normalize_input=True, use_fid_inception=True).eval()
    with torch.no_grad():
        feats = model(torch.from_numpy(images()))[0].squeeze(-1).squeeze(-1).double().numpy()
    json.dump({
        "generator": "tests/python/make_inception_golden.py",
        "pytorch_fid": pytorch_fid.__version__,
        "torch": torch.__version__,
        "keys": [[k, list(t.shape)] for k, t in keys.items()],
        "features": [[float("%.7g" % v) for v in row] for row in feats],
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
