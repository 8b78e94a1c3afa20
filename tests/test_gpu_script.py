"""The GPU machine's prepared script (issues 14 and 33) dry-run on the CPU with tiny data, split over two calls, without
the packages that machine lacks: every step runs and leaves its results, no weights but the recipe's and the study's
archive, and the study's site films travel as one tar file."""
import json, os, subprocess, sys, tarfile

import torch

from conftest import ROOT


def test_gpu_script_dry_run_on_the_cpu(shared, tmp_path):
    grid = tmp_path/'grid.yaml'
    grid.write_text("name: dry\nbase: {epochs: 1, img_size: 64, bs: 32, device: cpu}\ngrid: {arch: [cnn], seed: [0]}\neval: {subset: test, n_boot: 50}\n")
    out, site = tmp_path/'out', tmp_path/'chest_xray_site.tar'
    with tarfile.open(site, 'w') as t: t.add(shared/'chest_xray_site', arcname='chest_xray_site')
    env = {**os.environ, 'PYTHON': sys.executable, 'DEVICE': 'cpu', 'DATA': str(shared/'chest_xray_sample'), 'GRID': str(grid), 'ARCHS': 'cnn',
           'BENCH_ARGS': '--img_size 64 --n_train 64 --epochs 1 --steps 2 --bs 32 --fastai_bs 32 --num_workers 0',
           'RECIPE_ARGS': '--arch cnn --epochs 1 --img_size 64 --bs 32 --backend pil', 'OUT': str(out),
           'STUDY': str(grid), 'SITE': str(site), 'STUDY_DIR': str(tmp_path/'study'), 'STUDY_K': '1',
           'PYTHONPATH': os.pathsep.join([str(ROOT/'tests'/'gpu_machine'), str(ROOT)])}   # imports the GPU machine lacks fail here too
    run = lambda steps: subprocess.run(['bash', str(ROOT/'scripts'/'gpu_check.sh')], cwd=ROOT, env={**env, 'STEPS': steps}, capture_output=True, text=True, timeout=900)
    refused = run('bench grids')
    assert refused.returncode == 2 and "unknown step 'grids'" in refused.stderr and not (out/'bench.json').exists()
    for steps in ('bench recipe', 'grid study'):   # split over two calls, as on the device's 10-minute limit
        proc = run(steps)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = json.loads((out/'bench.json').read_text())
    assert 'cnn' in json.dumps(bench) and (out/'environment.json').is_file() and (out/'nvidia-smi.txt').is_file()
    assert len(list((out/'recipe').glob('*/eval/metrics.json'))) == 1 and (out/'compare'/'leaderboard.csv').is_file()
    assert (out/'compare'/'leaderboard.png').is_file() and 'done:' in (out/'log.txt').read_text()
    weights = list(out.rglob('*.safetensors'))
    assert len(weights) == 1 and weights[0].parent.parent.name == 'recipe'
    parts = sorted(out.glob('study.tar.*'))   # the study: every run scored on the site films, the best one's weights
    assert len(parts) == 1 and parts[0].stat().st_size < 16 * 2**20
    with tarfile.open(parts[0]) as t:
        names = t.getnames()
        scores = t.extractfile('study/scores.csv').read().decode()
    assert scores.startswith('run,arch,img_size,seed') and len(scores.strip().splitlines()) == 2, scores
    assert sum(n.endswith('model.safetensors') for n in names) == 1 and any(n.endswith('/config.json') for n in names)
    best = tmp_path/'best'
    with tarfile.open(parts[0]) as t: t.extractall(best, filter='data')
    from safetensors.torch import load_file
    from pneumonia_nb.models import load_model
    folder = next((best/'study'/'best').iterdir())
    assert {v.dtype for v in load_file(folder/'model.safetensors').values() if v.is_floating_point()} == {torch.float16}
    net, spec = load_model(folder)   # promotable: it loads as float32 from what came back
    assert spec['arch'] == 'cnn' and next(net.parameters()).dtype == torch.float32
