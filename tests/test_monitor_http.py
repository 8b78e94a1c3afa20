"Monitoring over real HTTP (issue 12): `pneumonia_serve` with the committed default model flags foreign inputs, fills its window, and `pneumonia_drift` on its request log tells a validation window from a shifted one."
import io, json, shutil
from pathlib import Path

import httpx
import pandas as pd
import pytest
from PIL import Image, ImageEnhance
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, run_cli, serving
from pneumonia_nb.monitor import STAT_FEATURES

DEFAULT = ROOT/'models'/'default'


def jpeg(img):
    buf = io.BytesIO(); img.save(buf, 'JPEG', quality=95); return buf.getvalue()


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    "`pneumonia_serve` with models/default on a free 127.0.0.1 port, logging to a temporary file with the embeddings (for the MMD test)."
    log = tmp_path_factory.mktemp('monitor')/'requests.jsonl'
    with serving('--model', DEFAULT, '--log', log, '--window', '100', '--log_embeddings') as (url, _): yield url, log


def send(url, images):
    "POST `images` ((name, bytes) pairs) four to a request; return every result."
    out = []
    for i in range(0, len(images), 4):
        r = httpx.post(f'{url}/predict', files=[('files', (n, b, 'image/jpeg')) for n, b in images[i:i + 4]], timeout=60)
        assert r.status_code == 200, r.text
        out += r.json()['results']
    return out


def gauges(url):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(httpx.get(f'{url}/metrics').text) for s in f.samples}


def test_guard_verdicts_monitor_and_drift_reports_from_the_request_log(served, shared, tmp_path):
    url, log = served
    orig = {f.name: f for f in (shared/'chest_xray_orig').rglob('*.jpeg')}   # validation films as a hospital sends them: real aspect
    known = pd.Series([p for p in pd.read_csv(DEFAULT/'reference.csv').path if Path(p).name in orig]).sample(100, random_state=0)
    films = [orig[Path(p).name] for p in known]

    noise = Image.effect_noise((256, 256), 60)
    foreign = send(url, [('noise.jpeg', jpeg(noise)), ('negative.jpeg', jpeg(Image.eval(Image.open(films[0]).convert('L'), lambda v: 255 - v)))])
    assert [r['in_distribution'] for r in foreign] == [False, False] and all(r['ood_score'] > 0 for r in foreign)
    assert gauges(url)[('pneumonia_out_of_distribution_total', ())] == 2

    validation = send(url, [(f.name, f.read_bytes()) for f in films])
    assert sum(r['in_distribution'] for r in validation) >= 90
    calm = httpx.get(f'{url}/monitor').json()
    assert calm['window'] == 100 and calm['inputs_seen'] == 102 and calm['drift']['verdict'] == 'no drift'
    shutil.copy(log, tmp_path/'validation.jsonl')
    aspect = {f['feature']: f for f in calm['drift']['image_statistics']}['aspect']
    assert aspect['tested'] and not aspect['drift']   # issue 36: the reference knows the films' real aspect, so the cue is watched
    squashed = [(Path(p).name, (shared/'chest_xray_224'/p).read_bytes()) for p in known]   # the same films as the model was trained on them

    bright = send(url, [(f.name, jpeg(ImageEnhance.Brightness(Image.open(f).convert('L')).enhance(1.25))) for f in films])
    shifted = httpx.get(f'{url}/monitor').json()
    assert shifted['drift']['verdict'] == 'drift' and len(bright) == 100
    g = gauges(url)
    assert g[('pneumonia_drift_detected', ())] == 1 and g[('pneumonia_monitor_window_images', ())] == 100
    assert g[('pneumonia_drift_p_value', (('test', 'embeddings'),))] < 0.05

    for name, logfile, verdict in (('validation', tmp_path/'validation.jsonl', 'no drift'), ('shifted', log, 'drift')):
        out = tmp_path/name
        proc = run_cli('pneumonia_drift', '--model', DEFAULT, '--log', logfile, '--window', '100', '--out', out)
        summary = json.loads((out/'drift.json').read_text())
        assert summary['verdict'] == verdict and summary['window'] == 100, proc.stdout
        assert bool(summary['embeddings']['p_value'] < 0.025 or summary['drifted_statistics']) == (verdict == 'drift') and len(summary['image_statistics']) == len(STAT_FEATURES)
        assert (out/'drift.html').read_text().startswith('<!doctype html>') and verdict in proc.stdout
    again = run_cli('pneumonia_drift', '--model', DEFAULT, '--log', log, '--out', tmp_path/'shifted', check=False)
    assert again.returncode != 0 and 'already holds a drift report' in again.stderr

    send(url, squashed)   # the same films squashed to 224 x 224: their aspect is the cue the data's README warns about
    window = httpx.get(f'{url}/monitor').json()['drift']
    assert window['verdict'] == 'drift' and 'aspect' in window['drifted_statistics'], window['drifted_statistics']


def test_a_log_from_another_reference_is_refused(tmp_path, served):
    url, log = served
    other = tmp_path/'model'
    shutil.copytree(DEFAULT, other)
    ref = json.loads((other/'reference.json').read_text()); ref['id'] = 'another'
    (other/'reference.json').write_text(json.dumps(ref))
    proc = run_cli('pneumonia_drift', '--model', other, '--log', log, '--out', tmp_path/'r', check=False)
    assert proc.returncode != 0 and 'written with reference' in proc.stderr and not (tmp_path/'r').exists()
