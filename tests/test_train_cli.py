"`pneumonia_train` end to end on the raw-looking sample, on the CPU (issue 3, acceptance 1-4)."
import json, time

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import run_cli
from pneumonia_nb.dataloaders import xray_dataloaders
from pneumonia_nb.models import create_model, load_model
from pneumonia_nb.train import RUN_FILES

ARCHS = ('cnn', 'cnn_deep', 'resnet18', 'vit_tiny_patch16_224')
TINY = ('--epochs', '1', '--img_size', '64', '--bs', '32')


def train(shared, runs, arch, *extra):
    proc = run_cli('pneumonia_train', '--data', shared/'chest_xray_sample', '--arch', arch, '--out', runs, *TINY, *extra)
    return runs.__class__(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def runs(shared, tmp_path_factory):
    root = tmp_path_factory.mktemp('runs')
    return root, {arch: train(shared, root, arch) for arch in ARCHS}


@pytest.mark.parametrize('arch', ARCHS)
def test_run_folder_holds_everything(runs, arch):
    d = runs[1][arch]
    assert d.parent == runs[0] and d.name.endswith(f'-{arch}-s42')
    for f in ('train.ipynb', 'split.csv', *RUN_FILES): assert (d/f).is_file(), f
    metrics = json.loads((d/'metrics.json').read_text())
    assert {'accuracy', 'sensitivity', 'specificity', 'roc_auc', 'loss'} <= set(metrics)
    record = json.loads((d/'config.json').read_text())
    assert record['config']['arch'] == arch and record['config']['seed'] == 42
    assert len(record['split_sha256']) == 64 and record['environment']['torch'] and 'commit' in record['environment']
    assert len(pd.read_csv(d/'history.csv')) == 1
    nb = json.loads((d/'train.ipynb').read_text())
    assert nb['metadata']['papermill']['parameters']['config']['arch'] == arch


@pytest.mark.parametrize('arch', ARCHS)
def test_model_files_rebuild_the_trained_model(runs, shared, arch):
    d = runs[1][arch]
    net, spec = load_model(d)
    assert (spec['arch'], spec['img_size'], spec['classes']) == (arch, 64, ['NORMAL', 'PNEUMONIA'])
    dls = xray_dataloaders(d/'split.csv', shared/'chest_xray_sample', size=spec['img_size'], bs=64)
    with torch.no_grad(): probs = torch.cat([net(x).softmax(1)[:, 1] for x, _ in dls.valid]).numpy()
    expected = pd.read_csv(d/'valid_predictions.csv').prob_pneumonia.to_numpy()
    assert abs(probs - expected).max() < 1e-5


def test_same_config_and_seed_give_identical_metrics(runs, shared, tmp_path):
    again = train(shared, tmp_path, 'cnn')
    assert (again/'metrics.json').read_text() == (runs[1]['cnn']/'metrics.json').read_text()


def test_runs_are_in_mlflow(runs):
    root, dirs = runs
    client = MlflowClient(f"sqlite:///{root/'mlflow.db'}")
    exp = client.get_experiment_by_name('pneumonia_nb')
    logged = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(logged) == {d.name for d in dirs.values()}
    for arch, d in dirs.items():
        r = logged[d.name]
        assert r.data.params['arch'] == arch and r.data.params['epochs'] == '1'
        metrics = json.loads((d/'metrics.json').read_text())
        assert r.data.metrics['best_roc_auc'] == pytest.approx(metrics['roc_auc'])
        assert [m.step for m in client.get_metric_history(r.info.run_id, 'train_loss')] == [0]
        artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {'train.ipynb', 'model.safetensors', 'model.json', 'config.json'} <= artifacts


def test_offline_pretrained_fails_fast_with_a_way_out(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    t0 = time.time()
    with pytest.raises(RuntimeError, match='Pass a local weights file instead'):
        create_model('resnet18', pretrained=True)
    assert time.time() - t0 < 5


def test_local_checkpoint_trains_from_the_cli(shared, tmp_path):
    import timm
    from safetensors.torch import save_file
    imagenet_like = timm.create_model('resnet18')  # 3 channels, 1000 classes, as a downloaded checkpoint would be
    save_file(imagenet_like.state_dict(), tmp_path/'resnet18.safetensors')
    d = train(shared, tmp_path/'runs', 'resnet18', '--pretrained', tmp_path/'resnet18.safetensors', '--no_mlflow')
    record = json.loads((d/'config.json').read_text())
    assert record['config']['pretrained'] == str(tmp_path/'resnet18.safetensors')
    assert not (tmp_path/'runs'/'mlflow.db').exists()


def test_cache_backend_trains_from_the_cli(shared, tmp_path, monkeypatch):
    monkeypatch.setenv('PNEUMONIA_CACHE', str(tmp_path/'cache'))
    d = train(shared, tmp_path/'runs', 'cnn', '--backend', 'cache', '--no_mlflow')
    assert json.loads((d/'config.json').read_text())['config']['backend'] == 'cache'
    assert 0 <= json.loads((d/'metrics.json').read_text())['roc_auc'] <= 1
    assert len(list((tmp_path/'cache').glob('xray-64-squish-*.npy'))) == 1
