"""DICOM in and out (issue 24), through the commands and servers a user runs: `pneumonia_predict` and `pneumonia_eval` on
DICOM films written from the sample's real test films, `POST /predict` with `application/dicom` parts, and
`pneumonia_pacs` against a real Orthanc (Debian's `orthanc` and `orthanc-dicomweb`; `.ci/run` installs them)."""
import io, json, os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import pydicom
import pydicom.data
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from conftest import ROOT, run_cli, serving, sr_instances, stored_reports
from pneumonia_nb.images import expand_paths, film_to_dicom

KINDS = ({}, dict(bits=16, monochrome1=True), dict(jpeg=True))   # 12-bit with a window, inverted 16-bit, baseline JPEG: in turn
PATIENT = ('Test^Film', 'TEST-0001', 'ACC0001', '20230101')     # the made-up patient every written film carries


@pytest.fixture(scope='module')
def dicom_films(shared, tmp_path_factory):
    "The sample's 40 test films as DICOM in NORMAL/ and PNEUMONIA/, with the kind each was written as."
    root, kinds = tmp_path_factory.mktemp('dicom')/'films', {}
    for i, f in enumerate(expand_paths([shared/'chest_xray_sample'/'test'])):
        (root/f.parent.name).mkdir(parents=True, exist_ok=True)
        out = root/f.parent.name/f'{f.stem}.dcm'
        out.write_bytes(film_to_dicom(Image.open(f), **KINDS[i % 3]))
        kinds[f.stem] = 'jpeg' if i % 3 == 2 else 'lossless'
    return root, kinds


def test_predict_cli_on_dicom_gives_the_films_probabilities(shared, dicom_films, tmp_path):
    root, kinds = dicom_films
    run_cli('pneumonia_predict', shared/'chest_xray_sample'/'test', '--out', tmp_path/'jpeg.csv', cwd=ROOT)
    run_cli('pneumonia_predict', root, '--out', tmp_path/'dicom.csv', cwd=ROOT)
    stem = lambda df: df.assign(stem=df.path.map(lambda p: os.path.splitext(os.path.basename(p))[0])).set_index('stem')
    jpeg, dicom = stem(pd.read_csv(tmp_path/'jpeg.csv')), stem(pd.read_csv(tmp_path/'dicom.csv', keep_default_na=False))
    dp = (dicom.prob_pneumonia - jpeg.prob_pneumonia[dicom.index]).abs()
    lossless = [s for s, k in kinds.items() if k == 'lossless']
    assert len(dicom) == 40 and dp[lossless].max() < 1e-5 and dp.max() < 0.03, dp.describe()
    assert (dicom.label == jpeg.label[dicom.index]).all() and (dicom.warnings == '').all()


def test_eval_cli_on_a_dicom_folder_labelled_by_folder(shared, dicom_films, tmp_path):
    root, _ = dicom_films
    run_cli('pneumonia_eval', '--model', 'models/default', '--data', root, '--out', tmp_path/'dicom', '--n_boot', '50', cwd=ROOT)
    run_cli('pneumonia_eval', '--model', 'models/default', '--data', shared/'chest_xray_sample'/'test', '--out', tmp_path/'jpeg', '--n_boot', '50', cwd=ROOT)
    d, j = (json.loads((tmp_path/k/'metrics.json').read_text()) for k in ('dicom', 'jpeg'))
    assert d['n'] == j['n'] == 40
    assert abs(d['at_threshold']['roc_auc']['value'] - j['at_threshold']['roc_auc']['value']) < 0.01
    assert d['at_threshold']['accuracy']['value'] == j['at_threshold']['accuracy']['value']


