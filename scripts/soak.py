"""Issue 23, soak: a served model under steady load for a fixed time, watched from outside.

    .venv/bin/python scripts/soak.py --minutes 10 --clients 32 [--workers 2] --out reports/soak

Starts `pneumonia_serve` on a free loopback port (its request log rotated at `--log_max_mb`, keeping `--log_keep`),
sends single-film predictions from `--clients` concurrent clients for `--minutes` (`pneumonia_nb.loadtest.load_test`),
and every `--every` seconds reads the server's resident memory (/proc), its own request counter (/metrics) and its
drift verdict (/monitor). Writes `soak.json` (settings, git commit, model, images, every sample, the load test's
figures, the log files left) and `soak.png` (memory, throughput and drift p-value over time) into `--out`, which
must not exist yet, and prints the verdicts: errors, memory at the end against after the first minute, rotation,
drift.

The default images are the training population's films at their real aspect ratio (`chest_xray_orig/train`):
traffic that should be called *no drift*.
"""
import asyncio, json, os, platform, random, subprocess, sys, tempfile, time
from pathlib import Path

import httpx
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from fastcore.script import call_parse
from prometheus_client.parser import text_string_to_metric_families

import pneumonia_nb
from pneumonia_nb.core import free_port, shared_data
from pneumonia_nb.images import expand_paths
from pneumonia_nb.loadtest import load_test

def rss_mb(pid:int) -> float:
    "Resident MB of process `pid` and its descendants (the workers of `--workers N`)."
    own = int(next(line for line in open(f'/proc/{pid}/status') if line.startswith('VmRSS')).split()[1]) / 1024
    children = [int(c) for t in Path(f'/proc/{pid}/task').iterdir() for c in (t/'children').read_text().split()]
    return own + sum(rss_mb(c) for c in children)

def predictions_served(metrics_text:str) -> int:
    "Successful /predict requests, from the server's own counter."
    return int(sum(s.value for f in text_string_to_metric_families(metrics_text) for s in f.samples
                   if s.name == 'pneumonia_requests_total' and s.labels.get('endpoint') == '/predict' and s.labels.get('status') == '200'))

def start_server(model:str, port:int, log:Path, log_max_mb:float, log_keep:int, window:int, workers:int=1) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent/'pneumonia_serve'), '--model', model, '--port', str(port), '--log', str(log),
           '--log_max_mb', str(log_max_mb), '--log_keep', str(log_keep), '--window', str(window), '--workers', str(workers)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(240):
        try:
            if httpx.get(f'http://127.0.0.1:{port}/metrics', timeout=2).text.count('pneumonia_model_info{') >= workers: return server   # every worker loaded
        except httpx.TransportError: pass
        if server.poll() is not None: raise SystemExit(f"soak: the server exited: {server.stdout.read()}")
        time.sleep(0.5)
    server.kill(); raise SystemExit("soak: the server was not ready after 120 s")

async def sample(url:str, pid:int, every:float, t0:float, samples:list, stop:asyncio.Event):
    "Every `every` s: seconds since start, server RSS, predictions served, drift verdict and embedding p-value."
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while not stop.is_set():
            metrics, monitor = (await http.get('/metrics')).text, (await http.get('/monitor')).json()
            drift = monitor.get('drift') or {}
            samples.append(dict(t=round(time.perf_counter() - t0, 1), rss_mb=round(rss_mb(pid), 1), served=predictions_served(metrics),
                                window=monitor['window'], verdict=drift.get('verdict'), embeddings_p=(drift.get('embeddings') or {}).get('p_value'),
                                drifted_statistics=drift.get('drifted_statistics'), prediction_drift=(drift.get('prediction_drift') or {}).get('drift')))
            try: await asyncio.wait_for(stop.wait(), every)
            except asyncio.TimeoutError: pass

async def soak(url:str, pid:int, images:list[bytes], clients:int, seconds:float, every:float) -> tuple[dict, list]:
    samples, stop, t0 = [], asyncio.Event(), time.perf_counter()
    sampler = asyncio.create_task(sample(url, pid, every, t0, samples, stop))
    load = await load_test(url, images, clients, requests=None, seconds=seconds)
    stop.set(); await sampler
    return load, samples

