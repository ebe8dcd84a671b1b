#!/usr/bin/env bash
# Prepare gpu_carry/ (ignored by git) for benchmarks/gpu_check.sh on a GPU machine without network.
#
#   bash benchmarks/gpu_wheels.sh [--no-ros] [--no-mamba] [--pairs N] [--int8] [--fp16]
#
# The GPU machine has Python 3.12 with CUDA torch, triton, onnxruntime, safetensors and OpenCV; this puts
# beside the repository what it lacks, within the 64 MiB a device run can carry:
#   gpu_carry/wheels/      pytest (+ pluggy, iniconfig, packaging, pygments), pytest-timeout, pyyaml, tqdm,
#                          einops (mamba-ssm's Triton kernels import it): cp312 manylinux / pure wheels;
#                          mamba_ssm-*.whl, built here without CUDA (pure Python: its Triton SSD kernels);
#   gpu_carry/ros_wheels/  ROS 2 Jazzy rclpy, sensor_msgs, std_msgs, diagnostic_msgs, rmw_fastrtps_cpp
#                          and their ros-* dependencies for cp312 (empy, sdist-only, built into a wheel);
#   gpu_carry/onnx/        the shipped tiny model exported at 480x640 (checked against PyTorch here), and
#                          with --int8 its INT8 file (5.7 MB; calibrated on ../shared/data/msrs training
#                          pairs) for the onnx step's "CPU INT8" row, and with --fp16 its float16 copy
#                          (6 MB; the GPU machine lacks the onnx package that makes it) for "CUDA fp16":
#                          with ROS either passes 64 MiB, so they go with --no-ros (or a smaller carry);
#   gpu_carry/msrs/        N real MSRS pairs copied from ../shared/data/msrs when it exists (not part of
#                          the project: the GPU machine has no ../shared).
# Then: carry gpu_carry (one ignored path) with the working tree and run benchmarks/gpu_check.sh there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/gpu_carry"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
ROS=1
MAMBA=1
INT8=0
FP16=0
PAIRS=4
LIMIT_MIB=64
while [ $# -gt 0 ]; do
    case "$1" in
        --no-ros) ROS=0 ;;
        --no-mamba) MAMBA=0 ;;
        --pairs) PAIRS="$2"; shift ;;
        --int8) INT8=1 ;;
        --fp16) FP16=1 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
TARGET=(--python-version 3.12 --implementation cp --only-binary=:all:
        --platform manylinux_2_39_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64)
mkdir -p "$CARRY/wheels" "$CARRY/onnx"

echo "== small wheels (cp312)"
"$PY" -m pip download -q --no-deps "${TARGET[@]}" -d "$CARRY/wheels" \
    pytest pluggy iniconfig packaging pygments pytest-timeout pyyaml tqdm einops

if [ "$MAMBA" = 1 ] && ! ls "$CARRY"/wheels/mamba_ssm-*.whl >/dev/null 2>&1; then
    echo "== mamba-ssm pure-Python wheel (its Triton kernels; no CUDA extension; about a minute)"
    # needs torch, setuptools, wheel and packaging in $PY's environment (the project venv has them)
    MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE "$PY" -m pip wheel -q --no-deps --no-build-isolation \
        mamba-ssm==2.3.2.post1 -w "$CARRY/wheels" || echo "   mamba-ssm wheel failed: the triton scan will be reported unavailable"
fi

if [ "$ROS" = 1 ]; then
    echo "== ROS 2 Jazzy wheels for cp312"
    tmp="$(mktemp -d)"
    "$PY" -m pip wheel -q --no-deps empy -w "$tmp"  # sdist only on the index; pure Python
    mkdir -p "$CARRY/ros_wheels"
    "$PY" -m pip download -q "${TARGET[@]}" --find-links "$tmp" -d "$CARRY/ros_wheels" \
        ros-jazzy-rclpy ros-jazzy-sensor-msgs ros-jazzy-std-msgs ros-jazzy-diagnostic-msgs ros-jazzy-rmw-fastrtps-cpp
    # numpy ships with the GPU machine's torch/OpenCV; do not spend 16 MB on another copy; one copy of a
    # wheel that both folders hold (two versions of one package stop an install).
    rm -f "$CARRY"/ros_wheels/numpy-*.whl
    for w in "$CARRY"/ros_wheels/*.whl; do
        name="$(basename "$w" | cut -d- -f1 | tr 'A-Z' 'a-z')"
        ls "$CARRY/wheels/" | tr 'A-Z' 'a-z' | grep -q "^${name}-" && rm -f "$w"
    done
    rm -rf "$tmp"
fi

echo "== ONNX export of the shipped tiny model at 480x640"
if [ ! -f "$CARRY/onnx/sccosf_tiny_480x640.onnx" ]; then
    "$PY" -m sccosf_ros.cli.export --onnx "$CARRY/onnx/sccosf_tiny_480x640.onnx" --size 480 640
fi
if [ "$INT8" = 1 ] && [ ! -f "$CARRY/onnx/sccosf_tiny_480x640_int8.onnx" ]; then
    echo "== its INT8 file (calibrated on the MSRS training pairs, dev pairs left out)"
    "$PY" -m sccosf_ros.cli.export --onnx "$CARRY/onnx/sccosf_tiny_480x640_int8.onnx" --int8 \
        --checkpoint "$CARRY/onnx/sccosf_tiny_480x640.onnx" --calibration "$ROOT/../shared/data/msrs" \
        --calibration-exclude "$ROOT/config/msrs_dev_split.txt"
fi
if [ "$FP16" = 1 ] && [ ! -f "$CARRY/onnx/sccosf_tiny_480x640_fp16.onnx" ]; then
    echo "== its float16 copy (for ONNX Runtime CUDA fp16)"
    "$PY" -c 'import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import gpu_check
gpu_check.float16_copy(Path(sys.argv[2]), Path(sys.argv[2]).parent)' \
        "$ROOT/benchmarks" "$CARRY/onnx/sccosf_tiny_480x640.onnx"
fi

MSRS="$ROOT/../shared/data/msrs"
if [ -d "$MSRS/vi" ] && [ "$PAIRS" -gt 0 ]; then
    echo "== $PAIRS real MSRS pairs (for the GPU-vs-CPU agreement; never committed)"
    mkdir -p "$CARRY/msrs/vi" "$CARRY/msrs/ir"
    find "$MSRS/vi" -name '*.png' | sort | awk -v n="$PAIRS" 'NR % 40 == 1 && c < n {print; c++}' | while read -r f; do
        name="$(basename "$f")"
        [ -f "$MSRS/ir/$name" ] && cp "$f" "$CARRY/msrs/vi/" && cp "$MSRS/ir/$name" "$CARRY/msrs/ir/"
    done
fi

echo "== sizes (the device limit counts the tracked and untracked, not ignored, files too)"
du -sh "$CARRY"/* | sed 's/^/   /'
carry_kib=$(du -sk "$CARRY" | cut -f1)
tree_kib=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
total_kib=$((carry_kib + tree_kib))
echo "   gpu_carry $((carry_kib / 1024)) MiB + working tree $((tree_kib / 1024)) MiB = $((total_kib / 1024)) MiB of ${LIMIT_MIB} MiB"
if [ "$total_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "too large: rm -rf gpu_carry/msrs (synthetic frames then) or rerun with --no-ros (the node step" \
         "then drives the worker path)" >&2
    exit 1
fi
