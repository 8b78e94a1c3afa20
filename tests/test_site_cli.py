"`pneumonia_calibrate` on the site films, from the project root with relative paths (issue 19): the site decision is what `pneumonia_eval`, `pneumonia_predict` and the service then use; the refusals."
import json, os

import httpx
import pandas as pd
import pytest

from conftest import ROOT, run_cli, serving
from pneumonia_nb.core import sha256_file


@pytest.fixture(scope='module')
def site(shared, tmp_path_factory):
    "The site folder (relative to the project root) and a model calibrated on it."
    rel = os.path.relpath(shared/'chest_xray_site', ROOT)
    out = tmp_path_factory.mktemp('models')/'site'
    proc = run_cli('pneumonia_calibrate', '--model', 'models/default', '--data', rel, '--out', out, '--rule', 'sensitivity:0.95', cwd=ROOT)
    warned = [line for line in proc.stderr.splitlines() if 'the reference profile has 103 films' in line]
    assert len(warned) == 1 and warned[0].startswith('pneumonia_calibrate: warning: '), proc.stderr   # one plain line (issue 36)
    assert 'UserWarning' not in proc.stderr and 'warnings.warn' not in proc.stderr, proc.stderr
    return rel, out, proc.stdout


def test_calibrate_reports_and_writes_a_site_model(site):
    rel, out, stdout = site
    assert '103 site films (68 patients: 38 NORMAL, 65 PNEUMONIA)' in stdout and 'patient-grouped folds' in stdout and str(out) == stdout.strip().splitlines()[-1]
    assert f'next: pneumonia_eval --model {out}' in stdout and 'as shipped, at its threshold 0.6961 (chosen on valid): accuracy 0.864 [' in stdout   # issue 36
    spec, shipped = (json.loads((d/'model.json').read_text()) for d in (out, ROOT/'models'/'default'))
    assert spec['threshold']['rule'] == 'sensitivity:0.95' and (spec['threshold']['n_normal'], spec['threshold']['n_pneumonia']) == (38, 65)
    assert {k: v for k, v in spec['validation_decision']['threshold'].items() if k != 'source'} == shipped['threshold'] and spec['temperature'] != shipped['temperature']
    assert sha256_file(out/'model.safetensors') == sha256_file(ROOT/'models'/'default'/'model.safetensors')   # weights untouched
    ref = json.loads((out/'reference.json').read_text())
    assert ref['n'] == 103   # monitoring follows the site: the reference is made from its films
    report = json.loads((out/'calibration.json').read_text())
    assert report['cross_validated']['sensitivity']['value'] >= 0.9 and report['as_shipped']['specificity']['value'] < report['cross_validated']['specificity']['value']   # the site decision spares more healthy films


def test_eval_predict_and_service_use_the_site_decision(site, tmp_path):
    rel, out, _ = site
    threshold = json.loads((out/'model.json').read_text())['threshold']['value']
    run_cli('pneumonia_eval', '--model', out, '--data', rel, '--out', tmp_path/'eval', '--n_boot', '50', cwd=ROOT)
    assert json.loads((tmp_path/'eval'/'metrics.json').read_text())['threshold']['value'] == threshold
    run_cli('pneumonia_predict', rel, '--model', out, '--out', tmp_path/'p.csv', cwd=ROOT)
    preds = pd.read_csv(tmp_path/'p.csv')
    assert len(preds) == 103 and (preds.threshold == threshold).all()
    assert ((preds.prob_pneumonia >= threshold) == (preds.label == 'PNEUMONIA')).all()
    film = next((ROOT/rel/'NORMAL').glob('*.jpeg'))
    with serving('--model', out, '--log', '') as (url, _):
        r = httpx.post(f'{url}/predict', files=[('files', (film.name, film.read_bytes(), 'image/jpeg'))]).json()
    assert r['results'][0]['threshold'] == threshold


def test_refusals(site, shared, tmp_path):
    rel, out, _ = site
    cases = [(('--data', shared/'chest_xray_sample'/'val', '--out', tmp_path/'a'), 'too few films'),
             (('--data', ROOT/'models'/'default', '--out', tmp_path/'b'), 'is a model folder, not labelled films'),
             (('--data', shared/'chest_xray_site'/'NORMAL', '--out', tmp_path/'c'), 'No NORMAL/ and PNEUMONIA/'),
             (('--data', rel, '--out', out), 'already exists')]
    for args, why in cases:
        proc = run_cli('pneumonia_calibrate', '--model', ROOT/'models'/'default', *args, check=False, cwd=ROOT)
        assert proc.returncode != 0 and why in proc.stderr and 'Traceback' not in proc.stderr, (why, proc.stderr[-500:])
    assert not any((tmp_path/n).exists() for n in 'abc')
