#!/usr/bin/env bash
# The model benchmarks on a GPU: medsynth's diffusion and GAN benches (benches/diffusion.rs,
# benches/gan.rs) on `gpu` (burn's wgpu backend, Vulkan) at 128 x 128 and 256 x 256, beside
# the same PyTorch reference scripts on that machine's CUDA (or its CPU when torch has no CUDA).
# Each bench prints its table: steps/s and DDIM s/slice, both sides and their ratio.
#
#   benches/gpu.sh pack           # here: build both benches with --features gpu, strip and
#                                 # compress them into .gpu/ with the reference scripts and the
#                                 # Vulkan loader's Debian package, for a machine without Rust
#   benches/gpu.sh run [SIZES]    # on the GPU machine, from the repository root with .gpu/:
#                                 # unpack, find the NVIDIA Vulkan driver, run both benches
#   benches/gpu.sh local [SIZES]  # here: pack, then run on this machine's Vulkan driver
#                                 # (lavapipe, the software driver; default sizes 32)
#
# SIZES: image sides separated by commas (default 128,256). .gpu/ is ignored by git; with the
# device tool, name it in `carry` and call `benches/gpu.sh run` (about 20 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.gpu

build() {
    mkdir -p "$pack"
    # Build messages go to a log, shown when the build fails.
    cargo bench --locked --features gpu --no-run --bench diffusion --bench gan \
        --message-format=json 2>"$pack/build.log" |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["bench"]:
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do
            strip -o "$pack/$name" "$exe"
            xz -T0 -6 -f "$pack/$name"
        done || { cat "$pack/build.log" >&2; exit 1; }
    cp benches/diffusion_reference.py benches/gan_reference.py "$pack/"
    # The Vulkan loader, for a machine whose image has the driver but not the loader.
    if ! ls "$pack"/libvulkan1_*.deb >/dev/null 2>&1; then
        (cd "$pack" && apt-get download libvulkan1 >/dev/null 2>&1) ||
            echo "benches/gpu.sh: could not download libvulkan1; the GPU machine must have its own loader" >&2
    fi
    du -sh "$pack"
}

run() {
    local sizes=${1:-128,256}
    if ! ldconfig -p | grep -q libvulkan.so.1; then
        for f in "$pack"/libvulkan1_*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    # The NVIDIA driver's Vulkan manifest where containers put it.
    if [ -z "${VK_DRIVER_FILES:-}" ] && [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
    local python=${MEDSYNTH_TORCH_PYTHON:-python3}
    local torch_device
    torch_device=$("$python" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
    for name in diffusion gan; do
        [ -x "$pack/$name" ] || xz -dkf "$pack/$name.xz"
        chmod +x "$pack/$name"
        MEDSYNTH_BENCH_DEVICE=gpu MEDSYNTH_BENCH_SIZES="$sizes" MEDSYNTH_TORCH_DEVICE="$torch_device" \
            MEDSYNTH_TORCH_PYTHON="$python" MEDSYNTH_BENCH_SCRIPTS="$pack" "$pack/$name"
    done
}

case "${1:-}" in
    pack) build ;;
    run) run "${2:-}" ;;
    local)
        build
        export CUBECL_WGPU_DEFAULT_DEVICE="${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}"
        run "${2:-32}"
        ;;
    *)
        echo "usage: benches/gpu.sh pack | run [SIZES] | local [SIZES]" >&2
        exit 2
        ;;
esac
