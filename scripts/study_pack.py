"""The one-call study's last part (issue 33, item 5): score every finished run of a grid on a labelled site folder,
and pack what must come back from the GPU machine within its limits on returned files.

    python scripts/study_pack.py --study /tmp/pn-study --site SITE_DIR --out $OUT [--k 3] [--max_mib 56]

Each run is scored on the site's films: ROC-AUC with a 95% interval from a bootstrap over patients
(`ranking_study.patient_bootstrap`), and the specificity at the highest threshold keeping site sensitivity >= 0.95.
`study.tar` holds `scores.csv` and every run's JSON and CSV files, then the K runs that rank the site films best as
promotable folders with their weights in fp16 (half the bytes; a promoted model loads them as float32), as many as
fit under --max_mib; it is split into parts of 15 MiB (`study.tar.00`, ...; `cat study.tar.* > study.tar` at home),
since the machine returns at most 8 files of 16 MiB. Which films chose what: the runs' thresholds were chosen on
their validation films; the site films rank the runs here, so the best run's figures are optimistic.
"""
from __future__ import annotations
import argparse, io, sys, tarfile
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save

sys.path.insert(0, str(Path(__file__).parent))
from ranking_study import patient_bootstrap   # noqa: E402
from pneumonia_nb.core import binary_metrics, threshold_for   # noqa: E402
from pneumonia_nb.data import DataRoot   # noqa: E402
from pneumonia_nb.models import load_model   # noqa: E402
from pneumonia_nb.evaluate import predict_images   # noqa: E402
from pneumonia_nb.site import site_films   # noqa: E402

PART_MIB = 15
KEEP = ('model.json', 'config.json', 'valid_predictions.csv')   # with the weights: what pneumonia_promote reads


def finished_runs(study:Path) -> list[Path]:
    "Run folders under `study` whose training finished (weights and metrics written)."
    return sorted(p.parent for p in study.rglob('metrics.json')
                  if p.parent.name != 'eval' and (p.parent/'model.safetensors').is_file())


def score(run:Path, films:pd.DataFrame, root:Path, device) -> dict:
    "Site ROC-AUC [patients] and specificity at site sensitivity >= 0.95 of one run, with what it is."
    model, spec = load_model(run)
    p = predict_images(model, spec, root, films, device=device)
    y = (films.label == 'PNEUMONIA').to_numpy().astype(int)
    auc, lo, hi = patient_bootstrap(y, p, films.patient.to_numpy())
    spec95 = binary_metrics(y, p, threshold_for(y, p, 'sensitivity:0.95'))['specificity']
    cfg = (run/'config.json').read_json()
    return dict(run=str(run), arch=spec['arch'], img_size=spec['img_size'], seed=cfg['config'].get('seed'),
                epochs=cfg['config'].get('epochs'), wall_s=cfg.get('wall_seconds'),
                valid_roc_auc=(run/'metrics.json').read_json().get('roc_auc'), site_roc_auc=auc, site_roc_auc_lo=lo,
                site_roc_auc_hi=hi, site_specificity_at_sens95=spec95)


def fp16(path:Path) -> bytes:
    "The safetensors file at `path` with its floating-point tensors in half precision."
    return save({k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()})


def _add(tar:tarfile.TarFile, name:str, data:bytes):
    info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))


def pack(study:Path, scores:pd.DataFrame, out:Path, k:int, max_mib:float) -> list[Path]:
    "study.tar (scores, every run's JSON/CSV, the best `k` runs' weights in fp16 that fit) split into 15 MiB parts."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        _add(tar, 'study/scores.csv', scores.to_csv(index=False).encode())
        for f in sorted(f for f in study.rglob('*') if f.is_file() and f.suffix in ('.json', '.csv')):
            tar.add(f, arcname=f'study/runs/{f.relative_to(study)}')
        kept = 0
        for run in scores.sort_values('site_roc_auc', ascending=False).run.head(k).map(Path):
            weights = fp16(run/'model.safetensors')
            if buf.tell() + len(weights) > max_mib * 2**20: break
            _add(tar, f'study/best/{run.name}/model.safetensors', weights)
            for f in KEEP: tar.add(run/f, arcname=f'study/best/{run.name}/{f}')
            kept += 1
    data, step = buf.getvalue(), PART_MIB * 2**20
    out.mkdir(parents=True, exist_ok=True)
    parts = [out/f'study.tar.{i:02d}' for i in range(-(-len(data) // step))]
    for i, part in enumerate(parts): part.write_bytes(data[i * step:(i + 1) * step])
    print(f"study.tar: {len(data) / 2**20:.1f} MiB in {len(parts)} part(s), {len(scores)} runs scored, the weights of "
          f"the best {kept} (fp16)")
    return parts


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--study', required=True, help='the grid\'s output folder (outside $OUT)')
    p.add_argument('--site', required=True, help='labelled site films: NORMAL/ and PNEUMONIA/')
    p.add_argument('--out', required=True, help='folder the parts are written to ($OUT)')
    p.add_argument('--k', type=int, default=3, help='best runs whose weights come back')
    p.add_argument('--max_mib', type=float, default=56, help='the archive\'s limit (the machine returns 64 MiB in all)')
    p.add_argument('--device', default='cpu')
    a = p.parse_args()
    runs = finished_runs(Path(a.study))
    if not runs: sys.exit(f"study_pack: no finished run under {a.study}")
    films = site_films(a.site)
    root = DataRoot.find(a.site).path
    with torch.inference_mode():
        scores = pd.DataFrame([score(r, films, root, torch.device(a.device)) for r in runs])
    print(scores.drop(columns='run').round(4).to_string(index=False))
    pack(Path(a.study), scores, Path(a.out), a.k, a.max_mib)


if __name__ == '__main__': main()
