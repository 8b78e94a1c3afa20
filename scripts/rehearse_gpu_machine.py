"""Rehearse scripts/gpu_check.sh on the CPU in a Python that has only what the GPU machine has, before spending its minutes.

The machine (../shared/device/README.md) has torch, torchvision, timm, numpy, pandas, scikit-learn, matplotlib and pillow;
the rest comes from the wheels `scripts/device_pack.py wheels` derives from the package's requirements, installed with
`pip --target` as on the machine. This builds that: a bare venv holding the machine's packages and their dependencies
(linked from this project's venv, `device_pack.MACHINE`), then the derived wheel set, fetched for this Python's version,
into a target folder; then it imports every module of the package there (what `gpu_check.sh` checks first on the
machine), and last runs the script's CPU dry run on tiny data with that interpreter. Anything the project imports
that the wheels lack fails here as it would there.

    .venv/bin/python scripts/rehearse_gpu_machine.py [--imports_only] [--drop NAME ...]

`--drop` leaves a wheel out (the test that a missing one is caught); `--imports_only` stops after the import check.
Needs the package index for the wheels and the real films in ../shared; writes only under --work.
"""
import argparse, importlib.metadata as md, os, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'scripts'))
from device_pack import MACHINE, closure, fetch, norm, wheel_list   # noqa: E402
DRY_RUN = dict(DEVICE='cpu', ARCHS='cnn', GRID='configs/studies/compare_tiny.yaml', STEPS='bench recipe grid study',
               STUDY='configs/studies/compare_tiny.yaml', STUDY_K='2',
               BENCH_ARGS='--img_size 64 --n_train 64 --epochs 1 --steps 2 --bs 32 --fastai_bs 32 --num_workers 0',
               RECIPE_ARGS='--arch cnn --epochs 1 --img_size 64 --bs 32 --backend pil')

def machine_venv(venv:Path) -> Path:
    "A bare venv whose site-packages links the machine's packages from this venv; returns its interpreter."
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', '--clear', str(venv)], check=True)
    site = venv/'lib'/f'python{sys.version_info.major}.{sys.version_info.minor}'/'site-packages'
    dists = {norm(d.metadata['Name']): d for d in md.distributions()}
    for name in sorted(closure(MACHINE, dists)):
        src = Path(dists[name].locate_file(''))
        for top in {str(f).split('/')[0] for f in dists[name].files or []} - {'__pycache__'}:
            if not top.startswith('..') and (src/top).exists() and not (site/top).exists(): (site/top).symlink_to(src/top)
    return venv/'bin'/'python'

IMPORT_ALL = ROOT/'scripts'/'import_all.py'


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--drop', nargs='*', default=[], help='wheels to leave out (to see the check catch it)')
    p.add_argument('--imports_only', action='store_true', help='stop after importing every module')
    p.add_argument('--work', default='/tmp/pn-gpu-rehearsal', help='folder for the venv, the wheels and the results (replaced)')
    a = p.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True); work.mkdir(parents=True)
    python = machine_venv(work/'venv')
    fetch(work/'whl', wheel_list(drop=a.drop), python=f'{sys.version_info.major}.{sys.version_info.minor}')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',
                    '--target', str(work/'site'), *map(str, sorted((work/'whl').glob('*.whl')))], check=True)
    site_env = dict(os.environ, PYTHONPATH=f"{work/'site'}:{ROOT}")
    if subprocess.run([str(python), str(IMPORT_ALL)], env=site_env).returncode:
        sys.exit("rehearsal: a module of the package cannot be imported with the machine's packages and the wheels (above)")
    print(f"rehearsal: every module imports with the machine's packages and {len(list((work/'whl').glob('*.whl')))} wheels")
    if a.imports_only: return
    env = dict(os.environ, **DRY_RUN, PYTHON=str(python), PYTHONPATH=f"{work/'site'}:{ROOT}",
               PATH=f"{work/'site'/'bin'}:{os.environ['PATH']}",
               DATA=str(ROOT.parent/'shared'/'data'/'chest_xray_sample'), OUT=str(work/'out'), PNEUMONIA_CACHE=str(work/'cache'),
               SITE=str(ROOT.parent/'shared'/'data'/'chest_xray_site'), STUDY_DIR=str(work/'study'))
    rc = subprocess.run(['bash', str(ROOT/'scripts'/'gpu_check.sh')], cwd=ROOT, env=env).returncode
    print(f"rehearsal: gpu_check.sh exited {rc}; results and log in {work/'out'}")
    sys.exit(rc)

if __name__ == '__main__': main()
