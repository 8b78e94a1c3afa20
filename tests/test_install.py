"A plain (non-editable) install trains and evaluates: the training notebook ships inside the package (issue 9, acceptance 5)."
import os, subprocess, sys
from pathlib import Path

from conftest import ROOT


def test_non_editable_install_trains_and_evaluates(shared, tmp_path):
    site = tmp_path/'site'
    built = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation', '--target', site, ROOT],
                           check=True, capture_output=True, text=True)
    for noise in ('License classifiers are deprecated', 'would be ignored'):   # issue 36: setuptools' warnings a new user saw
        assert noise not in built.stdout + built.stderr, built.stderr[-3000:]
    assert (site/'pneumonia_nb'/'train.ipynb').is_file() and not (site/'pneumonia_nb'/'train.ipynb').is_symlink()
    env = {**os.environ, 'PYTHONPATH': str(site), 'HF_HUB_OFFLINE': '1'}
    run = lambda *a: subprocess.run([str(site/'bin'/a[0]), *map(str, a[1:])], cwd=tmp_path, env=env, capture_output=True, text=True)
    out = run('pneumonia_train', '--data', shared/'chest_xray_sample', '--arch', 'cnn', '--epochs', '1', '--img_size', '64', '--runs', 'runs', '--no_mlflow')
    assert out.returncode == 0, out.stderr[-2000:]
    d = Path(out.stdout.strip().splitlines()[-1])
    assert d.parent == tmp_path/'runs' and (d/'model.json').is_file()
    ev = run('pneumonia_eval', '--model', d, '--data', shared/'chest_xray_sample')
    assert ev.returncode == 0 and (d/'eval'/'metrics.json').is_file(), ev.stderr[-2000:]
    probe = subprocess.run([sys.executable, '-c', 'import pneumonia_nb; print(pneumonia_nb.__file__)'], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert probe.stdout.startswith(str(site))   # the installed copy ran, not the checkout
