import os, shutil, subprocess, sys, time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from pneumonia_nb.core import free_port, shared_data
from pneumonia_nb.pacs import MODALITY, SERIES_UID, SOP_UID, STUDY_UID, _value, local_orthanc
from pneumonia_nb.sr import sr_result

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope='session')
def shared():
    "The real X-rays (see `shared_data` in nbs/00_core.ipynb); never copied into the project. Tests that need them skip without them."
    try: return shared_data()
    except FileNotFoundError as e: pytest.skip(str(e))


@pytest.fixture(scope='session')
def chromium():
    "Debian's headless Chromium (the /docs page and the documentation site): a failure in CI, which installs it, a skip elsewhere."
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    if not path: (pytest.fail if os.environ.get('CI') else pytest.skip)('headless Chromium is needed (apt-get install chromium; .ci/run installs it)')
    return path


def run_cli(*args, check=True, cwd=None):
    "Run one of the project's console scripts; return the finished process (text output)."
    proc = subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    if check: assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@contextmanager
def serving(*args, timeout:float=120, scheme:str='http', verify=True, env:dict|None=None):
    "A real `pneumonia_serve ARGS` (`env` added to its environment) on a free 127.0.0.1 port, once ready: yields (url, process); stopped after."
    port = free_port()
    proc = subprocess.Popen([str(BIN/'pneumonia_serve'), *map(str, args), '--port', str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1', **(env or {})})
    url, deadline = f'{scheme}://127.0.0.1:{port}', time.time() + timeout
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f'{url}/ready', timeout=2, verify=verify).status_code == 200: break
            except httpx.HTTPError: pass
            assert time.time() < deadline, f'server not ready in {timeout} s'
            time.sleep(0.5)
        yield url, proc
    finally: proc.terminate(); proc.wait(10)


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


@pytest.fixture()
def orthanc(tmp_path):
    "A real Orthanc with DICOMweb on a free 127.0.0.1 port (its DICOMweb root): a failure in CI, which installs it, a skip elsewhere."
    if not shutil.which('Orthanc'): (pytest.fail if os.environ.get('CI') else pytest.skip)('Orthanc is needed (apt-get install orthanc orthanc-dicomweb; .ci/run installs them)')
    with local_orthanc(tmp_path/'orthanc') as url: yield url


def stored_reports(client) -> dict:
    "The SRs in the PACS, read back, by the SOP Instance UID of the film each refers to."
    out = {}
    for st in client.search_for_studies():
        for se in client.search_for_series(_value(st, STUDY_UID)):
            if _value(se, MODALITY) != 'SR': continue
            for i in client.search_for_instances(_value(st, STUDY_UID), _value(se, SERIES_UID)):
                r = sr_result(client.retrieve_instance(_value(st, STUDY_UID), _value(se, SERIES_UID), _value(i, SOP_UID)))
                out[r['source_uid']] = r
    return out
