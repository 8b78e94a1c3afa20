"""An ensemble of two tiny models in every command (issue 31): `pneumonia_ensemble` makes the folder; `pneumonia_eval` and
`pneumonia_predict` agree on it to 1e-5; `pneumonia_promote` ships it with its card; the service answers with it over
HTTP; `pneumonia_calibrate` refits its decision on the site films; the PACS watcher reports with it."""
import io, json

import httpx
import pandas as pd
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from conftest import run_cli, serving, stored_reports
from pneumonia_nb.core import sha256_file
from pneumonia_nb.images import expand_paths, film_to_dicom
from pneumonia_nb.train import TrainConfig, train_run


@pytest.fixture(scope='module')
def ensemble(shared, tmp_path_factory):
    "Two tiny members of different architecture, input size and normalisation, and the ensemble `pneumonia_ensemble` made of them."
    tmp, sample = tmp_path_factory.mktemp('ensemble'), shared/'chest_xray_sample'
    train_run(TrainConfig(arch='cnn', data=str(sample), epochs=1, img_size=48, bs=32, seed=1), tmp/'a', progress=False)
    train_run(TrainConfig(arch='resnet10t', data=str(sample), epochs=1, img_size=64, bs=32, seed=2, norm='image'), tmp/'b', progress=False)
    out = run_cli('pneumonia_ensemble', '--models', tmp/'a', tmp/'b', '--out', tmp/'pair').stdout
    assert out.strip().splitlines()[-1] == str(tmp/'pair') and out.startswith('ensemble of 2: validation ROC-AUC'), out
    return tmp


def test_eval_equals_predict_and_promote_ships_it(ensemble, shared, tmp_path):
    pair, test = ensemble/'pair', shared/'chest_xray_sample'/'test'
    run_cli('pneumonia_eval', '--model', pair, '--data', shared/'chest_xray_sample', '--n_boot', '50')
    run_cli('pneumonia_predict', test, '--model', pair, '--out', tmp_path/'p.csv')
    ev, pr = (pd.read_csv(f).assign(name=lambda d: d.path.map(lambda p: p.split('/')[-1])).set_index('name')
              for f in (pair/'eval'/'predictions.csv', tmp_path/'p.csv'))
    assert len(ev) == len(pr) == 40 and (ev.prob_pneumonia - pr.prob_pneumonia[ev.index]).abs().max() < 1e-5
    assert (ev.predicted == pr.label[ev.index]).all()
    assert (pair/'eval'/'gradcam.png').is_file()   # Grad-CAM of an ensemble: the mean of its members' maps (05_evaluate)
    run_cli('pneumonia_promote', '--model', pair, '--name', 'pair', '--models', tmp_path/'models', '--no_mlflow')
    card = (tmp_path/'models'/'pair'/'README.md').read_text()
    assert 'An ensemble of 2 networks, the mean of their logits' in card and '1. `cnn`, 48 px' in card and '2. `resnet10t`, 64 px, image normalisation' in card
    assert sha256_file(ensemble/'a'/'model.safetensors')[:16] in card


def test_served_and_calibrated(ensemble, shared, tmp_path):
    pair, films = ensemble/'pair', sorted(expand_paths([shared/'chest_xray_sample'/'test']))[:3]
    run_cli('pneumonia_predict', *films, '--model', pair, '--out', tmp_path/'p.csv')
    direct = pd.read_csv(tmp_path/'p.csv')
    with serving('--model', pair, '--log', '') as (url, _):
        r = httpx.post(f'{url}/predict', files=[('files', (f.name, f.read_bytes(), 'image/jpeg')) for f in films], timeout=60)
        info = httpx.get(f'{url}/model').json()
    assert r.status_code == 200 and [x['prob_pneumonia'] for x in r.json()['results']] == pytest.approx(direct.prob_pneumonia.tolist(), abs=1e-5)
    assert info['arch'] == 'ensemble', info
    out = tmp_path/'site'
    said = run_cli('pneumonia_calibrate', '--model', pair, '--data', shared/'chest_xray_site', '--out', out, '--refer', '0.1', '--adapt', 'adabn').stdout
    spec = json.loads((out/'model.json').read_text())
    assert spec['arch'] == 'ensemble' and len(spec['members']) == 2 and spec['threshold']['chosen_on'] != 'valid'
    assert spec['adaptation']['method'] == 'adabn' and 'adapted (adabn): BatchNorm running statistics re-estimated' in said, said
    assert sha256_file(out/'model.safetensors') != sha256_file(pair/'model.safetensors')   # both members' BatchNorm statistics are the site's


def test_the_watcher_reports_with_it(ensemble, orthanc, shared, tmp_path):
    films = [film_to_dicom(Image.open(f)) for f in sorted(expand_paths([shared/'chest_xray_sample'/'test']))[:2]]
    client = DICOMwebClient(orthanc)
    client.store_instances([pydicom.dcmread(io.BytesIO(f)) for f in films])
    run_cli('pneumonia_pacs', '--url', orthanc, '--model', ensemble/'pair', '--state', tmp_path/'s.json', '--log', '', '--since', '20000101', '--once')
    for i, f in enumerate(films): (tmp_path/f'{i}.dcm').write_bytes(f)
    run_cli('pneumonia_predict', tmp_path/'0.dcm', tmp_path/'1.dcm', '--model', ensemble/'pair', '--out', tmp_path/'p.csv')
    direct = dict(zip([str(pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID) for f in films], pd.read_csv(tmp_path/'p.csv').prob_pneumonia))
    assert {uid: r['prob_pneumonia'] for uid, r in stored_reports(client).items()} == pytest.approx(direct, abs=1e-6)
