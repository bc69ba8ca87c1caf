#!/usr/bin/env bash
# The medsynth test suite: unit, integration and doc tests, with the references some tests
# compare against: Python packages (nibabel, pydicom) in a private venv, dcm2niix and dciodvfy; built
# with the `gpu` feature, whose tests run burn's wgpu backend on Mesa's software Vulkan driver
# (lavapipe) against the CPU backend.
#
#   tests/run.sh            # from the repository root, on a fresh machine
#
# MEDSYNTH_PYTHON may name an interpreter that already has tests/python/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MEDSYNTH_PYTHON:-}" ]; then
    req=tests/python/requirements.txt
    key=$(sha256sum "$req" | cut -c1-12)
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/medsynth/pyref-$key"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import nibabel' 2>/dev/null; then
        echo "tests/run.sh: installing Python reference packages into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    fi
    export MEDSYNTH_PYTHON="$venv/bin/python"
fi

# dcm2niix, the DICOM-to-NIfTI converter the round-trip tests compare against (Debian package).
if ! command -v dcm2niix >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing dcm2niix" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcm2niix >/dev/null
    else
        echo "tests/run.sh: dcm2niix is missing; install it (apt-get install dcm2niix) and run again" >&2
        exit 1
    fi
fi

# dciodvfy (dicom3tools), the IOD checker every DICOM object medsynth writes must pass.
if ! command -v dciodvfy >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing dicom3tools" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools >/dev/null
    else
        echo "tests/run.sh: dciodvfy is missing; install it (apt-get install dicom3tools) and run again" >&2
        exit 1
    fi
fi

# CMake, which builds CharLS for the `jpeg-ls` feature (JPEG-LS decoding) the tests run with.
if ! command -v cmake >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing cmake" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
    else
        echo "tests/run.sh: cmake is missing; install it (apt-get install cmake) and run again" >&2
        exit 1
    fi
fi

# The Vulkan loader and lavapipe, the software Vulkan driver the GPU tests run on (Debian
# packages libvulkan1 and mesa-vulkan-drivers).
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && [ ! -e /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing the Vulkan loader and lavapipe" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null
    else
        echo "tests/run.sh: lavapipe is missing; install it (apt-get install libvulkan1 mesa-vulkan-drivers) and run again" >&2
        exit 1
    fi
fi
# Slurm and munge, for the test that runs a pipeline on a single-node cluster (Debian packages
# slurm-wlm and munge; tests/slurm/cluster.sh starts the daemons on 127.0.0.1).
if ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing Slurm and munge" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    else
        echo "tests/run.sh: Slurm is missing; install it (apt-get install slurm-wlm munge) and run again as root" >&2
        exit 1
    fi
fi
# On a machine without a GPU, wgpu's default adapter is lavapipe; where a GPU exists, keep the
# comparison on lavapipe too, so the tolerances hold for the driver they were measured on.
export CUBECL_WGPU_DEFAULT_DEVICE="${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}"

cargo test --locked --features gpu,jpeg-ls "$@"