def test_service_answers_dicom_parts(shared, dicom_films, tmp_path):
    root, _ = dicom_films
    film = sorted(root.rglob('*.dcm'))[1]     # a 16-bit MONOCHROME1 file
    lateral = film_to_dicom(Image.open(next((shared/'chest_xray_sample'/'test'/'NORMAL').glob('*.jpeg'))), ViewPosition='LL', PatientAge='040Y')
    with serving('--model', ROOT/'models'/'default', '--log', tmp_path/'requests.jsonl') as (url, _):
        r = httpx.post(f'{url}/predict', files=[('files', ('a.dcm', film.read_bytes(), 'application/dicom')), ('files', ('b.dcm', lateral, 'application/dicom')),
                                                ('files', ('plan.dcm', open(pydicom.data.get_testdata_file('rtplan.dcm'), 'rb').read(), 'application/dicom'))], timeout=60)
        metrics = httpx.get(f'{url}/metrics').text
    a, b, plan = r.json()['results']
    assert r.status_code == 200 and a['warnings'] == [] and a['dicom']['sop_uid'] == str(pydicom.dcmread(film).SOPInstanceUID)
    assert [w['code'] for w in b['warnings']] == ['view', 'age'] and plan['problem_code'] == 'no_pixel_data'
    assert 'pneumonia_input_warnings_total{code="age"} 1.0' in metrics and 'pneumonia_rejected_inputs_total{reason="no_pixel_data"} 1.0' in metrics
    assert not any(x in (tmp_path/'requests.jsonl').read_text() for x in PATIENT)


def test_pacs_watcher_reports_each_chest_film_once(orthanc, shared, dicom_films, tmp_path):
    root, _ = dicom_films
    films = sorted(root.rglob('*.dcm'))[:6]
    knee = film_to_dicom(Image.open(next((shared/'chest_xray_sample'/'test'/'PNEUMONIA').glob('*.jpeg'))), BodyPartExamined='KNEE')
    client = DICOMwebClient(orthanc)
    client.store_instances([pydicom.dcmread(f) for f in films] + [pydicom.dcmread(io.BytesIO(knee)), pydicom.dcmread(pydicom.data.get_testdata_file('CT_small.dcm'))])
    args = ('pneumonia_pacs', '--url', orthanc, '--state', tmp_path/'state.json', '--log', tmp_path/'pacs.jsonl', '--since', '20000101', '--once')
    first = run_cli(*args, cwd=ROOT).stdout
    assert '8 new films: 6 reported' in first and 'skipped (body_part 1, modality 1)' in first, first
    run_cli('pneumonia_predict', *films, '--out', tmp_path/'p.csv', cwd=ROOT)
    direct = pd.read_csv(tmp_path/'p.csv').assign(uid=[str(pydicom.dcmread(f).SOPInstanceUID) for f in films]).set_index('uid')
    reports = stored_reports(client)
    assert sorted(reports) == sorted(direct.index)
    for uid, r in reports.items():
        assert abs(r['prob_pneumonia'] - direct.prob_pneumonia[uid]) < 1e-6 and r['label'] == direct.label[uid] and r['threshold'] == pytest.approx(direct.threshold[uid])
    assert 'no new films' in run_cli(*args, cwd=ROOT).stdout and len(stored_reports(client)) == 6   # the second run adds nothing
    assert first.startswith('pneumonia_pacs: looking at studies dated 20000101 and later (--since'), first
    log = [json.loads(line) for line in (tmp_path/'pacs.jsonl').read_text().splitlines()]
    assert [(r['code'], r['reason']) for r in log if r['outcome'] == 'skipped' and r['code'] == 'modality'] == [('modality', 'modality CT, not CR or DX')]
    assert not any(x in (tmp_path/'pacs.jsonl').read_text() for x in PATIENT)


def test_two_watchers_at_once_and_a_lost_state_file_report_each_film_once(orthanc, dicom_films, tmp_path):
    "Issue 35: the PACS, not the state file, says what is reported; two watchers started together store one report per film."
    root, _ = dicom_films
    films = sorted(root.rglob('*.dcm'))[:6]
    client = DICOMwebClient(orthanc)
    client.store_instances([pydicom.dcmread(f) for f in films])
    args = lambda state: ('pneumonia_pacs', '--url', orthanc, '--state', tmp_path/state, '--log', '', '--since', '20000101', '--once')
    with ThreadPoolExecutor(2) as pool: said = [p.stdout for p in pool.map(lambda k: run_cli(*args(f'{k}.json'), cwd=ROOT), 'ab')]
    assert len(sr_instances(client)) == 6 and sorted(stored_reports(client)) == sorted(str(pydicom.dcmread(f).SOPInstanceUID) for f in films), said
    fresh = run_cli(*args('lost.json'), cwd=ROOT).stdout   # a third watcher with no state at all
    assert '6 new films: 6 skipped (already_reported 6)' in fresh and len(sr_instances(client)) == 6, fresh