def verdicts(load:dict, samples:list, logs:list, log_max_mb:float, log_keep:int, workers:int=1) -> dict:
    after_1min = next(s for s in samples if s['t'] >= 60)
    tested = [s['verdict'] for s in samples if s['verdict']]
    return dict(errors=load['errors'], rss_after_first_minute_mb=after_1min['rss_mb'], rss_end_mb=samples[-1]['rss_mb'],
                rss_end_vs_first_minute=round(samples[-1]['rss_mb'] / after_1min['rss_mb'] - 1, 4), rss_peak_mb=max(s['rss_mb'] for s in samples),
                log_files=len(logs), log_largest_mb=round(max(f['mb'] for f in logs), 2),
                log_rotated_as_configured=1 < len(logs) <= workers * (log_keep + 1) and all(f['mb'] <= log_max_mb for f in logs),
                drift_polls=len(tested), drift_polls_called_drift=tested.count('drift'), final_verdict=samples[-1]['verdict'])

def figure(samples:list, path:Path, title:str):
    t = [s['t'] / 60 for s in samples]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.2))
    ax[0].plot(t, [s['rss_mb'] for s in samples]); ax[0].set(title='server resident memory (MB)', xlabel='minutes', ylim=(0, None))
    rate = [(b['served'] - a['served']) / (b['t'] - a['t']) for a, b in zip(samples, samples[1:])]
    ax[1].plot(t[1:], rate); ax[1].set(title='predictions per second', xlabel='minutes', ylim=(0, None))
    ax[2].plot(t, [s['embeddings_p'] for s in samples], 'o-', ms=3); ax[2].axhline(0.025, color='r', ls='--', lw=1, label='cut (α share)')
    ax[2].set(title='drift: embedding MMD p-value', xlabel='minutes', ylim=(0, 1)); ax[2].legend()
    fig.suptitle(title, fontsize=10); fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)

def git_commit() -> str:
    return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()

@call_parse
def main(model:str='models/default', # Model folder to serve
         images:str=None, # Folder of films to send (default: ../shared/data/chest_xray_orig/train)
         minutes:float=10, # How long to send
         clients:int=32, # Concurrent clients
         every:float=10, # Seconds between samples of memory, throughput and drift
         window:int=200, # The server's monitoring window (images)
         log_max_mb:float=5, # The server's request log rotates past this size
         log_keep:int=3, # ... keeping this many rotated files
         seed:int=0, # Order in which the films are sent
         workers:int=1, # The server's worker processes (`pneumonia_serve --workers`); memory is theirs summed
         out:str='reports/soak'): # Folder for soak.json and soak.png (must not exist)
    out = Path(out)
    if out.exists(): raise SystemExit(f"soak: {out} already exists; choose another --out.")
    folder = Path(images) if images else shared_data()/'chest_xray_orig'/'train'
    films = expand_paths([folder])
    random.Random(seed).shuffle(films)   # clients take films in turn: unshuffled, a window would hold one class, one patient after another
    if not films: raise SystemExit(f"soak: no images in {folder}")
    with tempfile.TemporaryDirectory() as tmp:
        port, log = free_port(), Path(tmp)/'requests.jsonl'
        server = start_server(model, port, log, log_max_mb, log_keep, window, workers)
        try:
            model_id = httpx.get(f'http://127.0.0.1:{port}/ready').json()['model']
            print(f"soak: {clients} clients for {minutes} min on http://127.0.0.1:{port}, {len(films)} films from {folder}", flush=True)
            load, samples = asyncio.run(soak(f'http://127.0.0.1:{port}', server.pid, [f.read_bytes() for f in films], clients, minutes * 60, every))
        finally: server.terminate(); server.wait(30)
        logs = [dict(name=p.name, mb=round(p.stat().st_size / 2**20, 2)) for p in sorted(Path(tmp).glob('requests*.jsonl*'))]   # MB as the server counts them (2**20)
    summary = verdicts(load, samples, logs, log_max_mb, log_keep, workers)
    out.mkdir(parents=True)
    settings = dict(model=model, model_id=model_id, images=str(folder), films=len(films),
                    minutes=minutes, clients=clients, workers=workers, every=every, window=window, log_max_mb=log_max_mb, log_keep=log_keep, seed=seed,
                    git_commit=git_commit(), pneumonia_nb=pneumonia_nb.__version__, python=platform.python_version(), cpus=os.cpu_count())
    (out/'soak.json').write_text(json.dumps(dict(settings=settings, summary=summary, load=load, logs=logs, samples=samples), indent=1) + '\n')
    figure(samples, out/'soak.png', f"{clients} clients × {minutes:g} min, {workers} worker(s), {len(films)} films of {folder.name}; {load['requests']} requests, {load['errors']} errors")
    print(json.dumps(dict(summary, **{k: load[k] for k in ('requests', 'images_per_s', 'p50_ms', 'p95_ms', 'p99_ms')}), indent=1))
