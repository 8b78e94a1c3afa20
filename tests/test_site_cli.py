"`pneumonia_calibrate` on the site films, from the project root with relative paths (issue 19): the site decision (and its triage, issue 32) is what `pneumonia_eval`, `pneumonia_predict`, the service and the PACS report then use; the refusals."
import io, json, os
from pathlib import Path

import httpx
import pandas as pd
import pydicom
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, run_cli, serving
from pneumonia_nb.core import sha256_file
from pneumonia_nb.images import film_to_dicom
from pneumonia_nb.pacs import film_result
from pneumonia_nb.sr import result_sr, sr_result
from pneumonia_nb.predict import Detector


@pytest.fixture(scope='module')
def site(shared, tmp_path_factory):
    "The site folder (relative to the project root) and a model calibrated on it."
    rel = os.path.relpath(shared/'chest_xray_site', ROOT)
    out = tmp_path_factory.mktemp('models')/'site'
    proc = run_cli('pneumonia_calibrate', '--model', 'models/default', '--data', rel, '--out', out, '--rule', 'sensitivity:0.95', '--refer', '0.05', cwd=ROOT)
    warned = [line for line in proc.stderr.splitlines() if 'the reference profile has 103 films' in line]
    assert len(warned) == 1 and warned[0].startswith('pneumonia_calibrate: warning: '), proc.stderr   # one plain line (issue 36)
    assert 'UserWarning' not in proc.stderr and 'warnings.warn' not in proc.stderr, proc.stderr
    return rel, out, proc.stdout


def test_calibrate_reports_and_writes_a_site_model(site):
    rel, out, stdout = site
    assert '103 site films (68 patients: 38 NORMAL, 65 PNEUMONIA)' in stdout and 'patient-grouped folds' in stdout and str(out) == stdout.strip().splitlines()[-1]
    assert f'next: pneumonia_eval --model {out}' in stdout and 'as shipped, at its threshold 0.6785 (chosen on valid): accuracy 0.883 [' in stdout   # issue 36
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
             (('--data', rel, '--out', out), 'already exists'),
             (('--data', rel, '--out', tmp_path/'d', '--refer', '0.02'), '--refer 0.02: 38 NORMAL films cannot support it'),
             (('--data', rel, '--out', tmp_path/'e', '--refer', '0'), 'must lie between 0 and 1'),
             (('--data', rel, '--out', tmp_path/'f', '--refer', '0.03', '--folds', '3'), 'in cross-validation')]
    for args, why in cases:
        proc = run_cli('pneumonia_calibrate', '--model', ROOT/'models'/'default', *args, check=False, cwd=ROOT)
        assert proc.returncode != 0 and why in proc.stderr and 'Traceback' not in proc.stderr, (why, proc.stderr[-500:])
        assert len([line for line in proc.stderr.splitlines() if line.startswith('pneumonia_calibrate: ') and 'warning' not in line]) == 1, proc.stderr
    assert not any((tmp_path/n).exists() for n in 'abcdef') and not list(tmp_path.glob('.*partial'))


def test_triage_decisions_agree_everywhere(site, tmp_path):
    "Prediction, evaluation, the service (and its counter) and the PACS report give each site film the same three-way decision (issue 32)."
    rel, out, stdout = site
    tri = json.loads((out/'model.json').read_text())['triage']
    assert (tri['alpha'], tri['library'], tri['chosen_on'], tri['n_normal']) == (0.05, 'crepes', 'site films (chest_xray_site)', 38) and 'triage at alpha 0.05' in stdout
    run_cli('pneumonia_predict', rel, '--model', out, '--out', tmp_path/'p.csv', cwd=ROOT)
    run_cli('pneumonia_eval', '--model', out, '--data', rel, '--out', tmp_path/'eval', '--n_boot', '50', cwd=ROOT)
    pred = pd.read_csv(tmp_path/'p.csv')
    pred.index = pred.path.map(lambda p: Path(p).name)
    ev = pd.read_csv(tmp_path/'eval'/'predictions.csv')
    ev.index = ev.path.map(lambda p: Path(p).name)
    ev = ev.loc[pred.index]
    assert set(pred.decision) == {'NORMAL', 'PNEUMONIA', 'REFER'} and (pred.label.isin(['NORMAL', 'PNEUMONIA'])).all()
    inside = pred.in_distribution.astype(bool)
    cuts = [json.loads((out/'model.json').read_text())['threshold']['value'], tri['pneumonia_from'], tri['normal_upto']]
    clear = inside & pred.prob_pneumonia.map(lambda p: min(abs(p - c) for c in cuts) > 1e-6)   # a fitting film sits on each cut-off:
    assert (pred.decision[clear] == ev.decision[clear]).all() and (pred.decision[~inside] == 'REFER').all()   # batches round it either way
    report = json.loads((tmp_path/'eval'/'metrics.json').read_text())
    assert report['at_triage']['referral_rate']['value'] == pytest.approx((ev.decision == 'REFER').mean()) and (tmp_path/'eval'/'triage.png').is_file()
    chosen = pred.groupby('decision').head(3)   # three films of each decision
    with serving('--model', out, '--log', '') as (url, _):
        body = httpx.post(f'{url}/predict', files=[('files', (Path(p).name, (ROOT/p).read_bytes(), 'image/jpeg')) for p in chosen.path]).json()
        text = httpx.get(f'{url}/metrics').text
    assert [r['decision'] for r in body['results']] == chosen.decision.tolist()
    counted = {s.labels['decision']: s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == 'pneumonia_decisions_total'}
    assert counted == {'NORMAL': 3, 'PNEUMONIA': 3, 'REFER': 3}
    det = Detector.load(out, device='cpu')
    for p, decision in zip(chosen.path, chosen.decision):
        film = pydicom.dcmread(io.BytesIO(film_to_dicom(Image.open(ROOT/p))))
        assert sr_result(result_sr(film, film_result(det, film), det.model_id))['decision'] == decision, p   # what the PACS would store
