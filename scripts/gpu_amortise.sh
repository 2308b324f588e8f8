#!/usr/bin/env bash
# The amortisation recipe at GPU scale in one call, for a lent GPU (minutes of it): grow the gradient cache once,
# then run several variants side by side on the one GPU (each is small beside it), and leave their generators,
# curves and logs where the device tool brings them back.
#
#   variants (name:kind[:extra arguments for every stage]), kind = three (stages 1-3 from scratch) or stage3
#   (stage 3 alone, from the shipped default):
#     VARIANTS="gpu:three gpu-wide:three:--model.widths=[32,64,128,256] gpu-s3:stage3" (default: these and a
#     stage-3-only variant at batch 64)
#   device run, carry [data/photos, runs/val-teacher-lama-tiny.safetensors, .whl]:
#     bash scripts/gpu_amortise.sh    # OUT (set by the device tool) receives one export per variant, logs.tar.gz
#                                     # (timeline, logs, each stage's metrics.csv) and best.tar (val's chosen steps)
#   the next call (session 30's plan): one stage-3 run given the whole card, from the shipped default, to see
#   whether the share climbs on towards 0.80 (session 29: +0.01 per 1000 steps of batch 16 at the end, a quarter
#   of the card each); --trainer.precision=bf16-mixed as a further extra argument runs too (checked on the CPU,
#   session 30), its speed and its effect on the share unmeasured:
#     CACHE_TIME=1 S3_ONLY=00:00:08:30 WORKERS=12 VARIANTS="gpu-s3long:stage3" bash scripts/gpu_amortise.sh
#   on this CPU, as a check of the script itself (seconds per stage):
#     WHEELS=none PYTHON=.venv/bin/python DEVICE=cpu COUNT=64 CACHE=runs/gc-check SUFFIX=-check S1=00:00:00:20 S2=00:00:00:20 S3=00:00:00:20 \
#         S3_ONLY=00:00:00:20 OUT=runs/gpu-check bash scripts/gpu_amortise.sh
#   (12 minutes at 2 cores, session 39; the batch-64 variant needs about 17 GB at 256 px and a 24 GiB machine kills
#   it beside the other three: the timeline then says FAILED for it and the call returns the other three exports)
#
# The device image lacks kornia, jsonargparse and omegaconf: carry them as wheels in .whl, which
# scripts/gpu_wheels.sh fills here, at this checkout's versions, before the first call; the script installs
# whatever .whl holds. Without wandb there it logs to CSV (LOGGER=csv, the default when wandb is missing):
# runs/NAME/NAME/version_0/metrics.csv, copied to the logs as NAME-metrics.csv.
# Every stage checkpoints under runs/ and each variant copies its export to OUT as it finishes, so a call cut
# short still returns the others.
# Budget the times so that the whole call ends inside the device tool's 10-minute command limit.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder that comes back}
DEVICE=${DEVICE:-cuda}
COUNT=${COUNT:-16384}              # gradient-cache entries (grows the cache, resumable)
CACHE_TIME=${CACHE_TIME:-80}       # seconds at most for growing it: the shards written by then are used
S1=${S1:-00:00:01:20}              # wall time of the supervised stage
S2=${S2:-00:00:02:30}              # ... of the end-to-end stage at 128 px
S3=${S3:-00:00:01:40}              # ... of the end-to-end stage at 256 px
S3_ONLY=${S3_ONLY:-00:00:07:00}    # ... of a stage-3-only variant
S3_SEED=${S3_SEED:-1}              # its training crops: not seed 0's, which the shipped default trained on
B1=${B1:-64} B2=${B2:-16} B3=${B3:-16}               # batch sizes of the three stages
VAL1=${VAL1:-500} VAL2=${VAL2:-400} VAL3=${VAL3:-200}  # steps between validations in each stage
WORKERS=${WORKERS:-3}                # data workers per run (four runs share 16 cores)
VARIANTS=${VARIANTS:-"gpu:three gpu-wide:three:--model.widths=[32,64,128,256] gpu-s3:stage3
    gpu-s3-b64:stage3:--data.batch_size=64+--model.lr=0.0003"}
PY=${PYTHON:-python3}
for v in $VARIANTS; do  # a misspelt kind would otherwise never be launched, silently
    IFS=: read -r _ kind _ <<< "$v"
    case $kind in three|stage3) ;; *) echo "gpu_amortise.sh: variant '$v': kind must be three or stage3" >&2; exit 2;; esac
done
SUFFIX=${SUFFIX:-}                 # run names get it, so that a check never touches the real runs
CACHE=${CACHE:-runs/gradient-cache-gpu}
export WANDB_MODE=offline PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT" runs
WHEELS=${WHEELS:-.whl}             # a folder of wheels to install first (the check below: none)
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
[ "$DEVICE" = cpu ] && ACCEL=cpu || ACCEL=gpu
LOGGER=${LOGGER:-$($PY -c "import wandb" 2>/dev/null && echo wandb || echo csv)}
LOGS=runs/gpu-logs$SUFFIX
mkdir -p "$LOGS"
CLI=("$PY" -m trainer.commands.cli)
pg() { "${CLI[@]}" "$@"; }
stamp() { echo "$(date +%T) $*" | tee -a "$LOGS/timeline.log"; }
if [ "$DEVICE" != cpu ]; then  # the card, and how busy the runs keep it (a sample every 15 s)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$LOGS/gpu.txt" 2>&1 || true
    (nvidia-smi dmon -s um -d 15 > "$LOGS/dmon.log" 2>&1 &) || true
