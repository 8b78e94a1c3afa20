"`pneumonia_predict` on real films: the same probabilities as `pneumonia_eval` (issue 11, acceptance 2), and the guard's verdict on each (issue 12)."
import numpy as np
import pandas as pd
from PIL import Image

from conftest import ROOT, run_cli


def test_predict_equals_eval_and_names_bad_files(shared, tiny_run, tmp_path):
    run = tiny_run.path
    out = run_cli('pneumonia_predict', shared/'chest_xray_sample'/'test', '--model', run, '--out', tmp_path/'p.csv').stdout
    assert out.strip().splitlines()[-1].startswith('40 images: ')
    pred = pd.read_csv(tmp_path/'p.csv')
    ev = pd.read_csv(run/'eval'/'predictions.csv')
    ev['path'] = [str(shared/'chest_xray_sample'/p) for p in ev.path]
    both = pred.merge(ev, on='path', suffixes=('', '_eval'))
    assert len(both) == 40 and (both.prob_pneumonia - both.prob_pneumonia_eval).abs().max() < 1e-5
    (tmp_path/'x.jpeg').write_text('not a film')
    mixed = run_cli('pneumonia_predict', tmp_path/'x.jpeg', shared/'chest_xray_sample'/'test'/'NORMAL', '--model', run).stdout
    assert 'not an image (no known image format)' in mixed and '21 images: ' in mixed
    none = run_cli('pneumonia_predict', tmp_path/'x.jpeg', '--model', run, check=False)
    assert none.returncode != 0 and 'no image could be read' in none.stderr
    again = run_cli('pneumonia_predict', tmp_path/'x.jpeg', '--model', run, '--out', tmp_path/'p.csv', check=False)
    assert again.returncode != 0 and 'already exists' in again.stderr and len(pd.read_csv(tmp_path/'p.csv')) == 40


def test_every_prediction_carries_the_guard_verdict(shared, tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)).save(tmp_path/'noise.png')
    out = run_cli('pneumonia_predict', tmp_path/'noise.png', shared/'chest_xray_sample'/'test', '--model', ROOT/'models'/'default',
                  '--out', tmp_path/'p.csv').stdout
    pred = pd.read_csv(tmp_path/'p.csv')
    assert pred.columns[3:6].tolist() == ['decision', 'in_distribution', 'ood_score'] and pred.in_distribution.notna().all()
    assert not pred.set_index('path').in_distribution[str(tmp_path/'noise.png')]
    assert pred.in_distribution.mean() > 0.8 and 'out of distribution' in out.strip().splitlines()[-1]
