"""Issue 19, item 4: score the site-study runs on validation and on the site films, and write the study table.

    .venv/bin/python scripts/site_study.py [--runs runs] [--site ../shared/data/chest_xray_site] [--out configs/studies/site_study.csv]
    .venv/bin/python scripts/site_study.py --add 'new default (12 epochs, valid sensitivity:0.95)=models/default' --rule sensitivity:0.95

Reads the runs of configs/studies/site_study.yaml and site_study_seeds.yaml (train them first with
pneumonia_experiments) and models/default (the shipped 12-epoch recipe). Each row is one model, or an ensemble
(probabilities averaged), scored by `pneumonia_nb.site.transfer_report`: validation at the decision the row's rule
picks there, the site films as shipped (ROC-AUC, accuracy, sensitivity, specificity) and with a site decision
estimated by patient-grouped cross-validation, each with a 95% bootstrap interval, and the aspect-ratio cue among the
site's NORMAL films. The site films CHOOSE here; the 481 held-back official test films are not in the project.
"""
import json
from pathlib import Path

import pandas as pd
import yaml
from fastcore.script import call_parse

from pneumonia_nb.site import transfer_report

VARIANTS = tuple(yaml.safe_load((Path(__file__).parent.parent/'configs'/'studies'/'site_study.yaml').read_text())['variants'])   # the grid's own list

def study_rows(runs:Path) -> dict:
    "Row name -> (model folders, validation rule), for every finished run of the two study grids."
    run = lambda grid, point: runs/grid/point
    rows = {v: ([run('site_study', f'seed42-{v}')], 'youden') for v in VARIANTS}
    rows |= {'base seed 1': ([run('site_study_seeds', 'seed1-base')], 'youden'), 'base seed 2': ([run('site_study_seeds', 'seed2-base')], 'youden'),
             'base, 3 seeds averaged': ([run('site_study', 'seed42-base'), run('site_study_seeds', 'seed1-base'), run('site_study_seeds', 'seed2-base')], 'youden'),
             'base + cnn averaged': ([run('site_study', 'seed42-base'), run('site_study', 'seed42-cnn')], 'youden'),
             'base, valid sensitivity:0.95': ([run('site_study', 'seed42-base')], 'sensitivity:0.95'),
             'previous default (12 epochs)': ([Path('models/default')], 'youden'),
             'previous default, valid sensitivity:0.95': ([Path('models/default')], 'sensitivity:0.95')}
    return {k: v for k, v in rows.items() if all((d/'model.json').is_file() for d in v[0])}

def flat(rep:dict) -> dict:
    "One table row of a transfer report: each metric's value and 95% interval."
    row = dict(threshold=rep['decision']['threshold'], **{f'valid_{k}': rep['valid'][k] for k in ('roc_auc', 'sensitivity', 'specificity')})
    for part, prefix in (('as_shipped', 'site'), ('recalibrated', 'cv')):
        for k, v in rep[part].items(): row |= {f'{prefix}_{k}': v['value'], f'{prefix}_{k}_lo': v['ci95'][0], f'{prefix}_{k}_hi': v['ci95'][1]}
    return row | dict(rho_normal=rep['aspect_rho'])

def minutes(dirs) -> float:
    "Training minutes of the runs (0 where a folder records none, as a promoted model)."
    cfg = lambda d: json.loads((d/'config.json').read_text()) if (d/'config.json').is_file() else {}
    return sum(cfg(d).get('wall_seconds', 0) for d in dirs) / 60

@call_parse
def main(runs:str='runs', # Folder holding site_study/ and site_study_seeds/
         site:str='../shared/data/chest_xray_site', # The site's labelled films (they choose)
         out:str='configs/studies/site_study.csv', # Table to write (with --add: to add a row to)
         n_boot:int=1000, # Bootstrap resamples of each interval
         add:str=None, # 'NAME=DIR[,DIR...]': score only these model folders (an ensemble if several) and add the row to --out
         rule:str='youden'): # With --add: the validation threshold rule of that row (the model's own, e.g. sensitivity:0.95)
    todo = {add.split('=', 1)[0]: ([Path(d) for d in add.split('=', 1)[1].split(',')], rule)} if add else study_rows(Path(runs))
    rows = []
    for name, (dirs, rule) in todo.items():
        rows.append(dict(name=name, rule=rule, minutes=round(minutes(dirs), 1), **flat(transfer_report(dirs, site, rule, n_boot, device='cpu'))))
        print(f"{name:34s} valid AUC {rows[-1]['valid_roc_auc']:.4f}  site AUC {rows[-1]['site_roc_auc']:.3f}  spec as shipped {rows[-1]['site_specificity']:.3f}"
              f"  CV acc {rows[-1]['cv_accuracy']:.3f}  rho {rows[-1]['rho_normal']:.2f}", flush=True)
    table = pd.concat([pd.read_csv(out), pd.DataFrame(rows)]) if add else pd.DataFrame(rows)
    table.round(4).to_csv(out, index=False)
    print(out)
