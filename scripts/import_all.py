"""Import every module of pneumonia_nb (but `docs`, a developer's tool needing nbdev) and the GPU steps' own needs; on a
failure name the module and what it lacks, and exit 3. Run first by scripts/gpu_check.sh on the GPU machine, and by the
rehearsal here."""
import importlib, pkgutil, sys

import pneumonia_nb

DEV_ONLY = {'docs'}
# the steps' own: the kernel papermill starts, the leaderboard's Markdown
STEPS_NEED = ['fastai.vision.all', 'accelerate', 'papermill', 'ipykernel', 'tabulate']
names = [f'pneumonia_nb.{m.name}' for m in pkgutil.iter_modules(pneumonia_nb.__path__) if m.name not in DEV_ONLY] + STEPS_NEED
failed = []
for name in names:
    try: importlib.import_module(name)
    except ImportError as e: failed.append(f'{name}: {e}')
if failed:
    print('cannot import, on this machine:\n  ' + '\n  '.join(failed), file=sys.stderr)
    sys.exit(3)
print(f'imported {len(names)} modules')