fi

# stage NAME STEPS_PER_VAL BATCH ARGS...: one training run, its log and curve under LOGS (and the calling
# variant's EXTRA arguments last)
stage() {
    local name=$1 steps_per_val=$2 batch=$3 rc=0; shift 3
    local logger=()
    [ "$LOGGER" = csv ] && logger=(--trainer.logger=lightning.pytorch.loggers.CSVLogger
                                   --trainer.logger.save_dir="runs/$name")
    # every call trains afresh: a warm machine keeps runs/ from the call before, whose exports came back in its OUT,
    # and a fit refuses to start beside another run's checkpoints
    rm -rf "runs/$name"
    stamp "start $name"
    pg train --config configs/generator/lama-tiny.yaml "$@" --run_name "$name" --trainer.accelerator "$ACCEL" \
        --data.batch_size "$batch" --data.samples_per_epoch $((steps_per_val * batch)) \
        --data.num_workers "$WORKERS" --trainer.enable_progress_bar false "${logger[@]}" "${EXTRA[@]}" \
        > "$LOGS/$name.log" 2>&1 || rc=$?
    cp runs/"$name"/*/version_0/metrics.csv "$LOGS/$name-metrics.csv" 2>/dev/null || true
    [ "$rc" = 0 ] && stamp "done $name" || { stamp "FAILED $name (exit $rc)"; return 1; }
}

# variant NAME KIND [EXTRA]: EXTRA holds arguments for every stage, joined by '+'; they come last and win
variant() {
    local name=$1$SUFFIX kind=$2 from=checkpoints/generator-lama-tiny.safetensors
    local EXTRA=()
    [ -n "${3:-}" ] && IFS=+ read -r -a EXTRA <<< "$3"
    local pre=(--config configs/generator/lama-tiny-pretrain.yaml) amo=(--config configs/generator/lama-tiny-amortised.yaml)
    local s3=("${amo[@]}" --config configs/generator/lama-tiny-256.yaml)
    if [ "$kind" = three ]; then
        stage "$name-s1" "$VAL1" "$B1" "${pre[@]}" --data.gradient_cache "$CACHE" --trainer.max_time "$S1" || return 1
        stage "$name-s2" "$VAL2" "$B2" "${amo[@]}" --data.gradient_cache "$CACHE" \
            --model.init_from "runs/$name-s1/$name-s1.safetensors" --trainer.max_time "$S2" || return 1
        stage "$name-s3" "$VAL3" "$B3" "${s3[@]}" --model.init_from "runs/$name-s2/$name-s2.safetensors" \
            --trainer.max_time "$S3" || return 1
    else
        stage "$name-s3" "$VAL3" "$B3" "${s3[@]}" --model.init_from "$from" --data.train_seed "$S3_SEED" \
            --trainer.max_time "$S3_ONLY" || return 1
    fi
    cp "runs/$name-s3/$name-s3.safetensors" "$OUT/$name.safetensors"
    # the step val chose, in case it is not the last: a tar of the small ones (the device tool brings back 8 files)
    local best
    best=$(ls runs/"$name"-s3/checkpoints/best-share-*.ckpt 2>/dev/null | head -n 1)
    [ -n "$best" ] && pg train export --ckpt_path "$best" --out "$BEST/$name-$(basename "${best%.ckpt}").safetensors" \
        --overwrite >> "$LOGS/$name-s3.log" 2>&1 && stamp "exported $best"
}

BEST=runs/gpu-best$SUFFIX
mkdir -p "$BEST"
launch() {  # launch KIND: every variant of that kind, in the background
    for v in $VARIANTS; do
        IFS=: read -r name kind extra <<< "$v"
        [ "$kind" = "$1" ] && { variant "$name" "$kind" "$extra" & pids+=($!); }
    done
    return 0
}
pids=()
launch stage3   # these need no cache: they start at once

stamp "cache: growing $CACHE to $COUNT entries, $CACHE_TIME s at most"
timeout "$CACHE_TIME" "${CLI[@]}" gradient-cache --out "$CACHE" --count "$COUNT" --device "$DEVICE" \
    --batch-size 64 > "$LOGS/cache.log" 2>&1 || stamp "cache: stopped at the time limit (whole shards are kept)"
stamp "cache: $(ls "$CACHE" | grep -c safetensors) shards"

launch three
for p in "${pids[@]}"; do wait "$p" || true; done

# the curves (metrics.csv of each stage) and logs, one file: the device tool brings back at most 8
tar -czf "$OUT/logs.tar.gz" -C runs "$(basename "$LOGS")"
find "$BEST" -name '*.safetensors' -size -6M | sed 's|.*/||' | tar -cf "$OUT/best.tar" -C "$BEST" -T -
stamp "done: $(ls "$OUT" | tr '\n' ' ')"
