"""What travels to the GPU machine, made and measured here before any of its minutes are spent (issue 33).

    .venv/bin/python scripts/device_pack.py wheels [--dest .whl] [--list]   # the wheels the machine lacks, derived
    .venv/bin/python scripts/device_pack.py data ../shared/data/chest_xray_224 [--dest .data] [--part_mib 28]
    .venv/bin/python scripts/device_pack.py check [--carry .whl .data]      # what travels: N MiB of 64, or refused

`wheels` derives the list from the package's own requirements (settings.ini), so a new dependency cannot be
forgotten: every requirement and what it needs (as installed in this venv, at the versions installed here), minus what
the machine has (`MACHINE` and what those need), minus what no GPU step imports (`NOT_ON_DEVICE`, each with why) and
the optional packages (`OPTIONAL`); then downloads them as Python 3.12 manylinux wheels. `data` packs a data folder as
one tar file (5,200 small films cost far more on disk than their 34 MB; `scripts/gpu_check.sh` unpacks it there).
`check` counts what the device tool sends as it counts it, on disk: tracked and untracked-not-ignored files plus the
carried paths; it exits 1 above the limit, naming the biggest parts.
"""
from __future__ import annotations
import argparse, configparser, importlib.metadata as md, re, subprocess, sys, tarfile
from pathlib import Path
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LIMIT_MIB = 64
# what the machine has (../shared/device/README.md), and what fastai and papermill need there (they run there)
MACHINE = ['torch', 'torchvision', 'timm', 'numpy', 'pandas', 'scikit-learn', 'matplotlib', 'pillow', 'requests', 'rich',
           'attrs', 'pygments']
# requirements no GPU step imports (runs there use --no_mlflow; nothing is served there; DICOM films are not decoded there)
NOT_ON_DEVICE = {'mlflow': 'tracking: the device runs use --no_mlflow',
                 'uvicorn': 'serving', 'httpx': 'serving clients', 'aiohttp': 'serving clients',
                 'python-multipart': 'serving uploads',
                 'python-fasthtml': 'a web framework fastprogress 1.1 imports; the device gets 1.0.3 (DEVICE_PINS)',
                 'spacy': "fastai's text tokenizer; the vision steps never import it",
                 'pylibjpeg-libjpeg': 'compressed DICOM decoders (no cp312 wheel for 2.5.0)',
                 'pylibjpeg-openjpeg': 'compressed DICOM decoders'}
# the versions the device gets where this venv's would pull in what it does not need
DEVICE_PINS = {'fastprogress': '1.0.3'}   # the same progress bars without fasthtml; seen working there
OPTIONAL = {'debugpy', 'jedi'}   # ipykernel and IPython run without them; 10 MB the transfer limit cannot spare
PLATFORM = ['--only-binary=:all:', '--python-version', '3.12', '--implementation', 'cp',
            *[a for p in ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64',
                          'manylinux2014_x86_64', 'manylinux1_x86_64') for a in ('--platform', p)]]


def norm(name:str) -> str: return re.sub(r'[-_.]+', '-', name).lower()


def requirements() -> list[str]:
    "The package's requirement names, from settings.ini."
    ini = configparser.ConfigParser(); ini.read(ROOT/'settings.ini')
    return [Requirement(r).name for r in ini['DEFAULT']['requirements'].split()]


def closure(names, dists:dict, skip=frozenset()) -> set[str]:
    "These distributions and everything they require (no extras), as installed in this venv; `skip` not followed."
    todo, seen = [norm(n) for n in names], set()
    while todo:
        n = todo.pop()
        if n in seen or n in skip or n not in dists: continue
        seen.add(n)
        todo += [norm(r.name) for r in map(Requirement, dists[n].requires or [])
                 if not r.marker or r.marker.evaluate({'extra': '', 'python_version': '3.12'})]
    return seen


