"`pneumonia_serve` over real HTTP on a loopback port: every endpoint, every kind of bad input, metrics, memory (issue 11)."
import io, json, os, re, ssl, subprocess, time
from concurrent.futures import ThreadPoolExecutor


import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import BIN, ROOT, run_cli, serving
from pneumonia_nb.predict import Detector


@pytest.fixture(scope='module')
def run(tiny_run): return tiny_run.path


@pytest.fixture(scope='module')
def server(run, tmp_path_factory):
    "A real uvicorn server on a free 127.0.0.1 port; stopped after the module."
    log = tmp_path_factory.mktemp('serve')/'requests.jsonl'
    with serving('--model', run, '--max_body_mb', '1', '--max_files', '4', '--log', log) as (url, proc): yield url, proc, log


def post(url, *files, **kw):
    return httpx.post(f'{url}/predict', files=[('files', f) for f in files], timeout=60, **kw)


def film(shared, i=0):
    f = sorted((shared/'chest_xray_sample'/'test').rglob('*.jpeg'))[i]
    return f.name, f.read_bytes(), 'image/jpeg'


def png(img):
    buf = io.BytesIO(); img.save(buf, 'PNG' if img.mode != 'CMYK' else 'JPEG'); return buf.getvalue()


def rss_mb(pid):
    return int(next(line for line in open(f'/proc/{pid}/status') if line.startswith('VmRSS')).split()[1]) / 1024


def test_endpoints(server, run):
    url, _, _ = server
    assert httpx.get(f'{url}/health').json() == {'status': 'alive'}
    assert httpx.get(f'{url}/ready').json()['ready'] is True
    card = httpx.get(f'{url}/model').json()
    assert card['arch'] == 'cnn' and card['threshold']['value'] == json.loads((run/'model.json').read_text())['threshold']['value']
    assert '/predict' in httpx.get(f'{url}/openapi.json').json()['paths'] and httpx.get(f'{url}/docs').status_code == 200


