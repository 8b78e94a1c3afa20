"""A/B of `pneumonia_serve` against an earlier commit's, interleaved, on this machine (issue 37).

    .venv/bin/python scripts/serve_ab.py --base COMMIT --out reports/serve-ab/NAME [--rounds 3] [--arms B=--workers 1 ...]

Arm A is the service as it was at `--base` (its `pneumonia_nb/` extracted with `git archive`, imported first on
PYTHONPATH), every other arm the working tree's, with the extra serve options given (`--arms NAME=OPTIONS`; default
one arm `B` with none; leading `VAR=VALUE` words set the server's environment, e.g. `C=MALLOC_ARENA_MAX=16 --lanes 2`).
Each round starts every arm's server in turn (order rotated round by round: this machine's
speed drifts), and measures it with the same load generator (the working tree's `load_test`): 1 client × 60 requests
and 32 clients × 600, one real film a request, after a warm-up. Reports images/s, p50/p95 latency and the server's
cores busy (its `/metrics`; an old server without the process collector is measured from /proc instead), and
writes `ab.json` and `ab.md` (medians per arm, ratios to A). Never replaces an existing `--out`.
"""
from __future__ import annotations
import argparse, asyncio, io, json, os, shlex, signal, socket, statistics, subprocess, sys, tarfile, tempfile, time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LOADS = ((1, 60), (32, 600))   # clients, requests


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def extract(commit:str, into:Path) -> Path:
    "The package as it was at `commit`, under `into` (for PYTHONPATH)."
    tar = subprocess.run(['git', 'archive', commit, 'pneumonia_nb'], cwd=ROOT, check=True, capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(into, filter='data')
    return into


def proc_cpu_s(pid:int) -> float:
    "CPU seconds (user + system) of process `pid` and its live descendants (uvicorn's workers) so far, from /proc."
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    children = [int(c) for t in Path(f'/proc/{pid}/task').iterdir() for c in (t/'children').read_text().split()]
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK') + sum(proc_cpu_s(c) for c in children)


def start(arm:str, options:str, base:Path|None, model:str) -> tuple[subprocess.Popen, str]:
    "A server for `arm` on a free port, ready; `options`: leading `VAR=VALUE` words go to its environment, the rest to `pneumonia_serve`."
    port, words = free_port(), shlex.split(options)
    env_words = [w for w in words[:next((i for i, w in enumerate(words) if w.startswith('-')), len(words))]]
    env = dict(os.environ, HF_HUB_OFFLINE='1', **({'PYTHONPATH': str(base)} if base else {}), **dict(w.split('=', 1) for w in env_words))
    cmd = [str(ROOT/'.venv/bin/python'), '-P', str(ROOT/'.venv/bin/pneumonia_serve'),   # -P: the extracted package, not the working tree's, for arm A
          
           '--model', model, '--port', str(port), '--log', '', *words[len(env_words):]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url = f'http://127.0.0.1:{port}'
    workers = int(words[words.index('--workers') + 1]) if '--workers' in words else 1
    for _ in range(900):   # ready: every worker has loaded its model (one model_info gauge per process)
        try:
            if httpx.get(f'{url}/metrics', timeout=1).text.count('pneumonia_model_info{') >= workers: return proc, url
        except httpx.HTTPError: pass
        time.sleep(0.2)
    proc.kill(); raise RuntimeError(f'{arm}: the server did not become ready')


def measure(url:str, proc:subprocess.Popen, images:list[bytes]) -> dict:
    "Each load of `LOADS` after a warm-up: the load test's result, with cores busy from /proc where /metrics has no process metrics."
    from pneumonia_nb.loadtest import load_test
    asyncio.run(load_test(url, images, 8, 80))   # warm-up: allocator, thread pools, JIT-free but cache-warm
    out = {}
    for clients, n in LOADS:
        c0, t0, g0 = proc_cpu_s(proc.pid), time.perf_counter(), time.process_time()
        r = asyncio.run(load_test(url, images, clients, n))
        wall = time.perf_counter() - t0
        cores, generator = (proc_cpu_s(proc.pid) - c0) / wall, (time.process_time() - g0) / wall
        out[f'c{clients}'] = dict(images_per_s=r['images_per_s'], p50_ms=r['p50_ms'], p95_ms=r['p95_ms'], errors=r['errors'], first_errors=r['first_errors'],
                                  cores_busy=round(cores, 2), cores_busy_metrics=(r['server'] or {}).get('cores_busy'),
                                  load_generator_cores=round(generator, 2))
    return out


def summary(runs:list[dict], arms:list[str]) -> str:
    "Markdown: every run, then medians per arm with ratios to A."
    lines = ['| round | arm | 1 client: images/s | p95 ms | 32 clients: images/s | p50 / p95 ms | server cores busy | load generator cores | errors |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in runs:
        a, b = r['c1'], r['c32']
        lines.append(f"| {r['round']} | {r['arm']} | {a['images_per_s']} | {a['p95_ms']} | {b['images_per_s']} | {b['p50_ms']} / {b['p95_ms']} | {b['cores_busy']} | {b['load_generator_cores']} | {a['errors'] + b['errors']} |")
    med = lambda arm, load, k: statistics.median(r[load][k] for r in runs if r['arm'] == arm)
    lines += ['', '| arm | 1 client: images/s | 1 client p95 ms | 32 clients: images/s (× A) | 32 p95 ms | 32 cores busy |', '|---|---|---|---|---|---|']
    for arm in arms:
        lines.append(f"| {arm} | {med(arm, 'c1', 'images_per_s')} | {med(arm, 'c1', 'p95_ms')} | {med(arm, 'c32', 'images_per_s')} "
                     f"({med(arm, 'c32', 'images_per_s') / med('A', 'c32', 'images_per_s'):.2f}×) | {med(arm, 'c32', 'p95_ms')} | {med(arm, 'c32', 'cores_busy')} |")
    return '\n'.join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--base', required=True); p.add_argument('--out', required=True); p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--model', default='models/default'); p.add_argument('--images', default=str(ROOT.parent/'shared/data/chest_xray_sample/test'))
    p.add_argument('--arms', nargs='*', default=['B='], help='NAME=SERVE_OPTIONS for each arm of the working tree')
    args = p.parse_args()
    out = Path(args.out)
    if out.exists(): sys.exit(f'serve_ab: {out} already exists; choose another --out.')
    from pneumonia_nb.images import expand_paths
    images = [f.read_bytes() for f in expand_paths([args.images])]
    base = extract(args.base, Path(tempfile.mkdtemp(prefix='serve-ab-')))
    arms = {'A': ('', base), **{a.split('=', 1)[0]: (a.split('=', 1)[1], None) for a in args.arms}}
    runs, names = [], list(arms)
    for rnd in range(1, args.rounds + 1):
        order = names[rnd - 1:] + names[:rnd - 1] if rnd <= len(names) else names[::-1]
        for arm in order:
            proc, url = start(arm, arms[arm][0], arms[arm][1], args.model)
            try: runs.append(dict(round=rnd, arm=arm, **measure(url, proc, images)))
            finally: proc.send_signal(signal.SIGINT); proc.wait(30)
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    out.mkdir(parents=True)
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    (out/'ab.json').write_text(json.dumps(dict(base=args.base, head=commit, arms={k: v[0] for k, v in arms.items()}, loads=LOADS, runs=runs), indent=2) + '\n')
    (out/'ab.md').write_text(f"# pneumonia_serve A/B: A = {args.base}, others = {commit[:12]} (working tree)\n\n{summary(runs, names)}\n")
    print((out/'ab.md').read_text())
    if bad := [f"round {r['round']} arm {r['arm']}" for r in runs if r['c1']['errors'] or r['c32']['errors']]:
        sys.exit(f"serve_ab: requests failed in {', '.join(bad)}: those throughputs are not comparable (see ab.json's first_errors)")


if __name__ == '__main__': main()
