import os, shutil, subprocess, sys, time

# pytest-xdist runs several test processes at once, and each training, kernel or server they start would give torch a thread
# per core: OpenMP threads that outnumber the cores wait on each other (two tiny trainings at once on this 2-core machine:
# 55 s with torch's default, 37 s with one thread each). So each process's share of the cores, set before torch is imported.
os.environ.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')))))
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from filelock import FileLock
from PIL import Image

from pneumonia_nb.core import free_port, shared_data
from pneumonia_nb.pacs import MODALITY, SERIES_UID, SOP_UID, STUDY_UID, _value, local_orthanc
from pneumonia_nb.sr import sr_result

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# the files that take longest (measured: `--durations`), first: pytest-xdist hands whole files to its processes in the
# order collected, so a long file collected last would run alone at the end while the other process waits
LONGEST_FIRST = ('test_experiments_cli.py', 'test_train_cli.py', 'test_site_cli.py', 'test_serve_http.py', 'test_gpu_script.py',
                 'test_ensemble_cli.py', 'test_promote_cli.py', 'test_dicom_cli.py', 'test_train_ddp.py', 'test_docs_site.py',
                 'test_bench_cli.py', 'test_install.py', 'test_monitor_http.py')


def pytest_collection_modifyitems(items):
    "Order the tests by `LONGEST_FIRST`, then as collected (a stable sort keeps each file's own order)."
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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


@dataclass(frozen=True)
class TinyRun:
    "The shared tiny training run: its folder (evaluated into `path/'eval'`) and what `pneumonia_eval` printed."
    path: Path
    eval_stdout: str


@pytest.fixture(scope='session')
def tiny_run(shared, tmp_path_factory) -> TinyRun:
    """The one tiny training run the tests share (issue 34, item 9): `pneumonia_train` of the cnn, 1 epoch at 64 px on the
    raw-looking sample, logged to MLflow in its runs folder, then `pneumonia_eval` into its folder. Made once for the whole
    session, also when pytest-xdist runs it in several processes (the first to get the lock trains; the others wait and read
    it: pytest-xdist's documented recipe). Tests read it and never change it (one that must change a folder copies it);
    training is run again only in the tests of training itself."""
    root = tmp_path_factory.getbasetemp().parent   # shared by xdist's workers (their own temp folders are below it)
    made = root/'tiny-run.txt'
    with FileLock(str(made) + '.lock'):
        if not made.is_file():
            proc = run_cli('pneumonia_train', '--data', shared/'chest_xray_sample', '--arch', 'cnn', '--epochs', '1', '--img_size', '64',
                           '--bs', '32', '--runs', root/'tiny-runs')
            run = proc.stdout.strip().splitlines()[-1]
            made.write_text(run + '\n' + run_cli('pneumonia_eval', '--model', run, '--data', shared/'chest_xray_sample').stdout)
    run, eval_stdout = made.read_text().split('\n', 1)
    return TinyRun(Path(run), eval_stdout)


@pytest.fixture()
def orthanc(tmp_path):
    "A real Orthanc with DICOMweb on a free 127.0.0.1 port (its DICOMweb root): a failure in CI, which installs it, a skip elsewhere."
    if not shutil.which('Orthanc'): (pytest.fail if os.environ.get('CI') else pytest.skip)('Orthanc is needed (apt-get install orthanc orthanc-dicomweb; .ci/run installs them)')
    with local_orthanc(tmp_path/'orthanc') as url: yield url


def sr_instances(client) -> list[str]:
    "The SOP Instance UIDs of every SR in the PACS (duplicates included, unlike stored_reports)."
    return [_value(i, SOP_UID) for st in client.search_for_studies() for se in client.search_for_series(_value(st, STUDY_UID))
            if _value(se, MODALITY) == 'SR' for i in client.search_for_instances(_value(st, STUDY_UID), _value(se, SERIES_UID))]


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
