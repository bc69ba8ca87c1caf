#!/usr/bin/env bash
# Steps per second of the training loop as `medsynth run` runs it: the demo's diffusion model
# (attention UNet with DiFfiT attention, 64 x 64 slices, batch 8) on a phantom cohort, STEPS
# optimizer steps on DEVICE (cpu, or gpu for burn's wgpu backend), REPEATS times. Each
# repeat trains from step 0 on the same slice store (the checkpoints are removed between
# them) and prints the train stage's own rate: loader, condition tensors, forward, backward,
# Adam, EMA, loss log and checkpoint, as a user's run spends them.
#
#   benches/train_loop.sh BIN [DEVICE] [STEPS] [REPEATS]
#
# BIN is a medsynth binary (for gpu: built with --features gpu); compare two builds by
# running this with each, one after the other, on an otherwise idle machine.
set -euo pipefail
bin=$(realpath "$1")
device=${2:-cpu}
steps=${3:-40}
repeats=${4:-3}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cat >"$root/train.toml" <<TOML
[pipeline]
name = "train-loop"
seed = 7

[input]
format = "phantom"
phantom = { subjects = 8, shape = [64, 72, 56], spacing_mm = 3.0, tumour_fraction = 0.6 }

[preprocess]
crop = "foreground"
crop_margin_vox = 2
size = [64, 64]
normalize = { method = "percentile", low = 0.5, high = 99.5, range = [-1.0, 1.0] }
slices = { axis = "axial", min_foreground = 0.1 }
split = { train = 1.0, val = 0.0, test = 0.0 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1", "t1ce", "flair"]
target = "t2"
modality_dropout = 0.15
unet = { base_channels = 16, channel_mult = [1, 2, 2], res_blocks = 1, groups = 8 }
attention = { kind = "tmsa", resolutions = [16], heads = 4 }
diffusion = { schedule = "cosine", timesteps = 1000 }

[train]
epochs = 1000
max_steps = $steps
batch_size = 8
warmup_steps = 20
ema = 0.99
checkpoint_every = 200
device = "$device"
TOML
for r in $(seq "$repeats"); do
    rm -rf "$root/runs/train-loop/checkpoints" "$root/runs/train-loop/train_log.parquet"
    "$bin" run --root "$root" "$root/train.toml" 2>"$root/log" >/dev/null
    rate=$(grep 'stage=train' "$root/log" | grep 'done: progress' | tail -1 |
        sed -n 's/.*rate="\([0-9.]*\)\/s".*/\1/p')
    echo "$device repeat $r: $rate steps/s ($steps steps)"
done
