"""Issue 21: what several processes buy on this machine. Prints the figures and writes them to reports/scale-out/.

    .venv/bin/python scripts/scale_out.py                       # both measurements, on ../shared/data
    .venv/bin/python scripts/scale_out.py --skip_grid --epochs 2 # training only

1. One training as 1 and as 2 processes (`pneumonia_train --processes N`, DDP, gloo on the CPU), the same recipe,
   global batch and seed, on the full re-split training data at 224 px (`--data`); the figure is the time of the
   epochs (history.csv: training and validation), beside the whole run's `wall_seconds` from config.json (split,
   loaders, the decoded-image cache, the final predictions; papermill's or torchrun's start-up left out), and the
   validation ROC-AUC. The 1-process run goes first and fills the cache if it is cold.
2. The tiny grid (configs/studies/compare_tiny.yaml: 4 points) one point after another, then on a one-machine Ray instance
   with 2 points at a time (`--backend ray`); the figure is the command's wall time, start-up included.
Runs go to a temporary folder; only the report is kept.
"""
import json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path

import pandas as pd
from fastcore.script import call_parse

from pneumonia_nb.core import git_state, shared_data

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]

def timed(*args) -> tuple[float, str]:
    "Run a project command; its wall seconds and standard output (stops the script if it fails)."
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    if out.returncode: sys.exit(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout

def training(data, recipe:str, epochs:int, tmp:Path) -> list[dict]:
    rows = []
    for n in (1, 2):
        _, out = timed('pneumonia_train', '--recipe', recipe, '--epochs', epochs, '--data', data, '--runs', tmp/f'p{n}', '--no_mlflow', '--quiet', '--processes', n)
        run = Path(out.strip().splitlines()[-1])
        cfg, m = json.loads((run/'config.json').read_text()), json.loads((run/'metrics.json').read_text())
        epochs_s = sum(int(mm) * 60 + int(ss) for mm, ss in (t.split(':') for t in pd.read_csv(run/'history.csv')['time']))
        rows.append(dict(processes=n, wall_seconds=epochs_s, run_seconds=cfg['wall_seconds'], valid_roc_auc=round(m['roc_auc'], 4),
                         torch_threads=cfg['environment']['torch_threads']))
        print(rows[-1], flush=True)
    return rows

def grids(sample, tmp:Path) -> list[dict]:
    rows = []
    for backend in ('local', 'ray'):
        secs, _ = timed('pneumonia_experiments', ROOT/'configs'/'studies'/'compare_tiny.yaml', '--data', sample, '--out', tmp/backend, '--no_mlflow', '--backend', backend)
        rows.append(dict(backend=backend, points=4, wall_seconds=round(secs, 1)))
        print(rows[-1], flush=True)
    return rows

@call_parse
def main(data:str=None, # Training data for the DDP figure (default: ../shared/data/chest_xray_224)
         recipe:str='cpu', # Recipe trained as 1 and 2 processes
         epochs:int=2, # Epochs of that training
         skip_training:bool=False, # Leave out the DDP figure
         skip_grid:bool=False, # Leave out the grid figure
         out:str='reports/scale-out'): # Report folder
    shared = shared_data()
    data = data or shared/'chest_xray_224'
    report = dict(host=platform.node(), cores=os.cpu_count(), commit=git_state(), when=time.strftime('%Y-%m-%d %H:%M'))
    with tempfile.TemporaryDirectory() as tmp:
        if not skip_training: report['training'] = dict(recipe=recipe, epochs=epochs, data=str(data), runs=training(data, recipe, epochs, Path(tmp)))
        if not skip_grid: report['grid'] = dict(file='configs/studies/compare_tiny.yaml', data=str(shared/'chest_xray_sample'), runs=grids(shared/'chest_xray_sample', Path(tmp)))
    for part, key in (('training', 'processes'), ('grid', 'backend')):
        if part in report:
            a, b = report[part]['runs']
            print(f"{part}: {key} {b[key]} took {b['wall_seconds'] / a['wall_seconds']:.2f}x the time of {key} {a[key]}")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out)/'scale_out.json').write_text(json.dumps(report, indent=2))
