#!/usr/bin/env bash
# The amortisation recipe in one call, for a lent GPU (minutes of it): grow the gradient cache, run the supervised
# stage, the end-to-end stage at 128 px, then the end-to-end stage at 256 px (the shipped default's three stages),
# and leave the results where the device tool brings them back.
#
#   device run, carry [data/photos, runs/gradient-cache-128, .whl]:
#     bash scripts/gpu_amortise.sh            # OUT (set by the device tool) receives the generators and logs
#   on this CPU, as a check of the script itself (seconds of each stage):
#     DEVICE=cpu COUNT=64 CACHE=runs/gc-check SUFFIX=-check PRETRAIN=00:00:01:00 FINETUNE=00:00:01:00 STAGE3=00:00:01:00 \
#         OUT=runs/gpu-check bash scripts/gpu_amortise.sh
#
# The device image lacks kornia, jsonargparse, omegaconf and wandb: carry them as wheels in .whl (the device
# tool's README says how); the script installs whatever .whl holds. Every stage writes its checkpoints under
# runs/ and copies the exports and logs to $OUT as it finishes, so a call cut short still returns the earlier
# stages. Budget the times so the whole call ends inside the device tool's 10-minute command limit.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder that comes back}
DEVICE=${DEVICE:-cuda}
COUNT=${COUNT:-16384}              # gradient-cache entries (grows the carried cache, resumable)
PRETRAIN=${PRETRAIN:-00:00:02:30}  # wall time of the supervised stage
FINETUNE=${FINETUNE:-00:00:02:30}  # wall time of the end-to-end stage at 128 px
STAGE3=${STAGE3:-00:00:01:30}      # wall time of the end-to-end stage at 256 px
PY=${PYTHON:-python3}
SUFFIX=${SUFFIX:-}                 # run names get it, so that a check never touches the real runs
CACHE=${CACHE:-runs/gradient-cache-128}
PRE=generator-lama-tiny-pretrain$SUFFIX
AMO=generator-lama-tiny-amortised$SUFFIX
S256=generator-lama-tiny-256$SUFFIX
export WANDB_MODE=offline PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
[ "$DEVICE" = cpu ] && ACCEL=cpu || ACCEL=gpu
pg() { $PY -m trainer.commands.cli "$@"; }
base=(--config configs/generator/lama-tiny.yaml)

pg gradient-cache --out "$CACHE" --count "$COUNT" --device "$DEVICE" --batch-size 64 \
    2>&1 | tail -n 3 | tee "$OUT/cache.log"

pg train "${base[@]}" --config configs/generator/lama-tiny-pretrain.yaml --trainer.accelerator "$ACCEL" \
    --run_name "$PRE" --data.gradient_cache "$CACHE" --trainer.max_time "$PRETRAIN" --data.batch_size 64 \
    --data.num_workers 4 > "$OUT/pretrain.log" 2>&1
cp "runs/$PRE/$PRE.safetensors" "$OUT/"

pg train "${base[@]}" --config configs/generator/lama-tiny-amortised.yaml --trainer.accelerator "$ACCEL" \
    --run_name "$AMO" --model.init_from "runs/$PRE/$PRE.safetensors" --data.gradient_cache "$CACHE" \
    --trainer.max_time "$FINETUNE" --data.batch_size 16 --data.num_workers 4 > "$OUT/amortised.log" 2>&1
cp "runs/$AMO/$AMO.safetensors" "$OUT/"

pg train "${base[@]}" --config configs/generator/lama-tiny-amortised.yaml --config configs/generator/lama-tiny-256.yaml \
    --trainer.accelerator "$ACCEL" --run_name "$S256" --model.init_from "runs/$AMO/$AMO.safetensors" \
    --trainer.max_time "$STAGE3" --data.batch_size 16 --data.num_workers 4 > "$OUT/stage256.log" 2>&1
cp "runs/$S256/$S256.safetensors" "$OUT/"
cp runs/val-teacher-lama-tiny.safetensors "$OUT/" 2>/dev/null || true
echo "done: $(ls "$OUT")"
