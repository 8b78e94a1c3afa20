"""Which layers of a model should the monitor work in? 09_monitor's protocol, run on several candidate embeddings.

The monitor (`09_monitor`) builds its out-of-distribution guard and its drift tests on an *embedding*: by default the
input of the model's last linear layer. For `cnn_deep` that is 256 globally pooled numbers, and issue 31 measured that
they let a third of inverted films through the guard. This script runs the notebook's protocol unchanged on candidate
embeddings of one model (the pooled outputs of its last stages, side by side; average and max pooling) and writes one
table: the guard's flag rate on foreign inputs (inverted and rotated films, photographs, text pages, noise, blanks) and
on chest films it should accept (validation out of fold, training, the test sample, raw sample films), and the share of
100-film windows called drift for each synthetic shift of `09_monitor` (40 windows of unshifted films: false alarms).

Which films chose what: the guard and the drift space are made from the model's 516 validation films (as
`pneumonia_reference` makes them); the foreign images are synthetic or from scikit-image; training films are 100 drawn
from outside validation; no site or held-back test film is used.

    python scripts/embedding_study.py --model runs/RUN --data ../shared/data/chest_xray_224 --out reports/embedding-study/DATE
"""
from __future__ import annotations
import argparse, io, json, time
from pathlib import Path

import numpy as np
import pandas as pd
import skimage.data as skd
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps
from sklearn.decomposition import PCA

from pneumonia_nb.images import read_xray
from pneumonia_nb.models import ModelFolder, model_pipeline
from pneumonia_nb.monitor import PCA_COMPONENTS, Guard, drift_tests, image_stats
from pneumonia_nb.core import apply_temperature

# the candidates for an nn.Sequential model such as cnn_deep (stages 0-4, pool, flatten, dropout, linear 8):
# (module name, what): 'in' the module's input, 'avg'/'max'/'std' its output pooled over the image (mean, max, spread)
CANDIDATES = {
    'last linear layer input (today)': [('8', 'in')],
    'stages 4-5, average-pooled': [('3', 'avg'), ('4', 'avg')],
    'stages 3-5, average-pooled': [('2', 'avg'), ('3', 'avg'), ('4', 'avg')],
    'stages 2-5, average-pooled': [('1', 'avg'), ('2', 'avg'), ('3', 'avg'), ('4', 'avg')],
    'stages 1-5, average-pooled': [(s, 'avg') for s in '01234'],
    'stage 5, average- and max-pooled': [('4', 'avg'), ('4', 'max')],
    'stages 4-5, average- and max-pooled': [('3', 'avg'), ('3', 'max'), ('4', 'avg'), ('4', 'max')],
    'stages 1-5, average- and std-pooled': [(s, k) for s in '01234' for k in ('avg', 'std')],
}


def embeddings(model, spec, images, taps, bs=64):
    "Probabilities (uncalibrated) and, per tap set in `taps`, the embeddings of `images`, in one pass."
    names = sorted({n for t in taps.values() for n, _ in t})
    seen = {}
    def hook(name):
        def keep(m, inp, out):
            x = inp[0] if isinstance(inp, tuple) else inp
            seen[name] = (x.detach().float().flatten(1), out.detach().float())
        return keep
    hooks = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    dl = model_pipeline(spec, None, bs).test_dl(pd.DataFrame({'image': images}))
    probs, embs = [], {k: [] for k in taps}
    try:
        with torch.inference_mode():
            for (x,) in dl:
                probs.append(model(x.as_subclass(torch.Tensor)).softmax(1)[:, 1])
                for k, t in taps.items():
                    parts = []
                    for n, what in t:
                        inp, out = seen[n]
                        pooled = dict(avg=lambda o: o.mean((2, 3)), max=lambda o: o.amax((2, 3)), std=lambda o: o.std((2, 3)))
                        parts.append(inp if what == 'in' else pooled[what](out))
                    embs[k].append(torch.cat(parts, 1))
    finally:
        for h in hooks: h.remove()
    return torch.cat(probs).numpy(), {k: torch.cat(v).numpy() for k, v in embs.items()}


def foreign_images(data: Path, val_paths: set, rng) -> tuple[dict, list]:
    "09_monitor's foreign inputs and its 100 training films."
    pool = sorted(f for f in (data/'train').rglob('*.jpeg') if str(f.relative_to(data)) not in val_paths)
    train = [read_xray(p) for p in rng.choice(pool, 100, replace=False)]
    def gray(name):
        a = getattr(skd, name)()
        a = a[..., :3] if a.ndim == 3 else a
        return Image.fromarray(a if a.dtype == np.uint8 else (a / a.max() * 255).astype(np.uint8)).convert('L')
    def page(i):
        words = 'patient name date of birth referral chest radiograph findings impression signature ward'.split()
        im, font = Image.new('L', (600, 800), 255), ImageFont.load_default(size=14 + i)
        d = ImageDraw.Draw(im)
        for y in range(30, 780, 22 + i): d.text((30, y), ' '.join(rng.choice(words, 8)), fill=0, font=font)
        return im
    photos = ('astronaut', 'brick', 'camera', 'cat', 'cell', 'chelsea', 'clock', 'coffee', 'coins', 'grass', 'gravel',
              'horse', 'hubble_deep_field', 'immunohistochemistry', 'logo', 'microaneurysms', 'moon', 'retina', 'rocket')
    foreign = dict(
        photograph=[gray(n) for n in photos],
        noise=[Image.fromarray(rng.integers(0, 256, (224, 224), dtype=np.uint8)) for _ in range(10)]
              + [Image.fromarray(np.clip(rng.normal(128, 40, (224, 224)), 0, 255).astype(np.uint8)) for _ in range(10)],
        blank=[Image.fromarray(np.clip(v + rng.normal(0, 2, (224, 224)), 0, 255).astype(np.uint8))
               for v in np.linspace(10, 245, 20)],
        inverted=[ImageOps.invert(im) for im in train[:50]],
        rotated_90=[im.transpose(Image.Transpose.ROTATE_90) for im in train[50:]],
        text_page=[page(i) for i in range(18)] + [Image.fromarray(skd.page()), Image.fromarray(skd.text())])
    return foreign, train


