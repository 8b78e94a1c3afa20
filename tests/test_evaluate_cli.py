"`pneumonia_eval` on a run trained on the raw-looking sample (issue 4, acceptance 1)."
import json, shutil

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

from conftest import run_cli

FILES = ('predictions.csv', 'metrics.json', 'confusion.png', 'roc.png', 'pr.png',
         'reliability.png', 'scores.png', 'gradcam.png')
METRICS = ('accuracy', 'sensitivity', 'specificity', 'precision', 'f1', 'roc_auc', 'pr_auc', 'brier', 'ece')


@pytest.fixture(scope='module')
def run(tiny_run): return tiny_run.path


@pytest.fixture(scope='module')
def evaluated(tiny_run):
    "The shared tiny run's evaluation (conftest's `tiny_run` runs `pneumonia_eval` into its folder) and what it printed."
    return tiny_run.path/'eval', tiny_run.eval_stdout


def test_eval_writes_the_report(evaluated):
    ev, stdout = evaluated
    for f in FILES: assert (ev/f).is_file(), f
    report = json.loads((ev/'metrics.json').read_text())
    assert report['n'] == 40 and report['threshold']['chosen_on'] == 'valid'
    for at in ('at_threshold', 'at_0_5'):
        for m in METRICS:
            lo, hi = report[at][m]['ci95']
            assert lo <= report[at][m]['value'] <= hi, (at, m)
    assert report['bootstrap'] == dict(resamples=1000, seed=0, interval='95% percentile')
    assert 'threshold 0.5' in stdout and str(ev) in stdout.splitlines()[-1]


def test_metrics_match_sklearn_on_predictions_csv(evaluated):
    ev, _ = evaluated
    report = json.loads((ev/'metrics.json').read_text())
    pr = pd.read_csv(ev/'predictions.csv')
    assert list(pr.columns) == ['path', 'label', 'prob_pneumonia', 'predicted', 'decision', 'prob_uncalibrated']
    y = (pr.label == 'PNEUMONIA').astype(int)
    assert ((pr.predicted == 'PNEUMONIA') == (pr.prob_pneumonia >= report['threshold']['value'])).all() and (pr.decision == pr.predicted).all()   # no triage
    for at, t in (('at_threshold', report['threshold']['value']), ('at_0_5', 0.5)):
        pred = (pr.prob_pneumonia >= t).astype(int)
        got = {m: report[at][m]['value'] for m in ('accuracy', 'sensitivity', 'specificity', 'roc_auc')}
        assert got == pytest.approx(dict(accuracy=accuracy_score(y, pred), sensitivity=recall_score(y, pred),
                                         specificity=recall_score(y, pred, pos_label=0), roc_auc=roc_auc_score(y, pr.prob_pneumonia)))


def test_a_folder_that_is_not_a_run_says_what_to_pass(shared, tmp_path):
    proc = run_cli('pneumonia_eval', '--model', tmp_path, '--data', shared/'chest_xray_sample', check=False)
    assert proc.returncode != 0 and 'is not a model folder: no model.json' in proc.stderr and 'pneumonia_train' in proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path/'eval').exists()


def test_existing_evaluation_is_never_replaced(evaluated, run, shared):
    before = (evaluated[0]/'metrics.json').read_bytes()
    proc = run_cli('pneumonia_eval', '--model', run, '--data', shared/'chest_xray_sample', check=False)
    assert proc.returncode != 0 and 'already holds an evaluation' in proc.stderr
    assert (evaluated[0]/'metrics.json').read_bytes() == before


def test_a_bare_folder_is_scored_with_the_stored_threshold_and_out_keeps_the_model_folder_clean(run, shared, tmp_path):
    "Issue 10, acceptance 3: another hospital's NORMAL/ + PNEUMONIA/ folder, scored without any validation images."
    bare = tmp_path/'films'
    shutil.copytree(shared/'chest_xray_sample'/'test', bare)
    model = tmp_path/'model'
    shutil.copytree(run, model, ignore=shutil.ignore_patterns('eval*', 'split.csv', 'valid_predictions.csv', 'train.ipynb'))
    out = tmp_path/'report'
    proc = run_cli('pneumonia_eval', '--model', model, '--data', bare, '--out', out)
    report = json.loads((out/'metrics.json').read_text())
    stored = json.loads((model/'model.json').read_text())['threshold']
    assert report['n'] == 40 and report['threshold']['value'] == stored['value'] and report['threshold']['source'] == 'model.json'
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES) and not (model/'eval').exists()
    assert str(out) in proc.stdout.splitlines()[-1]
