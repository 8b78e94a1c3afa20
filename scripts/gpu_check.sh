#!/usr/bin/env bash
# Issues 14 and 33: the GPU measurements in one prepared run on the GPU machine: the benchmark, the gpu recipe (trained
# and evaluated), the compare grid, and the one-call study (a grid within a time budget, scored on a labelled site
# folder, packed as what comes back), with nvidia-smi and the log. Results land in $OUT (JSON, CSV, Markdown, PNG;
# weights are moved out, except the gpu recipe's when under 50 MB, and the study's best few inside its archive).
#
# Here, first (scripts/device_pack.py; the wheel list is derived from settings.ini's requirements, minus what the
# machine has, so a new dependency cannot be forgotten):
#   .venv/bin/python scripts/device_pack.py wheels                                   # .whl/, for Python 3.12 (17 MiB)
#   .venv/bin/python scripts/device_pack.py data ../shared/data/chest_xray_224 --dest .data/a --part_mib 28
#   mkdir -p .data/b && mv .data/a/chest_xray_224.tar.01 .data/b/
#   .venv/bin/python scripts/device_pack.py data ../shared/data/chest_xray_site --dest .data/b
#   git rev-parse HEAD > .source_commit
#   .venv/bin/python scripts/device_pack.py check --carry .whl .data/a .source_commit   # what travels: 62.2 MiB of 64
#   .venv/bin/python scripts/device_pack.py check --carry .data/b .source_commit        # 32.3 MiB of 64
#   .venv/bin/python scripts/rehearse_gpu_machine.py      # the same wheels in a Python holding only the machine's packages
# The checkout (17 MiB), the wheels and chest_xray_224 (43 MiB as one tar) do not fit one call's 64 MiB, so they travel
# over two calls made one after the other (the machine stays warm 30 s between calls and keeps /tmp):
#   1. carry .whl .data/a .source_commit:  STEPS=stage bash scripts/gpu_check.sh    (installs the wheels, keeps the part)
#   2. carry .data/b .source_commit:       OUT=$OUT STEPS=study STUDY=configs/studies/gpu_study.yaml \
#        DATA=.data/chest_xray_224.tar SITE=.data/b/chest_xray_site.tar bash scripts/gpu_check.sh
# A DATA or SITE ending in .tar is unpacked, from the file or from its parts NAME.tar.NN in .data/ and /tmp/pn-parts/.
# Defaults: DEVICE=cuda GRID=configs/studies/compare.yaml STEPS="bench recipe grid". One device command may run 10
# minutes at most: STEPS picks the parts (bench, recipe, grid, study; stage), so the work can be split over calls (each
# call's $OUT comes back separately). The study trains for STUDY_SECONDS (default 420) at most: the points finished by
# then are scored (a grid resumes where it stopped when run again with the same STUDY_DIR on the same machine).
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
STUDY=${STUDY:-configs/studies/gpu_study.yaml}
STUDY_SECONDS=${STUDY_SECONDS:-420}
STUDY_DIR=${STUDY_DIR:-/tmp/pn-study}   # outside $OUT: only the packed archive comes back
STUDY_K=${STUDY_K:-3}
for s in $STEPS; do case $s in bench|recipe|grid|study|stage) ;; *) echo "unknown step '$s': STEPS takes bench, recipe, grid, study, stage" >&2; exit 2;; esac; done
if [[ " $STEPS " == *" study "* && -z "${SITE:-}" ]]; then echo "the study step needs SITE: a labelled site folder (or its .tar)" >&2; exit 2; fi
PYTHON=${PYTHON:-python3}
step() { [[ " $STEPS " == *" $1 "* ]]; }
export HF_HUB_OFFLINE=1
# the project's own commit for every record: the device gets a copy without .git (git_state would otherwise see none, or
# the commit of whatever repository surrounds it); write it here with `git rev-parse HEAD > .source_commit` and carry it
export PNEUMONIA_SOURCE_COMMIT=${PNEUMONIA_SOURCE_COMMIT:-$(cat .source_commit 2>/dev/null || true)}

if [ -d .whl ] && ! "$PYTHON" -c "import fastai" 2>/dev/null; then      # the device machine has no fastai: install the wheels
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  touch /tmp/site/.installed_by_gpu_check
fi
# installed by this call, or by the staging call before it on the same (warm) machine
if [ -f /tmp/site/.installed_by_gpu_check ]; then
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
  "$PYTHON" -m ipykernel install --user --name python3 >/dev/null
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
# every module of the package and what the steps import, checked in seconds rather than found missing minutes into the run
"$PYTHON" scripts/import_all.py \
  || { echo "gpu_check: a module is missing (above); its wheel is not in .whl/ (scripts/device_pack.py wheels)" >&2; exit 3; }
# data travels as one tar file (thousands of small films cost far more than their bytes), or as its parts NAME.tar.NN
# over two calls (STEPS=stage keeps the first call's parts in /tmp/pn-parts for the next); unpacked here
if step stage; then mkdir -p /tmp/pn-parts && find .data -name '*.tar*' -exec cp -t /tmp/pn-parts {} + && ls -l /tmp/pn-parts; exit 0; fi
untar() {
  [[ $1 == *.tar ]] || { echo "$1"; return; }
  mkdir -p /tmp/pn-data
  if [ -f "$1" ]; then tar xf "$1" -C /tmp/pn-data
  else   # each part once, in order, from this call's .data or the staging call's /tmp/pn-parts
    find .data /tmp/pn-parts -name "$(basename "$1").[0-9][0-9]" -printf '%f %p\n' 2>/dev/null \
      | sort -u -k1,1 | cut -d' ' -f2 | xargs cat | tar xf - -C /tmp/pn-data
  fi && echo "/tmp/pn-data/$(basename "$1" .tar)"
}
DATA=$(untar "$DATA"); [ -n "${SITE:-}" ] && SITE=$(untar "$SITE")
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
# the project's commands without an install, through the same shim pip writes for a console script: pn COMMAND ARGS...
shim() { local f; f=$(mktemp --suffix=.py); printf 'import sys\nfrom pneumonia_nb.cli import %s\nsys.exit(%s())\n' "$1" "$1" > "$f"; echo "$f"; }
pn() { "$PYTHON" "$(shim "$1")" "${@:2}"; }
stamp() { echo "== $(date +%T) $*"; }

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
if step study; then   # stops training at the budget; what finished is scored on the site films and packed
  stamp "study $STUDY (at most $STUDY_SECONDS s of training), scored on $SITE"
  timeout "$STUDY_SECONDS" "$PYTHON" "$(shim pneumonia_experiments)" "$STUDY" --data "$DATA" --out "$STUDY_DIR" --no_mlflow || stamp "study: the grid stopped (budget reached, or a point failed: see $STUDY_DIR)"
  "$PYTHON" scripts/study_pack.py --study "$STUDY_DIR" --site "$SITE" --out "$OUT" --k "$STUDY_K" --device "$DEVICE"
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
