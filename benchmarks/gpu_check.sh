#!/usr/bin/env bash
# The GPU proof of sccosf_ros in one command, under 8 minutes on one H100/H200 (docs/gpu.md).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]           # OUT_DIR defaults to $OUT, else gpu_check_out/
#   bash benchmarks/gpu_check.sh --cpu-dry-run [OUT]  # every step on the CPU, tiny sizes, short durations
#
# Runs on the GPU machine's own Python (CUDA torch, triton, onnxruntime, safetensors, opencv there): the
# project goes on PYTHONPATH, and the small packages it lacks are installed from gpu_carry/wheels (made by
# benchmarks/gpu_wheels.sh; no network needed). Each step runs in its own process under its own timeout and
# writes WORK/steps/STEP.json (WORK: $GPU_CHECK_WORK or a new /tmp folder); a step that fails or times out is
# recorded and the next one runs. At the end OUT gets results.json and results.md (everything) and
# details.tar.gz (step records, logs, pytest's junit XML). Steps: env, tests, precision, forward, onnx (CUDA
# fp32 and fp16, CPU fp32, INT8 on this CPU), node, scan, train, onnx_trt (TensorRT fp16 and fp32: its engine
# builds may be slow, so it goes last).
set -u

DRY=0
if [ "${1:-}" = "--cpu-dry-run" ]; then
    DRY=1
    shift
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$ROOT/gpu_check_out}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
# Everything is measured in a work folder; OUT_DIR receives three files (results.json, results.md,
# details.tar.gz with every step record and log), because a device run returns at most 8 files from $OUT.
WORK="${GPU_CHECK_WORK:-$(mktemp -d /tmp/sccosf_gpu_check.XXXXXX)}"
mkdir -p "$WORK/steps" "$WORK/logs"
PY="${PYTHON:-python3}"
TOTAL_S="${GPU_CHECK_TOTAL_S:-470}"   # 8 minutes less a margin for the report
START=$(date +%s)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# TensorRT engines are cached under $SCCOSF_ONNX_CACHE/trt (fp16 ones under fp16/trt): on the GPU machine in
# gpu_carry/onnx_cache, so a second run in the same session loads them instead of building them again.
if [ "$DRY" = 0 ] && [ -d "$ROOT/gpu_carry" ]; then
    export SCCOSF_ONNX_CACHE="${SCCOSF_ONNX_CACHE:-$ROOT/gpu_carry/onnx_cache}"
else
    export SCCOSF_ONNX_CACHE="${SCCOSF_ONNX_CACHE:-$WORK/onnx_cache}"
fi
DRY_FLAG=()
if [ "$DRY" = 1 ]; then
    DRY_FLAG=(--dry-run)
    export CUDA_VISIBLE_DEVICES=""  # prove the CPU path even where a GPU exists
    export OMP_NUM_THREADS=1        # small CPU runs; two threads on a busy 2-core machine are slower
fi

log() { echo "[gpu_check $(($(date +%s) - START))s] $*" | tee -a "$WORK/logs/gpu_check.txt"; }