def jpeg(im, quality=8):
    buf = io.BytesIO(); im.save(buf, 'JPEG', quality=quality); return Image.open(io.BytesIO(buf.getvalue())).convert('L')

SHIFTS = {'none': lambda im: im,
          'brightness x1.25, contrast x0.8': lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.25)).enhance(0.8),
          'blur (radius 2)': lambda im: im.filter(ImageFilter.GaussianBlur(2)),
          'rotation 90°': lambda im: im.transpose(Image.Transpose.ROTATE_90),
          'JPEG quality 8': jpeg,
          'down-scaled to 48 px': lambda im: im.resize((48, 48)).resize(im.size)}


def drift_share(emb: dict, tables: dict, shift: str, threshold: float, windows: int, size: int = 100) -> float:
    "09_monitor's window protocol: reference from half the validation films, the window from the other half, shifted."
    called = []
    for seed in range(windows):
        r = np.random.default_rng(seed)
        order = r.permutation(len(emb['none'])); ref_idx, pool = order[:len(order) // 2], order[len(order) // 2:]
        pca = PCA(PCA_COMPONENTS, svd_solver='full').fit(emb['none'][ref_idx])
        cur = r.choice(pool, size, replace=False)
        res = drift_tests(pca.transform(emb['none'][ref_idx]), tables['none'].iloc[ref_idx], pca.transform(emb[shift][cur]),
                          tables[shift].iloc[cur], threshold, seed=seed)
        called.append((res['verdict'] == 'drift', res['embeddings']['drift']))
    return tuple(np.mean(called, 0))


def figure(table: pd.DataFrame, path):
    "The four numbers that decide, per candidate: foreign films flagged, and shifted windows called drift."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cols = {'inverted': 'inverted films flagged', 'photograph': 'photographs flagged',
            'drift: blur (radius 2)': 'blurred windows: drift', 'drift: down-scaled to 48 px': '48-px windows: drift'}
    t = table.set_index('embedding')[list(cols)].rename(columns=cols)
    ax = t.plot.barh(figsize=(8, 5.5), width=0.8)
    ax.axvline(0.9, ls=':', c='grey'); ax.invert_yaxis()
    ax.set(xlabel='share (dotted: 0.9)', xlim=(0, 1.02), ylabel='', title="What the monitor catches, by the embedding read")
    ax.legend(loc='upper center', bbox_to_anchor=(0.3, -0.12), ncol=2, fontsize=8)
    plt.tight_layout(); plt.savefig(path, dpi=100); plt.close()


def study(model_dir, data, out):
    folder = ModelFolder(model_dir); model, spec, decision = folder.load(), folder.spec, folder.decision
    data, rng, started = Path(data), np.random.default_rng(0), time.time()
    vp = pd.read_csv(folder.path/'valid_predictions.csv')
    val = [read_xray(data/p) for p in vp.path]
    foreign, train = foreign_images(data, set(vp.path), rng)
    test = [read_xray(f) for f in sorted((data/'test').rglob('*.jpeg'))]
    sample = [read_xray(f) for f in sorted((data.parent/'chest_xray_sample').rglob('*.jpeg'))]
    taps = CANDIDATES
    ref = embeddings(model, spec, val, taps)[1]
    films = dict(**foreign, training=train, test_sample=test, raw_sample=sample)
    embs = {k: embeddings(model, spec, v, taps)[1] for k, v in films.items()}
    shifted, tables = {}, {}
    for s, f in SHIFTS.items():
        ims = [f(im) for im in val]
        p, e = embeddings(model, spec, ims, taps)
        shifted[s] = e
        tables[s] = pd.DataFrame([image_stats(im) for im in ims]).assign(
            prob_pneumonia=apply_temperature(p, decision['temperature']))
    rows = []
    for name in taps:
        g = Guard(ref[name])
        row = dict(embedding=name, dim=ref[name].shape[1],
                   validation_oof=float((Guard.oof_scores(ref[name]) > g.threshold).mean()))
        row.update({k: float((~g.in_distribution(e[name])).mean()) for k, e in embs.items()})
        for s in SHIFTS:
            verdict, by_emb = drift_share({k: v[name] for k, v in shifted.items()}, tables, s,
                                          decision['threshold']['value'], 40 if s == 'none' else 20)
            row[f'drift: {s}'], row[f'by embeddings: {s}'] = float(verdict), float(by_emb)
        rows.append(row); print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out/'embedding_study.csv', index=False)
    figure(table, out/'embedding_study.png')
    (out/'embedding_study.md').write_text(
        f"# Embedding study: {folder.path} ({spec['arch']}, {spec['img_size']} px, weights "
        f"{folder.weights_sha256[:12]})\n\nGuard: share flagged (foreign kinds should be >= 0.95; chest films low). "
        f"Drift: share of 100-film windows called drift (none: false alarms, 40 windows; shifts: 20 windows).\n\n"
        + table.set_index('embedding').T.to_markdown(floatfmt='.3f') + f"\n\n{time.time() - started:.0f} s\n")
    print(table.set_index('embedding').T.to_markdown(floatfmt='.3f'))


if __name__ == '__main__':
    a = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    a.add_argument('--model', required=True); a.add_argument('--data', required=True); a.add_argument('--out', required=True)
    o = a.parse_args()
    study(o.model, o.data, o.out)
