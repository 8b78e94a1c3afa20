"`pneumonia_download` end to end against a local HTTP server on 127.0.0.1 (issue 13): a full download, one that is cut off and resumes with range requests, a corrupt archive, an existing destination, and no network."
import threading, zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import run_cli


class Archive(BaseHTTPRequestHandler):
    "Serves `self.server.body` with range support; drops the connection after `cut` bytes of the first full response when `cut` is set."
    def do_GET(self):
        srv, body = self.server, self.server.body
        rng = self.headers.get('Range')
        srv.requests.append(rng)
        start = int(rng.split('=')[1].split('-')[0]) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header('Content-Length', str(len(body) - start))
        if rng: self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        self.end_headers()
        if srv.cut and not rng:
            self.wfile.write(body[:srv.cut]); self.wfile.flush(); self.connection.shutdown(2); srv.cut = None   # the line drops
            return
        self.wfile.write(body[start:])
    def log_message(self, *args): pass


@pytest.fixture(scope='module')
def archive(shared, tmp_path_factory):
    "A zip of real sample films laid out like the Mendeley archive, with the debris real archives carry."
    path = tmp_path_factory.mktemp('site')/'ChestXRay2017.zip'
    with zipfile.ZipFile(path, 'w') as z:
        films = sorted((shared/'chest_xray_sample'/'train').rglob('*.jpeg'))[::4] + sorted((shared/'chest_xray_sample'/'test').rglob('*.jpeg'))
        for f in films: z.write(f, f'chest_xray/{f.parts[-3]}/{f.parts[-2]}/{f.name}')
        z.writestr('__MACOSX/chest_xray/train/NORMAL/._IM-0001.jpeg', b'debris')
        z.writestr('chest_xray/.DS_Store', b'debris')
    return path.read_bytes()


@pytest.fixture
def server(archive):
    srv = ThreadingHTTPServer(('127.0.0.1', 0), Archive)
    srv.body, srv.cut, srv.requests = archive, None, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown(); srv.server_close()


def url(srv): return f'http://127.0.0.1:{srv.server_port}/ChestXRay2017.zip'


def counts(root):
    return {(s.name, c.name): len(list(c.iterdir())) for s in root.iterdir() for c in s.iterdir()}


def test_full_download_extracts_and_prints_counts_and_attribution(server, archive, tmp_path):
    out = run_cli('pneumonia_download', '--dest', tmp_path, '--url', url(server), '--size', len(archive), '--quiet').stdout
    root = tmp_path/'chest_xray'
    assert (tmp_path/'ChestXRay2017.zip').read_bytes() == archive and not list(tmp_path.glob('*.part'))
    assert counts(root)[('test', 'NORMAL')] == 20 and not list(root.rglob('.*')) and not (root/'__MACOSX').exists()
    assert f"extracted {sum(counts(root).values())} images" in out and 'CC BY 4.0' in out and server.requests == [None]


def test_an_interrupted_download_resumes_with_a_range_request(server, archive, tmp_path):
    server.cut = len(archive) // 3
    run_cli('pneumonia_download', '--dest', tmp_path, '--url', url(server), '--quiet')
    assert server.requests == [None, f'bytes={len(archive) // 3}-']             # the second request asked for the rest only
    assert (tmp_path/'ChestXRay2017.zip').read_bytes() == archive and (tmp_path/'chest_xray'/'train').is_dir()


def test_a_part_left_by_a_killed_run_is_resumed(server, archive, tmp_path):
    (tmp_path/'ChestXRay2017.zip.part').write_bytes(archive[:1000])
    run_cli('pneumonia_download', '--dest', tmp_path, '--url', url(server), '--quiet')
    assert server.requests == ['bytes=1000-'] and (tmp_path/'ChestXRay2017.zip').read_bytes() == archive


def test_a_corrupt_archive_is_refused_and_nothing_is_extracted(server, archive, tmp_path):
    bad = bytearray(archive); bad[len(bad) // 2:len(bad) // 2 + 64] = bytes(64)   # flip bytes inside a member
    server.body = bytes(bad)
    proc = run_cli('pneumonia_download', '--dest', tmp_path, '--url', url(server), '--quiet', check=False)
    assert proc.returncode != 0 and 'corrupt archive' in proc.stderr and 'CRC' in proc.stderr
    assert not (tmp_path/'chest_xray').exists() and (tmp_path/'ChestXRay2017.zip.corrupt').exists()
    wrong = run_cli('pneumonia_download', '--dest', tmp_path/'b', '--url', url(server), '--size', len(archive) + 1, '--quiet', check=False)
    assert wrong.returncode != 0 and f'expected {len(archive) + 1:,}' in wrong.stderr


def test_existing_data_is_left_untouched_and_nothing_is_fetched(server, tmp_path):
    mine = tmp_path/'chest_xray'/'train'/'NORMAL'/'mine.jpeg'
    mine.parent.mkdir(parents=True); mine.write_bytes(b'my own file')
    out = run_cli('pneumonia_download', '--dest', tmp_path, '--url', url(server)).stdout
    assert 'already exists' in out and mine.read_bytes() == b'my own file' and server.requests == []
    assert sorted(p.name for p in tmp_path.rglob('*')) == ['NORMAL', 'chest_xray', 'mine.jpeg', 'train']


def test_without_network_it_says_what_to_do_and_fails(tmp_path):
    proc = run_cli('pneumonia_download', '--dest', tmp_path, '--url', 'http://127.0.0.1:9/ChestXRay2017.zip', '--quiet', check=False)
    assert proc.returncode != 0 and 'could not download' in proc.stderr and 'kaggle datasets download' in proc.stderr
    assert str(tmp_path/'chest_xray') in proc.stderr and not (tmp_path/'chest_xray').exists()