def wheel_list(drop=()) -> list[str]:
    "`name==version` of each package the machine lacks and a GPU step needs, at this venv's versions."
    dists = {norm(d.metadata['Name']): d for d in md.distributions()}
    has = closure(MACHINE, dists)
    skip = {norm(n) for n in [*NOT_ON_DEVICE, *OPTIONAL, *drop]}
    need = closure([n for n in requirements() if norm(n) not in skip], dists, skip) - has
    pin = lambda n: DEVICE_PINS.get(n, dists[n].version)
    return sorted(f"{dists[n].metadata['Name']}=={pin(n)}" for n in need)


def fetch(dest:Path, pins:list[str], python:str='3.12') -> None:
    "Download `pins` as wheels for the machine's Python (or `python`, for a rehearsal here) into `dest`."
    dest.mkdir(parents=True, exist_ok=True)
    plat = [python if a == '3.12' else a for a in PLATFORM]
    subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', *plat, '-d', str(dest), *pins],
                   check=True)


def pack_data(folder:Path, dest:Path, part_mib:float|None=None) -> list[Path]:
    """`folder` as one tar file `dest/NAME.tar`, or as its parts `NAME.tar.00`, ... of `part_mib` each, to travel over
    two calls when one cannot hold it (never replaced)."""
    out = dest/f'{folder.name}.tar'
    if out.exists() or list(dest.glob(f'{out.name}.??')): raise SystemExit(f"device_pack: {out} already exists")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, 'w') as t: t.add(folder, arcname=folder.name)
    if not part_mib: return [out]
    data, step = out.read_bytes(), int(part_mib * 2**20)
    parts = [out.with_name(f'{out.name}.{i:02d}') for i in range(-(-len(data) // step))]
    for i, p in enumerate(parts): p.write_bytes(data[i * step:(i + 1) * step])
    out.unlink()
    return parts


def on_disk(path:Path) -> int:
    "Bytes `path` takes on disk (its blocks, as the device tool counts), a folder's files summed."
    files = [path] if path.is_file() else [p for p in path.rglob('*') if p.is_file() and not p.is_symlink()]
    return sum(f.stat().st_blocks * 512 for f in files)


def travelling(carry=()) -> dict[str, int]:
    "On-disk bytes of what a device call sends, by top-level part: tracked and untracked-not-ignored files, and `carry`."
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split('\0')
    parts: dict[str, int] = {}
    for f in filter(None, listed):
        p = ROOT/f
        if p.is_file() and not p.is_symlink(): parts[f.split('/')[0]] = parts.get(f.split('/')[0], 0) + on_disk(p)
    for c in carry: parts[f'{c} (carried)'] = on_disk(ROOT/c)
    return parts


def check(carry=()) -> int:
    "Print what travels against the limit; 1 when over it."
    parts = travelling(carry)
    total = sum(parts.values()) / 2**20
    print(f"what travels: {total:.1f} MiB of {LIMIT_MIB}")
    if total <= LIMIT_MIB: return 0
    big = sorted(parts.items(), key=lambda kv: -kv[1])[:5]
    print("device_pack: over the device's limit; the largest parts: "
          + ', '.join(f"{k} {v / 2**20:.1f} MiB" for k, v in big), file=sys.stderr)
    return 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='what', required=True)
    w = sub.add_parser('wheels', help='derive and download the wheels the machine lacks')
    w.add_argument('--dest', default='.whl'); w.add_argument('--list', action='store_true', help='print the list only')
    d = sub.add_parser('data', help='pack a data folder as one tar file')
    d.add_argument('folder'); d.add_argument('--dest', default='.data')
    d.add_argument('--part_mib', type=float, help='split into parts of this size (two calls: see gpu_check.sh)')
    c = sub.add_parser('check', help='what travels, counted on disk, against the limit')
    c.add_argument('--carry', nargs='*', default=[])
    a = p.parse_args()
    if a.what == 'wheels':
        pins = wheel_list()
        print('\n'.join(pins))
        if not a.list: fetch(ROOT/a.dest, pins); print(f"{len(pins)} wheels in {a.dest}: {on_disk(ROOT/a.dest) / 2**20:.1f} MiB")
    elif a.what == 'data': print('\n'.join(map(str, pack_data(Path(a.folder), ROOT/a.dest, a.part_mib))))
    else: sys.exit(check(a.carry))


if __name__ == '__main__': main()
