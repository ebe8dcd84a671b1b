#!/usr/bin/env bash
# Every figure in README.md and models/README.md, measured in one go on a quiet machine (not part of CI).
# Usage: bash benchmarks/run_all.sh [OUT_DIR]   (needs `make venv`, the shipped model and ../shared/data/msrs)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-measure_out}
PY=.venv/bin/python
MSRS=../shared/data/msrs
mkdir -p "$OUT"
run() { echo "== $*" | tee -a "$OUT/log.txt"; "$@" 2>&1 | tee -a "$OUT/log.txt"; }

run .venv/bin/sccosf-model-info
run $PY benchmarks/bench_core.py --runs 10
run $PY benchmarks/bench_model.py --preset tiny --threads 2 --size 480 640 --runs 15 --fold-bn --no-profile
run $PY benchmarks/bench_model.py --preset base --threads 2 --size 480 640 --runs 3 --fold-bn --no-profile --no-yardstick
run $PY benchmarks/bench_scan.py --threads 2 --repeats 5 --seq-repeats 2
run $PY benchmarks/bench_onnx.py --rounds 30 --pairs 10 --variants all --json "$OUT/bench_onnx.json"  # docs/onnx.md
run $PY -m sccosf_train.model_card --checkpoint models/sccosf_tiny.safetensors --msrs-root "$MSRS" \
    --out "$OUT/model_card" --threads 2
# README and docs/node.md, "Throughput with default parameters": the node as shipped, then with torch
run $PY benchmarks/bench_node.py --duration 60 --input-qos auto --out "$OUT/node_default.json"
run $PY benchmarks/bench_node.py --duration 60 --input-qos auto --backend torch --out "$OUT/node_default_torch.json"
rm -rf "$OUT/msrs_val.bag" "$OUT/eval_msrs"
mkdir -p "$OUT/msrs_val/vi" "$OUT/msrs_val/ir"
for f in "$MSRS"/seafusion/*.png; do n=$(basename "$f"); cp "$MSRS/vi/$n" "$OUT/msrs_val/vi/"; cp "$MSRS/ir/$n" "$OUT/msrs_val/ir/"; done
run .venv/bin/sccosf-bag from-folder --rgb "$OUT/msrs_val/vi" --thermal "$OUT/msrs_val/ir" "$OUT/msrs_val.bag"
run .venv/bin/sccosf-eval "$OUT/msrs_val.bag" --out "$OUT/eval_msrs" --threads 2 --label-topic '' --no-progress
run $PY benchmarks/bench_node.py --duration "${NODE_SECONDS:-600}" --num-threads "${NODE_THREADS:-1}" \
    --input-qos sensor_data --backend torch --out "$OUT/node.json"
for refine in true false; do  # docs/node.md: the segmentation refinement's cost in the node (60 s each)
    run $PY benchmarks/bench_node.py --duration 60 --num-threads 1 --input-qos sensor_data \
        --seg-refine $refine --backend torch --out "$OUT/node_refine_${refine}.json"
done
run $PY benchmarks/bench_node.py --duration 60 --num-threads 2 --input-qos sensor_data --backend torch --out "$OUT/node_refine_t2.json"
for profile in shipped none; do  # docs/node.md: the Fast DDS profile's effect, best-effort and reliable input
    for qos in sensor_data reliable; do
        run $PY benchmarks/bench_node.py --duration 60 --num-threads 1 --input-qos $qos \
            --fastdds-profile $profile --backend torch --out "$OUT/node_${profile}_${qos}.json"
    done
done
run $PY benchmarks/bench_qos_matrix.py --duration 20 --out "$OUT/qos_matrix.json"  # docs/node.md, "The input matrix"
run $PY benchmarks/bench_register.py --trials 20 --out "$OUT/register.json"  # docs/registration.md
run $PY benchmarks/bench_bag_recovery.py --out "$OUT/bag_recovery.json"  # docs/evaluation.md, cut-off bags
run $PY benchmarks/bench_transport.py --size 480 640 --seconds 6 \
    --rows sensor_data:single:0,sensor_data:multi:1,reliable:multi:1 --out "$OUT/transport_defaults.json"
FASTRTPS_DEFAULT_PROFILES_FILE="$PWD/config/fastdds_large_images.xml" run $PY benchmarks/bench_transport.py \
    --size 480 640 --seconds 6 --rows sensor_data:single:0,sensor_data:multi:1,reliable:multi:1 \
    --out "$OUT/transport_profile.json"
rm -rf "$OUT/demo" "$OUT"/replay_*
run $PY -m sccosf_synth.demo --out "$OUT/demo"
for i in 1 2 3 4 5; do  # the live replay's run-to-run spread, with the profile and with Fast DDS defaults
    run .venv/bin/sccosf-replay "$OUT/demo/demo_bag" --out "$OUT/replay_profile_$i" --threads 1 --no-progress
    FASTRTPS_DEFAULT_PROFILES_FILE="" run .venv/bin/sccosf-replay "$OUT/demo/demo_bag" \
        --out "$OUT/replay_defaults_$i" --threads 1 --no-progress
done
