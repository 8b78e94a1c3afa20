"""Issue 31: which detector ranks a new hospital's films best? One table, on the 103 site films.

    .venv/bin/python scripts/ranking_study.py --runs runs/issue31 --out reports/ranking-study/2026-12-05
    .venv/bin/python scripts/ranking_study.py --runs runs/deep --out reports/ranking-study/2026-12-07 --picture '' \
        --kinds ensemble        (three cnn_deep seeds of the cpu_deep recipe and their ensembles, nothing else)
    .venv/bin/python scripts/ranking_study.py --runs /nonexistent --out reports/ranking-study/2026-12-07-shipped \
        --picture '' --kinds tta,adaptation        (TTA and adaptation on the shipped default alone)
The ensemble groups pair models/default with the resnet10t seeds as in 2026-12-05, when the default was that recipe.

The candidates were trained first (2 CPU cores; wall times in each run's config.json):
    pneumonia_train --recipe cpu --data ../shared/data/chest_xray_224 --seed 1 --runs runs/issue31   (and --seed 2)
    pneumonia_train --recipe cpu --arch cnn_deep --img_size 128 --data ../shared/data/chest_xray_224 --seed 42 --runs runs/issue31
the ensembles are made here by pneumonia_ensemble's make_ensemble (into runs/issue31/ensemble-*).

Rows: single models (models/default and the same recipe's other seeds; cnn_deep at 128 px), ensembles made by
pneumonia_ensemble (logits or calibrated log-odds averaged), test-time augmentation (TTA) and adaptation to the site's
UNLABELLED films (AdaBN, TENT, self-training on confident pseudo-labels: the labels are hidden from the adaptation).
Each row gives the site ROC-AUC with a 95% interval from a bootstrap over PATIENTS (films of one child move
together), its difference from models/default with a paired patient bootstrap interval, and the accuracy,
sensitivity and specificity of a site decision (Youden's J; pneumonia_calibrate's default is now sensitivity:0.95) estimated by 5-fold
patient-grouped cross-validation. Seed-to-seed noise: the spread of the recipe's three seeds.

Which films chose what: the members were trained on the 4716/516 split of the official train data and their
thresholds chosen on the 516 validation films; everything in this table is measured on the 103 site films, so the
site films CHOOSE among the rows (the winner's figures here are optimistic). The 481 held-back films judge, outside.
"""
import copy, json, shutil, time
from pathlib import Path

import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from fastcore.script import call_parse
from sklearn.metrics import roc_auc_score
from torch import nn

from pneumonia_nb.core import apply_temperature, binary_metrics
from pneumonia_nb.data import DataRoot
from pneumonia_nb.ensemble import make_ensemble
from pneumonia_nb.evaluate import predict_images
from pneumonia_nb.models import ModelFolder, load_model, model_pipeline
from pneumonia_nb.site import adapt_batchnorm, adapt_to_site, cross_validate, cv_report, site_films


def patient_bootstrap(y, p, groups, p0=None, n_boot:int=2000, seed:int=0) -> tuple[float, float, float]:
    "ROC-AUC of `p` (minus that of `p0`, paired, when given) and its 95% interval, resampling patients."
    y, groups = np.asarray(y), np.asarray(groups)
    stat = lambda i: roc_auc_score(y[i], p[i]) - (roc_auc_score(y[i], p0[i]) if p0 is not None else 0)
    members = {g: np.flatnonzero(groups == g) for g in np.unique(groups)}
    keys, rng, reps = list(members), np.random.default_rng(seed), []
    for _ in range(n_boot):
        i = np.concatenate([members[keys[k]] for k in rng.integers(0, len(keys), len(keys))])
        if 0 < y[i].sum() < len(i): reps.append(stat(i))
    return stat(np.arange(len(y))), *np.quantile(reps, [0.025, 0.975])


def site_batches(spec, root, films, bs=64):
    return list(model_pipeline(spec, root, bs).test_dl(films[['path']]))


