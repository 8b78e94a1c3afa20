"`pneumonia_experiments` on the tiny CPU grid: complete, rerun, kill and resume (issue 4, acceptance 2)."
import json, os, signal, subprocess, time

import pandas as pd

from PIL import Image
from conftest import BIN, ROOT, run_cli

POINTS = ['cnn-seed0', 'cnn-seed1', 'resnet18-seed0', 'resnet18-seed1']


def test_grid_survives_a_kill_and_skips_finished_runs(shared, tmp_path):
    out = tmp_path/'grid'
    args = [str(BIN/'pneumonia_experiments'), str(ROOT/'configs'/'compare_tiny.yaml'), '--data', str(shared/'chest_xray_sample'), '--out', str(out)]
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    # 1. start the grid and kill it (with its notebook kernel) once the first point is finished
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    first = out/POINTS[0]
    deadline = time.time() + 300
    while not (first/'mlflow.json').exists():
        assert proc.poll() is None and time.time() < deadline, 'grid ended or stalled before its first point finished'
        time.sleep(0.5)
    time.sleep(3)  # the second point is now training
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
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
