#!/usr/bin/env python3
"""Peak memory and time per stage against the number of subjects.

Makes N phantom subjects at BraTS size (240 x 240 x 155 voxels of 1 mm, four contrasts and a
label) and runs a demo-shaped pipeline on them (128 x 128 slice store, a diffusion model,
DDIM synthesis of the test split, BraSyn-protocol evaluation against two baselines, the
nnU-Net export and the report), once per N. Each part of the run is its own process, the way
a sharded run splits it (`--shard 0/1 --stage prepare`, `--shards 1 --stage train`,
`--shard 0/1 --stage apply`, `merge`), so each part's peak resident memory is measured by the
kernel (wait4's ru_maxrss) and its wall time by the clock. Training is capped at a fixed number
of steps (`train.max_steps`), so the training row measures the data path and not the epoch
length.

    python3 benches/memory.py --medsynth target/release/medsynth [--subjects 20 80] [--readme]

With --readme the table replaces the one between the markers in README.md.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

PIPELINE = """
[pipeline]
name = "memory"
seed = 5

[input]
format = "phantom"
phantom = {{ subjects = {n}, shape = [240, 240, 155], spacing_mm = 1.0, tumour_fraction = 0.6 }}

[preprocess]
orientation = "RAS"
crop = "foreground"
crop_margin_vox = 2
size = [128, 128]
normalize = {{ method = "percentile", low = 0.5, high = 99.5, range = [-1.0, 1.0] }}
slices = {{ axis = "axial", min_foreground = 0.1 }}
split = {{ train = 0.7, val = 0.1, test = 0.2 }}

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1", "t1ce", "flair"]
target = "t2"
modality_dropout = 0.15
unet = {{ base_channels = 8, channel_mult = [1, 2, 2, 2], res_blocks = 1, groups = 4 }}
attention = {{ kind = "tmsa", resolutions = [16], heads = 2 }}
diffusion = {{ schedule = "cosine", timesteps = 1000 }}

[train]
epochs = 1
max_steps = {steps}
batch_size = 8
checkpoint_every = 1000

[synthesize]
split = "test"
sampler = {{ kind = "ddim", steps = 2, eta = 0.0 }}
batch_size = 32

[evaluate]
metrics = ["ssim", "psnr", "mae"]
protocol = "brasyn"

[output]
formats = ["nifti", "nnunet"]
nnunet = {{ id = 502, name = "Memory" }}
report = true
attention_maps = true
"""

PARTS = [
    ("input + preprocess", ["--shard", "0/1", "--stage", "prepare"]),
    ("train (gather + {steps} steps)", ["--shards", "1", "--stage", "train"]),
    ("synthesize + evaluate", ["--shard", "0/1", "--stage", "apply"]),
    ("merge (nnU-Net export, report)", None),
]


def run(cmd, cwd, log):
    """Runs cmd, returns (seconds, peak RSS in MiB); fails with the log's tail."""
    start = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        with open(log, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        sys.exit(f"{' '.join(cmd)} failed:\n{tail}")
    return seconds, usage.ru_maxrss / 1024.0


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    return total / 2**20


def measure(medsynth, n, steps, keep):
    root = tempfile.mkdtemp(prefix=f"medsynth-memory-{n}-")
    with open(os.path.join(root, "memory.toml"), "w") as f:
        f.write(PIPELINE.format(n=n, steps=steps))
    log = os.path.join(root, "log.txt")
    rows = []
    for name, args in PARTS:
        if args is None:
            cmd = [medsynth, "merge", "runs/memory"]
        else:
            cmd = [medsynth, "run", "--root", ".", "memory.toml", *args]
        seconds, rss = run(cmd, root, log)
        rows.append((name.format(steps=steps), seconds, rss))
        print(f"N={n}: {rows[-1][0]}: {seconds:.1f} s, {rss:.0f} MiB", file=sys.stderr)
    slices = os.path.join(root, "runs", "memory", "slices")
    store = du(slices)
    if not keep:
        subprocess.run(["rm", "-rf", root], check=False)
    return rows, store


def table(results, steps, threads):
    ns = sorted(results)
    head = "| part | " + " | ".join(f"N = {n}: time, peak RSS" for n in ns)
    if len(ns) == 2:
        head += f" | RSS N = {ns[1]} / N = {ns[0]}"
    lines = [head + " |", "|---" * (len(ns) + 1 + (len(ns) == 2)) + "|"]
    names = [r[0] for r in results[ns[0]][0]]
    for i, name in enumerate(names):
        cells = []
        for n in ns:
            _, s, rss = results[n][0][i]
            cells.append(f"{s:.0f} s, {rss:.0f} MiB")
        line = f"| {name} | " + " | ".join(cells)
        if len(ns) == 2:
            ratio = results[ns[1]][0][i][2] / results[ns[0]][0][i][2]
            line += f" | {ratio:.2f}x"
        lines.append(line + " |")
    stores = ", ".join(f"N = {n}: {results[n][1]:.0f} MiB" for n in ns)
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines.append("")
    lines.append(
        f"Slice store on disk: {stores}. {threads} threads, {cpu}, "
        f"{os.cpu_count()} CPUs; `python3 benches/memory.py` ({steps} training steps)."
    )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--medsynth", default="target/release/medsynth")
    ap.add_argument("--subjects", type=int, nargs="+", default=[20, 80])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--keep", action="store_true", help="keep the run folders")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    a = ap.parse_args()
    medsynth = os.path.abspath(a.medsynth)
    results = {n: measure(medsynth, n, a.steps, a.keep) for n in a.subjects}
    text = table(results, a.steps, os.cpu_count())
    print(text)
    if a.readme:
        path = os.path.join(os.path.dirname(__file__), "..", "README.md")
        with open(path) as f:
            readme = f.read()
        begin, end = "<!-- memory:begin -->", "<!-- memory:end -->"
        i, j = readme.index(begin) + len(begin), readme.index(end)
        with open(path, "w") as f:
            f.write(readme[:i] + "\n" + text + "\n" + readme[j:])


if __name__ == "__main__":
    main()