def adapt_tent(model:nn.Module, batches, steps:int=10, lr:float=1e-3) -> nn.Module:
    "TENT (Wang et al., ICLR 2021): BatchNorm's affine parameters moved to lower the entropy of the predictions on `batches` (normalised by their own statistics); then AdaBN, so each film's answer does not depend on its batch."
    m = copy.deepcopy(model).train().requires_grad_(False)
    bns = [x for x in m.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
    params = [p for bn in bns for p in (bn.weight, bn.bias) if p is not None]
    for p in params: p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    for s in range(steps):
        x = batches[s % len(batches)][0].as_subclass(torch.Tensor)
        prob = m(x).softmax(1)
        loss = -(prob * prob.clamp_min(1e-8).log()).sum(1).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    return adapt_batchnorm(m.eval().requires_grad_(False), batches)


def adapt_self_training(model:nn.Module, batches, frac:float=0.25, epochs:int=5, lr:float=1e-4) -> nn.Module:
    "Self-training: the site films the model scores lowest (`frac` of them) taken as NORMAL and highest as PNEUMONIA (pseudo-labels; the true labels are not used), the network fine-tuned on them from AdaBN's site statistics (kept fixed)."
    m = adapt_batchnorm(model, batches)
    x = torch.cat([b[0].as_subclass(torch.Tensor) for b in batches])
    with torch.no_grad(): order = m(x).softmax(1)[:, 1].argsort()
    k = max(1, int(frac * len(order)))
    xs, ts = x[torch.cat([order[:k], order[-k:]])], torch.cat([torch.zeros(k, dtype=torch.long), torch.ones(k, dtype=torch.long)])
    m.train()
    for bn in (b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm)): bn.eval()   # keep the site statistics
    opt, g = torch.optim.Adam(m.parameters(), lr=lr), torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for j in torch.randperm(len(xs), generator=g).split(32):
            xb = xs[j].flip(-1) if torch.rand(1, generator=g) < 0.5 else xs[j]   # a cheap second view
            loss = nn.functional.cross_entropy(m(xb), ts[j])
            opt.zero_grad(); loss.backward(); opt.step()
    return m.eval()


def score(name, y, groups, pu, p0, kind, **extra) -> dict:
    auc, lo, hi = patient_bootstrap(y, pu, groups)
    d, dlo, dhi = patient_bootstrap(y, pu, groups, p0) if p0 is not None else (0.0, 0.0, 0.0)
    cv = cv_report(y, cross_validate(y, pu, groups).predicted)
    row = dict(name=name, kind=kind, site_roc_auc=auc, site_roc_auc_lo=lo, site_roc_auc_hi=hi, d_auc=d, d_auc_lo=dlo, d_auc_hi=dhi,
               **{f'cv_{k}': v['value'] for k, v in cv.items()}, **{f'cv_{k}_lo': v['ci95'][0] for k, v in cv.items()},
               **{f'cv_{k}_hi': v['ci95'][1] for k, v in cv.items()}, **extra)
    print(f"{name:42s} AUC {auc:.4f} [{lo:.3f}, {hi:.3f}]  vs default {d:+.4f} [{dlo:+.3f}, {dhi:+.3f}]  CV acc {row['cv_accuracy']:.3f} "
          f"sens {row['cv_sensitivity']:.3f} spec {row['cv_specificity']:.3f}", flush=True)
    return row


def timed_probs(model_dir, films, root, tta=False):
    model, spec = load_model(model_dir)
    t = time.perf_counter(); p = predict_images(model, spec, root, films, tta=tta); dt = time.perf_counter() - t
    return p, 1000 * dt / len(films), model, spec


def as_shipped(model_dir, y, pu) -> dict:
    "Sensitivity and specificity on the site films at the model's stored (validation-chosen) temperature and threshold."
    d = ModelFolder(model_dir).decision
    m = binary_metrics(y, apply_temperature(pu, d['temperature']), d['threshold']['value'])
    return dict(shipped_threshold=d['threshold']['value'], shipped_sensitivity=m['sensitivity'], shipped_specificity=m['specificity'])


