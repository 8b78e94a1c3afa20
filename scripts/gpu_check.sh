#!/usr/bin/env bash
# Issue 14's measurements in one prepared run on the GPU machine: the benchmark, the gpu recipe (trained and evaluated)
# and the compare grid, with nvidia-smi and the log. Results land in $OUT (JSON, CSV, Markdown, PNG, metrics; model
# weights are moved out, except the gpu recipe's, which stays for promotion if it is under 50 MB).
#
# On the device machine (see ../shared/device/README.md): fetch the wheels into .whl/ with the two packages the project
# needs beyond the README's set (`bash ../shared/device/fetch_wheels.sh .whl tabulate==0.10.0 accelerate==1.16.0`: the
# leaderboard's Markdown, and what fastai.distributed imports), copy the data into .data/, carry both, and run from the
# project root:
#   OUT=$OUT bash scripts/gpu_check.sh            # defaults: DATA=.data/chest_xray_224 DEVICE=cuda GRID=configs/studies/compare.yaml
# One device command may run 10 minutes at most: STEPS picks the parts, so the work can be split over two calls
# (the same OUT folder name each time; each call's $OUT comes back separately), e.g. STEPS="bench recipe", then STEPS=grid.
# Before a device session, rehearse it on the CPU in a Python holding only what that machine has (about 3 minutes):
#   .venv/bin/python scripts/rehearse_gpu_machine.py tabulate==0.10.0 accelerate==1.16.0
# CPU dry run on tiny data in the project's own venv (tests/test_gpu_script.py runs one):
#   DEVICE=cpu DATA=../shared/data/chest_xray_sample GRID=configs/studies/compare_tiny.yaml ARCHS=cnn \
#   BENCH_ARGS="--img_size 64 --n_train 64 --epochs 1 --steps 2 --bs 32" RECIPE_ARGS="--arch cnn --epochs 1 --img_size 64 --bs 32" \
#   OUT=/tmp/gpu-dry-run bash scripts/gpu_check.sh
set -euo pipefail
OUT=${OUT:-reports/gpu/$(date +%F)}
DATA=${DATA:-.data/chest_xray_224}
DEVICE=${DEVICE:-cuda}
GRID=${GRID:-configs/studies/compare.yaml}
ARCHS=${ARCHS:-resnet18 vit_tiny_patch16_224 cnn cnn_deep}
BENCH_ARGS=${BENCH_ARGS:-}
RECIPE_ARGS=${RECIPE_ARGS:-}
STEPS=${STEPS:-bench recipe grid}
for s in $STEPS; do case $s in bench|recipe|grid) ;; *) echo "unknown step '$s': STEPS takes bench, recipe, grid" >&2; exit 2;; esac; done
PYTHON=${PYTHON:-python3}
export HF_HUB_OFFLINE=1
# the project's own commit for every record: the device gets a copy without .git (git_state would otherwise see none, or
# the commit of whatever repository surrounds it); write it here with `git rev-parse HEAD > .source_commit` and carry it
export PNEUMONIA_SOURCE_COMMIT=${PNEUMONIA_SOURCE_COMMIT:-$(cat .source_commit 2>/dev/null || true)}

if [ -d .whl ] && ! "$PYTHON" -c "import fastai" 2>/dev/null; then      # the device machine has no fastai: install the wheels
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
  "$PYTHON" -m ipykernel install --user --name python3 >/dev/null
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
# every module the steps import, checked in seconds rather than found missing minutes into the run
"$PYTHON" -c "import fastai.vision.all, accelerate, timm, papermill, ipykernel, yaml, scipy, sklearn, safetensors, tabulate, pneumonia_nb.experiments, pneumonia_nb.bench" \
  || { echo "gpu_check: a module is missing (above); fetch its wheel into .whl/ (see the header)" >&2; exit 3; }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
# the project's commands without an install, through the same shim pip writes for a console script: pn COMMAND ARGS...
pn() { local shim; shim=$(mktemp --suffix=.py); printf 'import sys\nfrom pneumonia_nb.cli import %s\nsys.exit(%s())\n' "$1" "$1" > "$shim"
       "$PYTHON" "$shim" "${@:2}"; }
stamp() { echo "== $(date +%T) $*"; }
step() { [[ " $STEPS " == *" $1 "* ]]; }

stamp "machine"; (nvidia-smi || echo "no nvidia-smi: $DEVICE") | tee "$OUT/nvidia-smi.txt"
"$PYTHON" -c "import json, sys, pneumonia_nb.core as c; print(json.dumps(c.run_environment(c.resolve_device(sys.argv[1])), indent=1, default=str))" "$DEVICE" > "$OUT/environment.json"
if step bench; then
  stamp "bench: $ARCHS"
  pn pneumonia_bench --data "$DATA" --device "$DEVICE" --arch $ARCHS --out "$OUT/bench.json" $BENCH_ARGS
fi
if step recipe; then
  stamp "gpu recipe"
  run=$(pn pneumonia_train --recipe gpu --data "$DATA" --device "$DEVICE" --runs "$OUT/recipe" --no_mlflow $RECIPE_ARGS | tail -1)
  pn pneumonia_eval --model "$run" --data "$DATA" --device "$DEVICE"
fi
grid_failed=
if step grid; then   # no MLflow on the device machine: the run folders and the leaderboard files hold every result
  stamp "grid $GRID"
  pn pneumonia_experiments "$GRID" --data "$DATA" --out "$OUT/compare" --no_mlflow || grid_failed=1
fi
stamp "weights out of $OUT (except the recipe's when under 50 MB)"
mkdir -p /tmp/gpu-weights
find "$OUT" -name '*.safetensors' ! -path "$OUT/recipe/*" -exec mv --backup=numbered -t /tmp/gpu-weights {} +
find "$OUT/recipe" -name '*.safetensors' -size +50M -exec mv --backup=numbered -t /tmp/gpu-weights {} + 2>/dev/null || true
if [ -n "$grid_failed" ]; then stamp "grid failed or incomplete: see the error.json files under $OUT/compare"; exit 1; fi
stamp "done: $OUT"
