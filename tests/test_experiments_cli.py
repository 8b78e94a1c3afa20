"`pneumonia_experiments` on the tiny CPU grid: complete, rerun, kill and resume (issue 4, acceptance 2), here and on Ray (issue 21)."
import json, os, signal, subprocess, time

import pandas as pd
import pytest

from PIL import Image
from conftest import BIN, ROOT, run_cli

POINTS = ['cnn-seed0', 'cnn-seed1', 'resnet18-seed0', 'resnet18-seed1']


def grid_args(shared, out, *extra):
    return [str(BIN/'pneumonia_experiments'), str(ROOT/'configs'/'studies'/'compare_tiny.yaml'), '--data', str(shared/'chest_xray_sample'), '--out', str(out), *extra]


def kill_after_first_point(args, first):
    "Start the grid and kill it (its process group: notebook kernels, Ray's processes) once `first` is finished."
    t0 = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, start_new_session=True)
    while not (first/'mlflow.json').exists():
        assert proc.poll() is None and time.time() < t0 + 600, 'grid ended or stalled before its first point finished'
        time.sleep(0.5)
    time.sleep(3)  # another point is now training
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()


@pytest.fixture(scope='module')
def killed_and_resumed(shared, tmp_path_factory):
    "The tiny grid killed (with its notebook kernel) once its first point is finished, then rerun: its folder, the rerun's output, the first point's metrics before the rerun."
    out = tmp_path_factory.mktemp('sequential')/'grid'
    args = grid_args(shared, out)
    kill_after_first_point(args, out/POINTS[0])
    assert not (out/'leaderboard.csv').exists()
    finished_first = (out/POINTS[0]/'eval'/'metrics.json').read_bytes()
    return out, run_cli(*args).stdout, finished_first


def test_grid_survives_a_kill_and_skips_finished_runs(shared, killed_and_resumed):
    out, resumed, finished_first = killed_and_resumed
    args = grid_args(shared, out)
    # the rerun: the finished point is skipped, the interrupted one is set aside and redone, the rest run
    assert '[1/4] cnn-seed0: skipped' in resumed
    assert all(f'{p}: ran' in resumed or f'{p}: evaluated' in resumed for p in POINTS[1:])
    assert (out/POINTS[0]/'eval'/'metrics.json').read_bytes() == finished_first
    assert len(list((out/'_incomplete').iterdir())) == 1   # the point killed while training, set aside

    runs = pd.read_csv(out/'runs.csv')
    assert sorted(runs.run) == POINTS
    board = pd.read_csv(out/'leaderboard.csv')
    assert sorted(board.arch) == ['cnn', 'resnet18'] and board.n_seeds.tolist() == [2, 2]
    assert board.valid_roc_auc_mean.is_monotonic_decreasing
    md = (out/'leaderboard.md').read_text()
    assert 'Protocol:' in md and all(p in md for p in POINTS)
    assert Image.open(out/'leaderboard.png').size[0] >= 500

    # 3. rerun again: nothing to do
    again = run_cli(*args).stdout
    assert '4 skipped' in again
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(('_', 'ml'))) == POINTS

    # every run is in MLflow once, with its test metrics, and the leaderboard is logged too
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{out/'mlflow.db'}")
    exp = client.get_experiment_by_name('compare_tiny')
    logged = client.search_runs([exp.experiment_id])
    names = [r.info.run_name for r in logged]
    assert sorted(n for n in names if n != 'leaderboard') == POINTS
    assert all('test_roc_auc' in r.data.metrics for r in logged if r.info.run_name != 'leaderboard')
    assert names.count('leaderboard') == 2   # once per run that wrote it (the first and the resumed one)


def test_relative_out_and_failures_exit_non_zero(tmp_path):
    "A relative `out:` is read from the current folder, and a grid with a failed point exits non-zero."
    for c in ('NORMAL', 'PNEUMONIA'): (tmp_path/'empty'/c).mkdir(parents=True)
    (tmp_path/'g.yaml').write_text("name: broken\ndata: empty\nout: rel/out\nbase: {epochs: 1, img_size: 64, device: cpu}\ngrid: {arch: [cnn]}\n")
    proc = run_cli('pneumonia_experiments', 'g.yaml', check=False, cwd=tmp_path)
    assert proc.returncode != 0 and '1 point(s) failed' in proc.stderr, proc.stdout + proc.stderr
    err = json.loads((tmp_path/'rel'/'out'/'cnn'/'error.json').read_text())
    assert err['stage'] == 'train' and 'hold no files' in err['error']


def test_ray_grid_two_at_a_time_killed_and_resumed_equals_sequential(shared, tmp_path, killed_and_resumed):
    """A one-machine Ray instance (2 CPUs, a point asks for 1): 2 points at a time, killed after the first point, resumed;
    every metric equals the sequential grid's (itself killed and resumed, which the test above shows changes nothing)."""
    out = tmp_path/'ray'
    args = grid_args(shared, out, '--backend', 'ray')
    kill_after_first_point(args, out/POINTS[0])
    resumed = run_cli(*args).stdout
    seq = pd.read_csv(killed_and_resumed[0]/'runs.csv')
    assert '4 points on Ray (1 node(s), 2 CPUs' in resumed and 'cnn-seed0: skipped' in resumed, resumed
    assert len(list((out/'_incomplete').iterdir())) >= 1   # the points killed while running, set aside and run again
    ray = pd.read_csv(out/'runs.csv')
    assert sorted(ray.run) == sorted(seq.run) == POINTS
    cols = [c for c in seq.columns if c.startswith(('valid_', 'test_'))]   # every metric of every point
    merged = seq.set_index('run')[cols].join(ray.set_index('run')[cols], rsuffix='_ray')
    for c in cols: assert (merged[c] - merged[f'{c}_ray']).abs().max() < 1e-6, c
