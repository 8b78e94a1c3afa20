"`pneumonia_experiments` on the tiny CPU grid: complete, rerun, kill and resume (issue 4, acceptance 2), here and on Ray (issue 21)."
import json, os, signal, subprocess, time

import pandas as pd
import pytest

from PIL import Image
from conftest import BIN, ROOT, run_cli

POINTS = ['cnn-seed0', 'cnn-seed1', 'resnet18-seed0', 'resnet18-seed1']


def grid_args(shared, out, *extra):
    return [str(BIN/'pneumonia_experiments'), str(ROOT/'configs'/'compare_tiny.yaml'), '--data', str(shared/'chest_xray_sample'), '--out', str(out), *extra]


def kill_after_first_point(args, first):
    "Start the grid and kill it (its process group: notebook kernels, Ray's processes) once `first` is finished; return the seconds it ran."
    t0 = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, start_new_session=True)
    while not (first/'mlflow.json').exists():
        assert proc.poll() is None and time.time() < t0 + 300, 'grid ended or stalled before its first point finished'
        time.sleep(0.5)
    time.sleep(3)  # another point is now training
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    return time.time() - t0


def test_grid_survives_a_kill_and_skips_finished_runs(shared, tmp_path):
    out = tmp_path/'grid'
    args = grid_args(shared, out)
    first = out/POINTS[0]
    # 1. start the grid and kill it (with its notebook kernel) once the first point is finished
    kill_after_first_point(args, first)
    assert not (out/'leaderboard.csv').exists()
    finished_first = (first/'eval'/'metrics.json').read_bytes()

    # 2. rerun: the finished point is skipped, the interrupted one is set aside and redone, the rest run
    resumed = run_cli(*args).stdout
    assert '[1/4] cnn-seed0: skipped' in resumed
    assert all(f'{p}: ran' in resumed or f'{p}: evaluated' in resumed for p in POINTS[1:])
    assert (first/'eval'/'metrics.json').read_bytes() == finished_first
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


@pytest.fixture(scope='module')
def sequential_runs(shared, tmp_path_factory):
    "The tiny grid run here, one point after another, uninterrupted: its runs.csv and wall time."
    out, t0 = tmp_path_factory.mktemp('sequential')/'grid', time.time()
    run_cli(*grid_args(shared, out, '--no_mlflow'))
    return pd.read_csv(out/'runs.csv'), time.time() - t0


def test_ray_grid_two_at_a_time_killed_and_resumed_equals_sequential(shared, tmp_path, sequential_runs):
    "A one-machine Ray instance (2 CPUs, a point asks for 1): 2 points at a time, killed after the first point, resumed."
    out = tmp_path/'ray'
    args = grid_args(shared, out, '--backend', 'ray')
    first_part = kill_after_first_point(args, out/POINTS[0])
    t0 = time.time()
    resumed = run_cli(*args).stdout
    wall, (seq, seq_wall) = first_part + time.time() - t0, sequential_runs
    assert '4 points on Ray (1 node(s), 2 CPUs' in resumed and 'cnn-seed0: skipped' in resumed, resumed
    assert len(list((out/'_incomplete').iterdir())) >= 1   # the points killed while running, set aside and run again
    ray = pd.read_csv(out/'runs.csv')
    assert sorted(ray.run) == sorted(seq.run) == POINTS
    cols = [c for c in seq.columns if c.startswith(('valid_', 'test_'))]   # every metric of every point
    merged = seq.set_index('run')[cols].join(ray.set_index('run')[cols], rsuffix='_ray')
    for c in cols: assert (merged[c] - merged[f'{c}_ray']).abs().max() < 1e-6, c
    print(f"tiny grid: sequential {seq_wall:.0f} s, on Ray killed and resumed {wall:.0f} s")   # pytest -s shows it
