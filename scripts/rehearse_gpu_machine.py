"""Rehearse scripts/gpu_check.sh on the CPU in a Python that has only what the GPU machine has, before spending its minutes.

The machine (../shared/device/README.md) has torch, torchvision, timm, numpy, pandas, scikit-learn, matplotlib and pillow;
fastai, papermill and a kernel come from the wheels ../shared/device/fetch_wheels.sh fetches, installed with
`pip --target` as its README says. This builds that: a bare venv holding those packages and their dependencies (linked
from this project's venv), plus requests, rich, attrs and pygments, which the machine must have since fastai and
papermill run there; then the wheel set, fetched for this Python's version, into a target folder; then the script's
CPU dry run on tiny data with that interpreter. Anything else the project imports on the way fails as it would there.

    .venv/bin/python scripts/rehearse_gpu_machine.py [EXTRA_WHEEL ...]     # e.g. tabulate==0.10.0, as gpu_check.sh asks

Needs PyPI for the wheels and the real films in ../shared; writes only under --work (default /tmp/pn-gpu-rehearsal).
"""
import argparse, importlib.metadata as md, os, re, shutil, subprocess, sys
from pathlib import Path
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
MACHINE = ['torch', 'torchvision', 'timm', 'numpy', 'pandas', 'scikit-learn', 'matplotlib', 'pillow', 'requests', 'rich', 'attrs', 'pygments']
DRY_RUN = dict(DEVICE='cpu', ARCHS='cnn', GRID='configs/studies/compare_tiny.yaml',
               BENCH_ARGS='--img_size 64 --n_train 64 --epochs 1 --steps 2 --bs 32 --fastai_bs 32 --num_workers 0',
               RECIPE_ARGS='--arch cnn --epochs 1 --img_size 64 --bs 32 --backend pil')

def norm(name): return re.sub(r'[-_.]+', '-', name).lower()

def closure(names, dists) -> set:
    "These distributions and everything they require (no extras), as installed in this venv."
    todo, seen = list(names), set()
    while todo:
        n = norm(todo.pop())
        if n in seen or n not in dists: continue
        seen.add(n)
        todo += [r.name for r in map(Requirement, dists[n].requires or []) if not r.marker or r.marker.evaluate({'extra': ''})]
    return seen

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

def wheels(dest:Path, extra:list) -> None:
    "The device README's wheel set (its fetch script, for this Python's version) and `extra`, downloaded into `dest`."
    fetch = (ROOT.parent/'shared'/'device'/'fetch_wheels.sh').read_text()
    script = dest.parent/'fetch_wheels.sh'
    script.write_text(fetch.replace('--python-version 3.12', f'--python-version {sys.version_info.major}.{sys.version_info.minor}'))
    subprocess.run(['bash', str(script), str(dest), *extra], check=True, env=dict(os.environ, PATH=f'{Path(sys.executable).parent}:{os.environ["PATH"]}'))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('extra', nargs='*', help='more wheels to fetch beside the README set')
    p.add_argument('--work', default='/tmp/pn-gpu-rehearsal', help='folder for the venv, the wheels and the results (replaced)')
    a = p.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True); work.mkdir(parents=True)
    python = machine_venv(work/'venv')
    wheels(work/'whl', a.extra)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile', '--target', str(work/'site'),
                    *map(str, sorted((work/'whl').glob('*.whl')))], check=True)
    env = dict(os.environ, **DRY_RUN, PYTHON=str(python), PYTHONPATH=f"{work/'site'}:{ROOT}", PATH=f"{work/'site'/'bin'}:{os.environ['PATH']}",
               DATA=str(ROOT.parent/'shared'/'data'/'chest_xray_sample'), OUT=str(work/'out'), PNEUMONIA_CACHE=str(work/'cache'))
    rc = subprocess.run(['bash', str(ROOT/'scripts'/'gpu_check.sh')], cwd=ROOT, env=env).returncode
    print(f"rehearsal: gpu_check.sh exited {rc}; results and log in {work/'out'}")
    sys.exit(rc)

if __name__ == '__main__': main()