def test_predictions_equal_the_library_for_every_image_mode(server, run, shared):
    "16-bit, RGBA, CMYK and palette images are converted exactly as in training: the served probability is the library's."
    url, _, _ = server
    base = Image.open(shared/'chest_xray_sample'/'test'/'NORMAL'/sorted(os.listdir(shared/'chest_xray_sample'/'test'/'NORMAL'))[0])
    variants = {'L': base, 'I;16': Image.fromarray(np.asarray(base).astype(np.uint16) * 257), 'RGBA': base.convert('RGBA'),
                'CMYK': base.convert('CMYK'), 'P': base.convert('P')}
    files = [(f'{k.replace(";", "")}.png', png(v), 'image/png') for k, v in variants.items()][:4]
    r = post(url, *files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body['request_id'] == r.headers['x-request-id'] and body['model']['id'].startswith(run.name)
    expected = Detector.load(run, device='cpu').predict([f[1] for f in files]).prob_pneumonia.to_numpy()
    got = np.array([x['prob_pneumonia'] for x in body['results']])
    assert np.abs(got - expected).max() < 1e-5
    assert {x['label'] for x in body['results']} <= {'NORMAL', 'PNEUMONIA'} and all('threshold' in x for x in body['results'])
    palette = post(url, ('P.png', png(variants['P']), 'image/png'))
    assert palette.status_code == 200


BOMB = png(Image.new('1', (30_000, 30_000)))   # a few KB that would decode to 900 million pixels
SHEET = png(Image.new('L', (9000, 9000), 40))  # under 200 KB, 81 million pixels: refused from its header, never decoded


def bad_requests(shared):
    "(name, files, expected status, expected error text) for each kind of bad input."
    good = film(shared)
    return [
        ('not an image', [('notes.jpeg', b'plain text, not a film', 'image/jpeg')], 200, 'not an image'),   # a usable request: each upload's problem
        ('truncated', [('cut.jpeg', good[1][:len(good[1]) // 3], 'image/jpeg')], 200, 'unreadable'),
        ('bomb', [('bomb.png', BOMB, 'image/png')], 200, 'too large'),
        ('81 million pixels', [('sheet.png', SHEET, 'image/png')], 200, '9000x9000 px is over the limit of 30,000,000 pixels'),
        ('blank', [('blank.png', png(Image.new('L', (300, 300))), 'image/png')], 200, 'blank'),
        ('tiny', [('tiny.png', png(Image.new('L', (4, 4), 9)), 'image/png')], 200, 'too small'),
        ('too many files', [good] * 5, 422, 'limit is 4'),
        ('body too large', [('big.jpeg', os.urandom(1_200_000), 'image/jpeg')], 413, 'over the limit'),
    ]


def test_bad_inputs_get_clear_json_errors(server, shared):
    url, _, _ = server
    for name, files, status, text in bad_requests(shared):
        r = post(url, *files)
        assert r.status_code == status and text in r.text and r.headers['content-type'] == 'application/json', (name, r.status_code, r.text[:300])
        if status == 200: assert 'label' not in r.json()['results'][0] and r.json()['results'][0]['problem_code'], (name, r.text[:300])
    mixed = post(url, film(shared), ('notes.jpeg', b'nope', 'image/jpeg'))   # one good, one bad: the good one is answered
    assert mixed.status_code == 200 and mixed.json()['results'][1]['problem'].startswith('not an image')
    empty = httpx.post(f'{url}/predict', timeout=10)   # no files field: FastAPI's validation, in the project's error body
    assert empty.status_code == 422 and empty.json()['error'] == 'invalid_request' and empty.json()['request_id'] == empty.headers['x-request-id']
    chunked = httpx.post(f'{url}/predict', content=iter([b'x' * 600_000, b'x' * 600_000]), headers={'content-type': 'multipart/form-data; boundary=b'}, timeout=10)
    assert chunked.status_code == 413 and 'passed the limit of 1048576 bytes' in chunked.json()['detail']


def test_500_bad_requests_leave_the_server_healthy_and_lean(server, shared):
    url, proc, _ = server
    post(url, film(shared))
    before = rss_mb(proc.pid)
    kinds = bad_requests(shared)
    with httpx.Client(timeout=60) as client:
        for i in range(500):
            _, files, status, _ = kinds[i % len(kinds)]
            assert client.post(f'{url}/predict', files=[('files', f) for f in files]).status_code == status
    grew = rss_mb(proc.pid) - before
    assert post(url, film(shared)).status_code == 200
    assert grew < 50, f'resident memory grew by {grew:.1f} MB'


def test_concurrent_requests_are_batched(server, shared):
    url, _, _ = server
    def metric(name):
        fams = {f.name: f for f in text_string_to_metric_families(httpx.get(f'{url}/metrics').text)}
        return {s.name: s.value for s in fams[name].samples}
    before = metric('pneumonia_batch_images')
    with ThreadPoolExecutor(16) as ex: codes = list(ex.map(lambda i: post(url, film(shared, i % 40)).status_code, range(64)))
    after = metric('pneumonia_batch_images')
    calls, images = after['pneumonia_batch_images_count'] - before['pneumonia_batch_images_count'], after['pneumonia_batch_images_sum'] - before['pneumonia_batch_images_sum']
    assert codes == [200] * 64 and images == 64 and calls < 64, (calls, images)


def test_metrics_count_what_was_sent_and_the_log_holds_no_images(run, shared, tmp_path):
    "A fresh server: its counters must equal exactly the requests this test sends."
    log = tmp_path/'log.jsonl'
    with serving('--model', run, '--log', log) as (url, _):
        goods = [post(url, film(shared, i)) for i in range(3)]
        bad = post(url, ('x.jpeg', b'nope', 'image/jpeg'))
        text = httpx.get(f'{url}/metrics').text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[('pneumonia_requests_total', (('endpoint', '/predict'), ('status', '200')))] == 4   # the film that is no image too, with its problem
    assert samples[('pneumonia_rejected_inputs_total', (('reason', 'not_an_image'),))] == 1
    labels = [g.json()['results'][0]['label'] for g in goods]
    for label in ('NORMAL', 'PNEUMONIA'):
        assert samples.get(('pneumonia_predictions_total', (('label', label),)), 0) == labels.count(label)
    assert samples[('pneumonia_probability_count', ())] == 3 and bad.json()['results'][0]['problem_code'] == 'not_an_image'
    assert samples[('pneumonia_request_seconds_count', (('endpoint', '/predict'),))] == 4
    assert any(n == 'pneumonia_model_info' for n, _ in samples)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 4 and all('latency_ms' in r and 'request_id' in r for r in records)
    assert records[0]['results'][0]['stats']['width'] > 0 and not list(tmp_path.glob('*.jpeg'))
    assert not any('embedding' in r for rec in records for r in rec['results'])   # issue 36: no image-derived embedding unless --log_embeddings
    name = film(shared, 0)[0]   # the caller gets its file name back; the log keeps only a salted hash of it
    assert goods[0].json()['results'][0]['filename'] == name and records[0]['results'][0]['filename'] != name
    assert name.split('.')[0] not in log.read_text()


def test_bounded_load_test_runs_without_errors(server, shared, tmp_path):
    url, _, _ = server
    out = tmp_path/'load.json'
    run_cli('pneumonia_loadtest', '--url', url, '--clients', '8', '--requests', '80', '--images', shared/'chest_xray_sample'/'test', '--out', out)
    result = json.loads(out.read_text())
    assert result['errors'] == 0 and result['requests'] == 80 and result['images_per_s'] == pytest.approx(80 / result['wall_s'], rel=0.02)
    usage = result['server']   # issue 37: what the run cost the server, from its own /metrics
    assert 0.05 < usage['cores_busy'] <= (os.cpu_count() or 1) + 0.5 and usage['rss_mb_end'] > 100 and usage['samples'] >= 2, usage


def test_short_api_keys_are_refused_before_the_model_loads_and_help_says_so(run, tmp_path):
    "Issue 36: the 16-character minimum is in --help, and a short key is refused in one line without loading the model."
    assert 'at least 16 characters' in ' '.join(run_cli('pneumonia_serve', '--help').stdout.split())   # however argparse wraps it
    (tmp_path/'keys.txt').write_text('short\n')
    proc = run_cli('pneumonia_serve', '--model', run, '--api_keys_file', tmp_path/'keys.txt', check=False)
    assert proc.returncode != 0 and proc.stderr.strip() == 'pneumonia_serve: API keys: 1 API key(s) shorter than 16 characters: use long random keys (e.g. `openssl rand -hex 24`).'


def test_serve_refuses_a_folder_without_a_model(tmp_path):
    proc = subprocess.run([str(BIN/'pneumonia_serve'), '--model', str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and 'is not a model folder' in proc.stderr


def test_api_keys_and_tls_over_real_https(run, shared, tmp_path):
    "HTTPS with a self-signed certificate made here; keys from a file and from the environment; the start-up line says so."
    cert, key, keys = tmp_path/'cert.pem', tmp_path/'key.pem', tmp_path/'keys.txt'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
                    '-addext', 'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True)
    keys.write_text('# one key per line\n' + 'f' * 32 + '\n')
    trust = ssl.create_default_context(cafile=str(cert))
    with serving('--model', run, '--log', tmp_path/'log.jsonl', '--api_keys_file', keys, '--ssl_certfile', cert, '--ssl_keyfile', key,
                 scheme='https', verify=trust, env={'PNEUMONIA_API_KEYS': 'e' * 32}) as (url, proc):
        ask = lambda k: httpx.post(f'{url}/predict', files=[('files', film(shared))], headers={'Authorization': f'Bearer {k}'}, verify=trust, timeout=60)
        assert [ask(k).status_code for k in ('f' * 32, 'e' * 32)] == [200, 200]
        wrong = ask('g' * 32)
        assert (wrong.status_code, wrong.json()['error'], wrong.headers['www-authenticate']) == (401, 'unauthorized', 'Bearer')
        assert [httpx.get(f'{url}{p}', verify=trust).status_code for p in ('/health', '/ready', '/model', '/metrics')] == [200, 200, 401, 401]
        open_paths = [p for p in ('/docs', '/redoc', '/openapi.json', '/monitor') if httpx.get(f'{url}{p}', verify=trust).status_code == 200]
        assert open_paths == ['/docs', '/redoc', '/openapi.json']   # the API's description is open, its data are not
        readme = (ROOT/'README.md').read_text()   # issue 36: what the README says of keys is what the server does
        assert '`/health`, `/ready` and the API\'s description (`/docs`, `/redoc`, `/openapi.json`) stay open' in readme and 'at least 16 characters' in readme
        metrics_401 = httpx.get(f'{url}/openapi.json', verify=trust).json()['paths']['/metrics']['get']['responses']['401']['content']
        assert list(metrics_401) == ['application/json'] and httpx.get(f'{url}/metrics', verify=trust).headers['content-type'] == 'application/json'
        with pytest.raises(httpx.ConnectError): httpx.get(f'{url}/health')        # a client that does not trust the certificate gets nowhere
    line = proc.stdout.read()
    assert f'pneumonia_serve ready at {url}: model' in line and 'API keys required (2 accepted)' in line, line


def test_docs_render_offline_in_headless_chromium(server, chromium):
    "The Swagger UI page draws every operation from the package's own scripts (the loopback server is all Chromium can reach)."
    url, _, _ = server
    dom = subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', '--virtual-time-budget=20000', '--dump-dom', f'{url}/docs'],
                         capture_output=True, text=True, timeout=120).stdout
    drawn = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert drawn == {'/predict', '/health', '/ready', '/model', '/monitor', '/metrics'}, dom[-2000:]


def test_a_request_s_pixels_are_bounded_before_decoding(run, tmp_path):
    "Three 25-million-pixel films pass one by one but not together under --max_megapixels 60; the server's memory stays put."
    film25 = png(Image.fromarray(np.tile(np.arange(5000, dtype=np.uint8), (5000, 1))))
    with serving('--model', run, '--log', tmp_path/'log.jsonl', '--max_megapixels', '60') as (url, proc):
        one = post(url, ('a.png', film25, 'image/png'))
        before = rss_mb(proc.pid)
        refused = post(url, *[(f'{i}.png', film25, 'image/png') for i in range(3)])
        assert one.status_code == 200 and refused.status_code == 413 and refused.json()['error'] == 'too_many_pixels', refused.text
        assert 'hold 75 million pixels; the limit is 60 million' in refused.json()['detail'] and rss_mb(proc.pid) - before < 20


def schemathesis(url:str, *extra) -> subprocess.CompletedProcess:
    "Schemathesis with every check and its own defaults (no project configuration: issue 36) against the live server."
    return subprocess.run([str(BIN/'schemathesis'), 'run', f'{url}/openapi.json', '--checks', 'all', '--max-examples', '100', '--seed', '1', *extra],
                          capture_output=True, text=True, timeout=300)


def test_schema_tells_the_truth_to_schemathesis(server):
    "Zero failures without API keys."
    url, _, _ = server
    proc = schemathesis(url)
    assert proc.returncode == 0 and re.search(r'\d+ generated, \d+ passed(, \d+ skipped)?$', proc.stdout, re.M), proc.stdout[-3000:]


def test_schema_tells_the_truth_to_schemathesis_with_api_keys(run, tmp_path):
    "Zero failures with keys, sent by Schemathesis; /metrics' 401 is JSON and documented so."
    (tmp_path/'keys.txt').write_text('k' * 32 + '\n')
    with serving('--model', run, '--log', '', '--api_keys_file', tmp_path/'keys.txt') as (url, _):
        proc = schemathesis(url, '-H', f"Authorization: Bearer {'k' * 32}")
    assert proc.returncode == 0 and re.search(r'\d+ generated, \d+ passed(, \d+ skipped)?$', proc.stdout, re.M), proc.stdout[-3000:]


def served(text:str, name:str, **labels) -> float:
    "The sum of the samples of metric `name` whose labels include `labels`, from Prometheus text."
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name and labels.items() <= s.labels.items())


def cpu_seconds(pid):
    "User + system CPU seconds of process `pid`, from /proc."
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def test_two_workers_share_the_connections_and_count_every_request_once(run, shared, tmp_path):
    """Issues 21 and 37: `--workers 2` with prometheus-client's multiprocess mode: /metrics counts each request once, whichever
    worker served it; 16 keep-alive clients connecting at once are spread over both workers (each has its own SO_REUSEPORT
    socket: with uvicorn's one shared socket one worker took them all); the server's CPU in /metrics is both workers'."""
    film = next((shared/'chest_xray_sample'/'test'/'NORMAL').glob('*.jpeg')).read_bytes()
    with serving('--model', run, '--workers', '2', '--log', tmp_path/'requests.jsonl', timeout=180) as (url, _):
        for _ in range(240):   # /ready answered by one worker: wait until both have loaded the model (one model_info gauge per process)
            pids = {s.labels['pid'] for f in text_string_to_metric_families(httpx.get(f'{url}/metrics').text) for s in f.samples if s.name == 'pneumonia_model_info'}
            if len(pids) == 2: break
            time.sleep(0.5)
        def client(i):   # one keep-alive connection, three requests
            with httpx.Client(base_url=url, timeout=60) as http:
                return [http.post('/predict', files=[('files', (f'{i}-{j}.jpeg', film, 'image/jpeg'))]).status_code for j in range(3)]
        with ThreadPoolExecutor(16) as pool: codes = sum(pool.map(client, range(16)), [])
        text = httpx.get(f'{url}/metrics').text
        cpu = sum(cpu_seconds(int(p)) for p in pids)
    assert codes == [200] * 48
    assert served(text, 'pneumonia_requests_total', endpoint='/predict', status='200') == 48 and served(text, 'pneumonia_predictions_total') == 48
    assert served(text, 'pneumonia_request_seconds_count', endpoint='/predict') == 48   # histograms are summed too
    per_worker = [len(p.read_text().splitlines()) for p in sorted(tmp_path.glob('requests.*.jsonl'))]
    assert len(per_worker) == 2 and sum(per_worker) == 48 and min(per_worker) >= 3, per_worker   # both served; all on one: 2 in 65,536
    assert 0.8 * cpu <= served(text, 'pneumonia_server_cpu_seconds') <= cpu, (served(text, 'pneumonia_server_cpu_seconds'), cpu)


def test_a_malformed_environment_variable_is_the_command_s_error_not_an_import_failure():
    "Issue 34: `ServeSettings` reads the environment when `pneumonia_serve` runs, not when `pneumonia_nb.serve` is imported."
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'PNEUMONIA_PORT': 'eighty'}
    imported = subprocess.run([str(BIN/'python'), '-c', 'import pneumonia_nb.serve, pneumonia_nb.pacs'], env=env, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    proc = subprocess.run([str(BIN/'pneumonia_serve')], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and proc.stderr.strip() == "pneumonia_serve: PNEUMONIA_PORT='eighty' is not a valid int", proc.stderr