# Missing small packages from the carried wheels (never the network, never torch/numpy/opencv), into a
# folder of their own on PYTHONPATH, as the device notes recommend; ROS goes into the environment itself,
# because its wheels bring a .pth file that sets up the shared-library path (not read from PYTHONPATH).
if [ "$DRY" = 0 ] && [ -d "$ROOT/gpu_carry/wheels" ]; then
    SITE="$WORK/site"
    missing=()
    for spec in pytest:pytest pytest_timeout:pytest-timeout yaml:pyyaml tqdm:tqdm einops:einops; do
        "$PY" -c "import ${spec%%:*}" 2>/dev/null || missing+=("${spec##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing carried wheels: ${missing[*]}"
        timeout 120 "$PY" -m pip install -q --no-index --no-compile --no-cache-dir --find-links "$ROOT/gpu_carry/wheels" \
            --target "$SITE" "${missing[@]}" >>"$WORK/logs/pip.txt" 2>&1 || log "pip install failed (logs/pip.txt)"
    fi
    # mamba-ssm's Triton kernels (pure-Python wheel built by gpu_wheels.sh), for the 'triton' scan backend.
    if ls "$ROOT"/gpu_carry/wheels/mamba_ssm-*.whl >/dev/null 2>&1 \
        && ! "$PY" -c "import importlib.util as u; assert u.find_spec('mamba_ssm')" 2>/dev/null; then
        timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
            "$ROOT"/gpu_carry/wheels/mamba_ssm-*.whl >>"$WORK/logs/pip.txt" 2>&1 || log "mamba-ssm did not install"
    fi
    export PYTHONPATH="$PYTHONPATH:$SITE"
    # ROS 2 Jazzy rclpy for Python 3.12 (the node step then runs the real node over loopback DDS).
    if [ -d "$ROOT/gpu_carry/ros_wheels" ] && ! "$PY" -c "import rclpy" 2>/dev/null; then
        log "installing the carried ROS 2 wheels"
        timeout 150 "$PY" -m pip install -q --no-index --no-compile --find-links "$ROOT/gpu_carry/ros_wheels" \
            --find-links "$ROOT/gpu_carry/wheels" ros-jazzy-rclpy ros-jazzy-sensor-msgs ros-jazzy-std-msgs \
            ros-jazzy-diagnostic-msgs ros-jazzy-rmw-fastrtps-cpp >>"$WORK/logs/pip.txt" 2>&1 \
            || log "ROS wheels did not install: the node step drives the worker path (logs/pip.txt)"
    fi
fi

# STEP BUDGET_S: run one step under min(BUDGET_S, what is left), record a timeout or a crash.
run_step() {
    local name=$1 budget=$2 left
    left=$((TOTAL_S - ($(date +%s) - START)))
    if [ "$left" -lt 15 ]; then
        log "$name: skipped, no time left"
        printf '{"step": "%s", "status": "skipped", "error": "no time left in the %s s budget"}\n' \
            "$name" "$TOTAL_S" >"$WORK/steps/$name.json"
        return
    fi
    [ "$budget" -gt "$left" ] && budget=$left
    log "$name: start (budget ${budget}s)"
    local t0 rc
    t0=$(date +%s)
    timeout -k 10 "$budget" "$PY" "$ROOT/benchmarks/gpu_check.py" "$name" --out "$WORK" \
        --budget "$budget" "${DRY_FLAG[@]}" "${EXTRA[@]}" >"$WORK/logs/$name.txt" 2>&1
    rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        printf '{"step": "%s", "status": "timeout", "seconds": %s, "error": "killed after %s s; see logs/%s.txt"}\n' \
            "$name" "$(($(date +%s) - t0))" "$budget" "$name" >"$WORK/steps/$name.json"
    elif [ ! -s "$WORK/steps/$name.json" ]; then
        printf '{"step": "%s", "status": "failed", "seconds": %s, "error": "exit %s without a record; see logs/%s.txt"}\n' \
            "$name" "$(($(date +%s) - t0))" "$rc" "$name" >"$WORK/steps/$name.json"
    fi
    log "$name: exit $rc after $(($(date +%s) - t0))s"
}

EXTRA=()
if [ -n "${GPU_CHECK_ONNX:-}" ]; then
    EXTRA=(--onnx "$GPU_CHECK_ONNX")
fi
if [ -n "${GPU_CHECK_INT8:-}" ]; then
    EXTRA+=(--int8 "$GPU_CHECK_INT8")
fi
rm -f "$WORK"/steps/*.json
if [ "$DRY" = 1 ]; then
    # Short budgets: the dry run must stay quick (test/test_gpu_check.py runs it).
    run_step env 30; run_step tests 40; run_step precision 40; run_step forward 60
    run_step onnx 40; run_step node 30; run_step scan 30; run_step train 40; run_step onnx_trt 20
else
    # Typical H100/H200 times are well under these budgets; train (2 minutes of steps) and TensorRT (its
    # engine build) come last and get what is left of TOTAL_S.
    run_step env 30; run_step tests 100; run_step precision 45; run_step forward 60
    run_step onnx 60; run_step node 100; run_step scan 45; run_step train 160; run_step onnx_trt 120
fi
"$PY" "$ROOT/benchmarks/gpu_check.py" report --out "$WORK" >>"$WORK/logs/gpu_check.txt" 2>&1 \
    || log "report failed"
cp "$WORK/results.json" "$WORK/results.md" "$OUT_DIR/" 2>/dev/null || log "no results to copy"
(cd "$WORK" && tar czf "$OUT_DIR/details.tar.gz" steps logs $(ls tests_junit.xml node_bench.json 2>/dev/null)) \
    || log "details.tar.gz failed"
log "done in $(($(date +%s) - START))s: $OUT_DIR/results.md, results.json, details.tar.gz (work folder $WORK)"
cat "$OUT_DIR/results.md" 2>/dev/null | head -80
