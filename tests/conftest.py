import os, shutil, subprocess, sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('PNEUMONIA_SHARED_DATA', ROOT.parent/'shared'/'data'))
BIN = Path(sys.executable).parent


@pytest.fixture(scope='session')
def shared():
    "The real X-rays beside the project (see ../shared/data/README.md); never copied into it."
    assert (SHARED/'chest_xray_224').is_dir(), f"real test data not found at {SHARED}; set PNEUMONIA_SHARED_DATA"
    return SHARED


def run_cli(*args, check=True):
    "Run one of the project's console scripts; return the finished process (text output)."
    proc = subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True,
                          env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    if check: assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope='session')
def messy_sample(shared, tmp_path_factory):
    "A copy of the raw-looking sample with one bad file of each kind added to train/NORMAL."
    d = tmp_path_factory.mktemp('messy')/'chest_xray'
    shutil.copytree(shared/'chest_xray_sample', d)
    normal = d/'train'/'NORMAL'
    good = next(normal.glob('*.jpeg')).read_bytes()
    (normal/'truncated.jpeg').write_bytes(good[:len(good)//3])
    (normal/'x.jpeg').write_text('not an image at all')
    (normal/'empty.jpeg').write_bytes(b'')
    Image.new('L', (1, 1), 200).save(normal/'tiny.png')
    return d
