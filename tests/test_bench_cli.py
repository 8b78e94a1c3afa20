"`pneumonia_bench` runs tiny on the CPU and writes its records (issue 5); the figures themselves are not tested."
import json, math

import pytest

from conftest import run_cli

FIELDS = ('arch', 'device', 'project_img_s', 'fastai_img_s', 'ceiling_img_s', 'project_val_roc_auc', 'fastai_val_roc_auc')


def slack(r, num, den) -> float:
    "How far r[num] / r[den] can move when both are rounded to 0.1."
    return r[num] / r[den] * (0.05 / r[num] + 0.05 / r[den])


def test_bench_runs_tiny_and_never_replaces_results(shared, tmp_path, monkeypatch):
    monkeypatch.setenv('PNEUMONIA_CACHE', str(tmp_path/'cache'))
    out, mine = tmp_path/'bench.json', '{"earlier": "results"}'
    out.write_text(mine)
    args = ('pneumonia_bench', '--data', shared/'chest_xray_sample', '--arch', 'cnn', 'resnet18',   # --device auto: the CPU here
            '--img_size', '64', '--epochs', '1', '--bs', '32', '--fastai_bs', '32', '--n_train', '64', '--steps', '2',
            '--num_workers', '0', '--out', out)
    refused = run_cli(*args, check=False)
    assert refused.returncode != 0 and 'already exists' in refused.stderr and out.read_text() == mine   # never replaced
    proc = run_cli(*args[:-1], tmp_path/'new.json')
    records = json.loads((tmp_path/'new.json').read_text())['records']
    assert [r['arch'] for r in records] == ['cnn', 'resnet18']
    for r in records:
        assert all(k in r for k in FIELDS) and r['device'] == 'cpu'
        # the ratios are computed before the speeds are rounded to 0.1 img/s: allow for that rounding (it matters on a slow CPU)
        assert r['speedup_vs_fastai'] == pytest.approx(r['project_img_s'] / r['fastai_img_s'], abs=1e-2 + slack(r, 'project_img_s', 'fastai_img_s'))
        assert math.isfinite(r['project_val_roc_auc']) and (r['n_train'], r['n_valid']) == (64, 21)
        assert r['fraction_of_ceiling'] == pytest.approx(r['project_img_s'] / r['ceiling_img_s'], abs=2e-3 + slack(r, 'project_img_s', 'ceiling_img_s'))
    assert 'project_img_s' in proc.stdout and 'new.json' in proc.stdout


def test_time_to_accuracy_on_the_cpu_at_small_scale(shared, tmp_path, monkeypatch):
    """Issue 33: each pipeline's wall seconds (setup included: a fresh cache) and epochs until validation ROC-AUC first
    reaches the target, and how many times sooner the project got there. The ratio is a measurement the bench prints, not
    a pass mark: on 2 shared cores it moved between 1.86x and 2.81x from run to run (07_bench says so)."""
    monkeypatch.setenv('PNEUMONIA_CACHE', str(tmp_path/'cache'))
    proc = run_cli('pneumonia_bench', '--data', shared/'chest_xray_224', '--device', 'cpu', '--arch', 'cnn', '--img_size',
                   '64', '--n_train', '1024', '--epochs', '6', '--bs', '64', '--fastai_bs', '64', '--num_workers', '0',
                   '--steps', '2', '--target_auc', '0.93', '--out', tmp_path/'ttt.json')
    r = json.loads((tmp_path/'ttt.json').read_text())['records'][0]
    print({k: v for k, v in r.items() if 'target' in k or k.endswith('img_s')})
    assert r['target_auc'] == 0.93 and 1 <= r['project_epochs_to_target'] <= 6 and 1 <= r['fastai_epochs_to_target'] <= 6, r
    assert r['project_time_to_target_s'] >= r['project_setup_s'] > 0   # the setup is part of the time
    # the ratio is taken before the times are rounded to 0.1 s
    assert r['time_to_target_speedup'] == pytest.approx(r['fastai_time_to_target_s'] / r['project_time_to_target_s'],
                                                        abs=1e-2 + slack(r, 'fastai_time_to_target_s', 'project_time_to_target_s'))
    assert 'time_to_target_speedup' in proc.stdout, proc.stdout   # the ratio is printed