def describe(model_dir) -> str:
    "Architecture and input size from the model's own card, so a rerun after a new default says which network it is."
    card = ModelFolder(model_dir).spec
    return f"{card['arch']} {card['img_size']} px"


def valid_auc(d):
    return ModelFolder(d).spec.get('valid_metrics', {}).get('roc_auc')


def figure(table:pd.DataFrame, path):
    "Each row's site ROC-AUC and its paired difference from models/default, with 95% patient-bootstrap intervals, coloured by kind."
    fig, (ax, dx) = plt.subplots(1, 2, figsize=(11, 0.36 * len(table) + 1.6), sharey=True, gridspec_kw=dict(width_ratios=[3, 2]))
    colours = dict(single='tab:blue', capacity='tab:purple', ensemble='tab:green', tta='tab:orange', adaptation='tab:red')
    yy = np.arange(len(table))[::-1]
    for yv, r in zip(yy, table.itertuples()):
        ax.errorbar(r.site_roc_auc, yv, xerr=[[r.site_roc_auc - r.site_roc_auc_lo], [r.site_roc_auc_hi - r.site_roc_auc]], fmt='o', color=colours[r.kind], capsize=3)
        dx.errorbar(r.d_auc, yv, xerr=[[r.d_auc - r.d_auc_lo], [r.d_auc_hi - r.d_auc]], fmt='o', color=colours[r.kind], capsize=3)
    ax.axvline(table.site_roc_auc.iloc[0], color='grey', ls='--', lw=1); dx.axvline(0, color='grey', ls='--', lw=1)
    ax.set_yticks(yy, table.name.str.replace(r' \(\d{8}-\d{6}-[\w-]+\)', '', regex=True), fontsize=8)
    ax.set_xlabel('site ROC-AUC (95% interval, patients resampled)'); dx.set_xlabel('minus models/default (paired)')
    dx.xaxis.set_major_locator(plt.MaxNLocator(4))   # small differences print long tick labels
    for kind, c in colours.items(): ax.scatter([], [], color=c, label=kind)
    ax.legend(loc='lower left', fontsize=7)
    fig.suptitle("Ranking a new hospital's films: the 103 site films choose among the rows (optimistic); the 481 held-back films judge", fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def tta_row(default, films, root, y, groups, p0, ms0) -> dict:
    "The default over four views (TTA), and what each extra view costs."
    pt, mst, *_ = timed_probs(default, films, root, tta=True)
    return score('models/default + TTA (4 views)', y, groups, pt, p0, 'tta', ms_per_film=mst, ms_per_extra_view=(mst - ms0) / 3,
                 **as_shipped(default, y, pt))


def adaptation_rows(model0, spec0, deep, films, root, y, groups, p0) -> list[dict]:
    "Adaptation on the site's unlabelled films: the default by AdaBN, TENT and self-training; each cnn_deep by AdaBN."
    rows, batches = [], site_batches(spec0, root, films)
    for name, adapt in (('AdaBN', adapt_batchnorm), ('TENT (10 steps, lr 1e-3)', adapt_tent), ('self-training (25% per class, 5 epochs)', adapt_self_training)):
        t = time.perf_counter(); m = adapt(model0, batches); secs = time.perf_counter() - t
        p = predict_images(m, spec0, root, films)
        rows.append(score(f"models/default + {name}", y, groups, p, p0, 'adaptation', adapt_seconds=secs))
    for d in deep:   # the larger network, adapted the way pneumonia_calibrate --adapt offers
        model, spec = load_model(d)
        p = predict_images(adapt_to_site(model, spec, root, films, 'adabn')[0], spec, root, films)
        cfg = json.loads((d/'config.json').read_text())['config']
        rows.append(score(f"{cfg['arch']} {cfg['img_size']} px, seed {cfg['seed']} + AdaBN", y, groups, p, p0, 'adaptation'))
    return rows


@call_parse
def main(runs:str='runs/issue31', # Folder with the candidate runs (train them first; see the closing note)
         site:str='../shared/data/chest_xray_site', # The site's labelled films (they choose)
         out:str='reports/ranking-study/2026-12-05', # Report folder: table.csv, ranking.png, README.md
         default:str='models/default', # The shipped model every row is compared with
         picture:str='nbs/images/ranking_study.png', # A copy of the figure for the notebook (13_site); '' for none
         kinds:str='ensemble,tta,adaptation'): # Which rows beyond the single models: any of ensemble, tta, adaptation
    torch.manual_seed(0); torch.set_num_threads(2)
    out, runs = Path(out), Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    films, root = site_films(site), DataRoot.find(site).path
    y, groups = (films.label == 'PNEUMONIA').to_numpy().astype(int), films.patient.to_numpy()
    done = lambda pattern: sorted(d for d in runs.glob(pattern) if (d/'model.json').is_file())
    seeds, deep = done('*-resnet10t-s*'), done('*-cnn_deep-s*')
    rows, probs = [], {}
    p0, ms0, model0, spec0 = timed_probs(default, films, root)
    probs['default'] = p0
    rows.append(score(f'models/default ({describe(default)})', y, groups, p0, None, 'single', ms_per_film=ms0, valid_roc_auc=valid_auc(default), **as_shipped(default, y, p0)))
    for d in seeds + deep:
        p, ms, *_ = timed_probs(d, films, root)
        probs[d.name] = p
        cfg = json.loads((d/'config.json').read_text())['config']
        rows.append(score(f"{cfg['arch']} {cfg['img_size']} px, seed {cfg['seed']} ({d.name})", y, groups, p, p0, 'single' if d in seeds else 'capacity',
                          ms_per_film=ms, valid_roc_auc=valid_auc(d), **as_shipped(d, y, p)))
    kinds = set(kinds.split(',')) if kinds else set()
    # ensembles
    groups_of = {f'{len(seeds) + 1} seeds': [Path(default), *seeds]}
    if deep: groups_of |= {'default + cnn_deep 128': [Path(default), deep[0]]}
    if deep and seeds: groups_of |= {f'{len(seeds) + 1} seeds + cnn_deep 128': [Path(default), *seeds, deep[0]]}
    if len(deep) > 1: groups_of |= {f'{len(deep)} cnn_deep 128 seeds': deep, f'default + {len(deep)} cnn_deep 128 seeds': [Path(default), *deep]}
    for gname, members in groups_of.items():
        if len(members) < 2 or 'ensemble' not in kinds: continue
        split = next(iter(seeds or deep))/'split.csv'
        for combine in ('logits', 'calibrated'):
            folder = runs/f"ensemble-{gname.replace(' ', '_').replace('+', 'and')}-{combine}"
            if not (folder/'model.json').is_file():
                make_ensemble(members, folder, data='../shared/data/chest_xray_224', combine=combine, split=split)
            p, ms, *_ = timed_probs(folder, films, root)
            probs[folder.name] = p
            rows.append(score(f"ensemble: {gname} ({combine})", y, groups, p, p0, 'ensemble', ms_per_film=ms, valid_roc_auc=valid_auc(folder), folder=str(folder),
                              **as_shipped(folder, y, p)))
    if 'tta' in kinds: rows.append(tta_row(default, films, root, y, groups, p0, ms0))
    if 'adaptation' in kinds: rows += adaptation_rows(model0, spec0, deep, films, root, y, groups, p0)
    table = pd.DataFrame(rows)
    table.round(4).to_csv(out/'table.csv', index=False)
    for kind in ('single', 'capacity'):
        s = table[table.kind.eq(kind)]
        if len(s) > 1: print(f"seed-to-seed ({kind}): site ROC-AUC of {len(s)} seeds {s.site_roc_auc.min():.4f}-{s.site_roc_auc.max():.4f} (sd {s.site_roc_auc.std():.4f})")
    figure(table, out/'ranking.png')
    if picture: shutil.copyfile(out/'ranking.png', picture)
    print(out)
