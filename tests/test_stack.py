"""Issue 35's end-to-end test of the container stack (`compose.yaml`): the images `make image` built, brought up with
podman-compose on free 127.0.0.1 ports; three DICOM films stored in the containerised Orthanc get exactly three
structured reports from the containerised watcher, still three after the watcher restarts with its state removed; the
service's health check passes and its counters are read from Prometheus' HTTP API; everything is torn down after.
Marked `stack`, so the ordinary run leaves it out: `.ci/run` builds the images and then runs `pytest -m stack`."""
import io, os, shutil, subprocess, time, uuid

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from conftest import ROOT, sr_instances, stored_reports
from pneumonia_nb.core import free_port
from pneumonia_nb.images import expand_paths, film_to_dicom

pytestmark = pytest.mark.stack
IMAGES = ('localhost/pneumonia_nb:latest', 'localhost/pneumonia_nb-orthanc:latest', 'localhost/pneumonia_nb-prometheus:latest')


def podman(*args, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(['podman', *map(str, args)], capture_output=True, text=True, **kw)
    if check: assert proc.returncode == 0, f"podman {' '.join(map(str, args))}: {proc.stdout}{proc.stderr}"
    return proc


def wait_for(what:str, check, timeout:float=180, every:float=1):
    "Call `check` until it returns something true (returned), or fail after `timeout` seconds naming `what`."
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        try:
            if (out := check()): return out
        except (httpx.HTTPError, OSError) as e: last = e
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s ({last or 'no error'})")


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    "The compose project up on free ports: yields its name and URLs; `down` with its volumes after."
    if not shutil.which('podman-compose'): (pytest.fail if os.environ.get('CI') else pytest.skip)('podman-compose is needed (bash deploy/podman-host.sh)')
    for image in IMAGES:
        if podman('image', 'exists', image, check=False).returncode: pytest.fail(f'{image} is missing: run make image first')
    name = f'pnbtest{uuid.uuid4().hex[:8]}'
    ports = dict(SERVICE_PORT=free_port(), ORTHANC_PORT=free_port(), PROMETHEUS_PORT=free_port(), WATCH_INTERVAL=2)
    compose = lambda *a: subprocess.run(['podman-compose', '-p', name, '-f', ROOT/'compose.yaml', *a], capture_output=True, text=True,
                                        cwd=ROOT, env={**os.environ, **{k: str(v) for k, v in ports.items()}})
    up = compose('up', '-d')
    assert up.returncode == 0, up.stdout + up.stderr
    urls = dict(service=f"http://127.0.0.1:{ports['SERVICE_PORT']}", orthanc=f"http://127.0.0.1:{ports['ORTHANC_PORT']}",
                prometheus=f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}")
    try:
        wait_for('the service ready', lambda: httpx.get(urls['service'] + '/ready', timeout=2).status_code == 200)
        wait_for('Orthanc answering', lambda: httpx.get(urls['orthanc'] + '/dicom-web/studies', timeout=2).status_code == 200)
        yield name, urls
    finally:
        logs = {s: podman('logs', f'{name}_{s}_1', check=False).stdout[-2000:] for s in ('service', 'watcher', 'orthanc', 'prometheus')}
        down = compose('down', '-v')
        for v in ('service-logs', 'orthanc-db', 'watcher-state'): podman('volume', 'rm', '-f', f'{name}_{v}', check=False)
        podman('network', 'rm', '-f', f'{name}_default', check=False)   # podman-compose 1.0.3's down leaves it
        print(logs, down.stdout[-500:])


def test_three_films_get_three_reports_once_and_the_counters_reach_prometheus(stack, shared):
    name, urls = stack
    films = [pydicom.dcmread(io.BytesIO(film_to_dicom(Image.open(f)))) for f in expand_paths([shared/'chest_xray_sample'/'test'])[:3]]
    client = DICOMwebClient(urls['orthanc'] + '/dicom-web')
    client.store_instances(films)
    uids = sorted(str(f.SOPInstanceUID) for f in films)
    reported = lambda: sorted(stored_reports(client)) == uids and len(sr_instances(client)) == 3
    wait_for('three reports', reported)
    # the watcher restarts with its state removed: the PACS, not the state, says what is reported
    watcher = f'{name}_watcher_1'
    podman('stop', '-t', '5', watcher)
    podman('run', '--rm', '--user', '0', '-v', f'{name}_watcher-state:/state', IMAGES[0], 'rm', '/state/state.json')
    podman('start', watcher)
    wait_for('the restarted watcher passing over the reported films',
             lambda: 'skipped (already_reported 3)' in podman('logs', '--since', '1m', watcher).stdout)
    assert len(sr_instances(client)) == 3 and sorted(stored_reports(client)) == uids
    # the service: its health check, its user, two predictions over HTTP, and its counters as Prometheus scraped them
    assert podman('healthcheck', 'run', f'{name}_service_1', check=False).returncode == 0
    assert podman('exec', f'{name}_service_1', 'id', '-u').stdout.strip() == '10001'   # not root
    png = [('files', (f.name, f.read_bytes(), 'image/jpeg')) for f in expand_paths([shared/'chest_xray_sample'/'test'])[:2]]
    assert httpx.post(urls['service'] + '/predict', files=png, timeout=60).status_code == 200
    query = lambda: httpx.get(urls['prometheus'] + '/api/v1/query', params=dict(query='sum(pneumonia_predictions_total)')).json()
    result = wait_for('Prometheus scraping the two predictions', lambda: [r for r in query()['data']['result'] if float(r['value'][1]) == 2])
    assert result
