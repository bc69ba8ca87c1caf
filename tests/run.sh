#!/usr/bin/env bash
# The medsynth test suite: unit, integration and doc tests, with the references some tests
# compare against: Python packages (nibabel, pydicom, the BIDS validator) in a private venv,
# dcm2niix and dciodvfy, and the services some tests start (Orthanc, Slurm); built
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

# Installs Debian packages for a missing tool when run as root with apt; otherwise says
# what to install and stops. install WHAT PACKAGE...
install() {
    local what=$1
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing $what" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "tests/run.sh: $what is missing; install it (apt-get install $*) as root and run again" >&2
        exit 1
    fi
}

# dcm2niix, the DICOM-to-NIfTI converter the round-trip tests compare against.
command -v dcm2niix >/dev/null 2>&1 || install dcm2niix dcm2niix
# dciodvfy (dicom3tools), the IOD checker every DICOM object medsynth writes must pass.
command -v dciodvfy >/dev/null 2>&1 || install dicom3tools dicom3tools
# CMake, which builds CharLS for the `jpeg-ls` feature (JPEG-LS decoding) the tests run with.
command -v cmake >/dev/null 2>&1 || install cmake cmake
# The Vulkan loader and lavapipe, the software Vulkan driver the GPU tests run on.
if [ ! -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && [ ! -e /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ]; then
    install "the Vulkan loader and lavapipe" libvulkan1 mesa-vulkan-drivers
fi
# Slurm and munge, for the test that runs a pipeline on a single-node cluster
# (tests/slurm/cluster.sh starts the daemons on 127.0.0.1).
if ! command -v slurmctld >/dev/null 2>&1 && [ ! -x /usr/sbin/slurmctld ]; then
    install "Slurm and munge" slurm-wlm munge
fi
# Orthanc and its DICOMweb plugin, for the tests that pull a cohort over QIDO-RS/WADO-RS and
# store series with STOW-RS (tests/orthanc/server.sh starts it on 127.0.0.1).
if ! command -v Orthanc >/dev/null 2>&1 || ! ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so >/dev/null 2>&1; then
    install "Orthanc and its DICOMweb plugin" orthanc orthanc-dicomweb
fi
# On a machine without a GPU, wgpu's default adapter is lavapipe; where a GPU exists, keep the
# comparison on lavapipe too, so the tolerances hold for the driver they were measured on.
export CUBECL_WGPU_DEFAULT_DEVICE="${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}"

# The build the README's demo command makes (no features) is linted too, tests and benches
# included, so it cannot break unseen; skipped when arguments pick tests.
if [ $# -eq 0 ]; then
    cargo clippy --locked --all-targets -- -D warnings
fi
cargo test --locked --features gpu,jpeg-ls "$@"
