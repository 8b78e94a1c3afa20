"`pneumonia_promote` and the committed default model (issue 10, acceptance 2 and 4)."
import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_cli
from pneumonia_nb.core import threshold_for
from pneumonia_nb.config import load_recipe
from pneumonia_nb.models import load_model


@pytest.fixture(scope='module')
def run(tiny_run):
    "The shared tiny run: logged to MLflow in its runs folder (a SQLite store), and evaluated."
    return tiny_run.path


def test_promote_refuses_to_overwrite_keeps_the_index_and_registers_versions(run, tmp_path):
    models = tmp_path/'models'
    first = run_cli('pneumonia_promote', '--model', run, '--name', 'demo', '--models', models)
    assert 'registered demo version 1' in first.stdout
    card = json.loads((models/'demo'/'card.json').read_text())
    assert card['test_report']['n'] == 40 and card['threshold']['chosen_on'] == 'valid' and 'CC BY 4.0' in card['data_licence']
    before = (models/'demo'/'model.safetensors').read_bytes()
    again = run_cli('pneumonia_promote', '--model', run, '--name', 'demo', '--models', models, check=False)
    assert again.returncode != 0 and 'already exists; pass --force' in again.stderr and 'Traceback' not in again.stderr
    assert (models/'demo'/'model.safetensors').read_bytes() == before
    run_cli('pneumonia_promote', '--model', run, '--name', 'demo', '--models', models, '--force')
    assert len(list((models/'_replaced').iterdir())) == 1
    run_cli('pneumonia_promote', '--model', run, '--name', 'second', '--models', models)
    index = pd.read_csv(models/'index.csv')
    assert index.name.tolist() == ['demo', 'second'] and (index.run == run.name).all()
    uri = f"sqlite:///{run.parent/'mlflow.db'}"
    versions = MlflowClient(uri, uri).search_model_versions("name='demo'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert all(v.source == (models/'demo').resolve().as_uri() for v in versions)


DEFAULT = ROOT/'models'/'default'


def test_the_committed_default_model_loads_and_its_threshold_is_its_own(shared, tmp_path):
    net, spec = load_model(DEFAULT)
    v = pd.read_csv(DEFAULT/'valid_predictions.csv')
    rule = load_recipe(json.loads((DEFAULT/'card.json').read_text())['recipe'])['threshold_rule']   # the rule its recipe stores by
    assert spec['threshold']['value'] == threshold_for(v.label == 'PNEUMONIA', v.prob_pneumonia, rule)
    assert (DEFAULT/'model.safetensors').stat().st_size < 20e6 and sum(f.stat().st_size for f in DEFAULT.iterdir()) < 22e6
    for data in (shared/'chest_xray_sample', shared/'chest_xray_sample'/'test'):   # official layout, bare folder
        out = tmp_path/data.name
        run_cli('pneumonia_eval', '--model', DEFAULT, '--data', data, '--out', out)
        assert json.loads((out/'metrics.json').read_text())['n'] == 40
    assert not (DEFAULT/'eval').exists()
