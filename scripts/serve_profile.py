"""Profile one loaded minute of `pneumonia_serve` with py-spy (issue 37): where the server's CPU time goes, thread by
thread, and who holds the GIL.

    .venv/bin/python scripts/serve_profile.py --out reports/serve-profile/NAME [--clients 32] [--seconds 60] [--base COMMIT]

Two recordings of the same load (py-spy spawns the server, so no ptrace permission is needed): one samples every
thread that is on a CPU (`--idle` marks the rest), one only the thread holding the GIL (`--gil`). Each sample's stack
is put in one stage (decode, preprocessing, model forward, ...) by the frames it holds; startup samples are left out.
Writes `profile.json` (samples by stage and thread), `profile.md` (the tables) and `profile.png` (the picture) under
`--out`, and the raw py-spy stacks (`oncpu.txt.gz`, `gil.txt.gz`). `--base COMMIT` profiles the service as it was at that
commit (its package extracted, first on the server's PYTHONPATH); `--serve` passes options to `pneumonia_serve`.
Never replaces an existing `--out`.
"""
from __future__ import annotations
import argparse, asyncio, collections, gzip, json, os, shlex, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RATE = 100   # samples a second

# the stage of a stack: the first rule (in this order) one of whose markers is in it; markers are frame names or files
STAGES = [('startup', ('_find_and_load', 'Service.start', 'Detector.load', 'lifespan')),
          ('decode', ('read_xray', 'decode (', 'ImageFile.load', 'header_pixels')),
          ('image statistics', ('image_stats',)),
          ('model forward', ('torch/nn/modules', 'timm/')),
          ('preprocessing (fastai pipeline)', ('test_dl', 'after_item', 'after_batch', 'fasttransform', 'fastai/data', 'fastai/vision', 'Detector.prepare (')),
          ('guard and drift projection', ('Guard.', 'Reference.project', 'score (')),
          ('monitoring window', ('watch (', 'DriftWindow')),
          ('request log', ('log_request', 'RequestLog')),
          ('upload parsing (multipart)', ('multipart', 'parse_form', '_get_form', 'UploadFile')),
          ('answer and response (pydantic, JSON)', ('answer (', 'serialize_response', 'jsonable_encoder', 'pydantic', 'render (', 'json/encoder')),
          ('batcher and model call (other)', ('Batcher.', 'Detector.assess', 'model_outputs')),
          ('HTTP (uvicorn, starlette)', ('uvicorn', 'h11', 'httptools', 'starlette', 'fastapi')),
          ('event loop', ('asyncio/', 'selectors'))]


def stage(stack:str) -> str:
    "The stage a py-spy stack belongs to (`other` if no rule matches)."
    return next((name for name, marks in STAGES if any(m in stack for m in marks)), 'other')


def read_raw(path:Path) -> list[tuple[str, str, bool, int]]:
    "(thread, stack, idle, samples) rows of a py-spy raw file (gzipped or not) recorded with --threads (and --idle)."
    rows = []
    for line in (gzip.decompress(path.read_bytes()).decode() if path.suffix == '.gz' else path.read_text()).splitlines():
        stack, _, n = line.rpartition(' ')
        thread, _, frames = stack.partition(';')
        name = thread.split(': ', 1)[1] if ': ' in thread else thread
        leaf = frames.rsplit(';', 1)[-1]
        idle = any(w in leaf for w in ('select (', 'wait (', '_worker (', 'sleep', 'get (')) or not frames
        rows.append((name, frames, idle, int(n)))
    return rows


def tally(rows) -> dict:
    "Busy samples by stage, and busy/idle samples by thread kind, startup excluded."
    stages, threads = collections.Counter(), collections.defaultdict(collections.Counter)
    for thread, frames, idle, n in rows:
        s = stage(frames)
        if s == 'startup': continue
        kind = 'event loop (main thread)' if 'MainThread' in thread else 'worker threads (asyncio.to_thread)' if 'asyncio' in thread else 'other threads'
        threads[kind]['idle' if idle else 'busy'] += n
        if not idle: stages[s] += n
    return dict(stages=dict(stages.most_common()), threads={k: dict(v) for k, v in threads.items()})


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def record(mode:str, out:Path, args) -> dict:
    "Spawn the server under py-spy, load it for `args.seconds` with `args.clients` clients, stop py-spy; the load test's result."
    from pneumonia_nb.images import expand_paths
    from pneumonia_nb.loadtest import load_test
    port, raw = free_port(), out/f'{mode}.txt'
    flags = ['--idle'] if mode == 'oncpu' else ['--gil']
    spy = subprocess.Popen([str(ROOT/'.venv/bin/py-spy'), 'record', '-r', str(RATE), '-f', 'raw', '--threads', *flags, '-o', str(raw), '--',
                            str(ROOT/'.venv/bin/pneumonia_serve'), '--model', args.model, '--port', str(port), '--log', '', *shlex.split(args.serve)],
                           cwd=ROOT, stderr=subprocess.PIPE, text=True, env=dict(os.environ, HF_HUB_OFFLINE='1', **({'PYTHONPATH': str(args.base_dir)} if args.base else {})))
    url = f'http://127.0.0.1:{port}'
    for _ in range(600):
        try:
            if httpx.get(f'{url}/ready', timeout=1).status_code == 200: break
        except httpx.HTTPError: pass
        time.sleep(0.2)
    images = [p.read_bytes() for p in expand_paths([args.images])]
    sys.path.insert(0, str(ROOT/'scripts')); from serve_ab import proc_cpu_s
    server = int(Path(f'/proc/{spy.pid}/task/{spy.pid}/children').read_text().split()[0])   # py-spy's child: the server (py-spy's own CPU left out)
    c0, t0 = proc_cpu_s(server), time.perf_counter()
    result = asyncio.run(load_test(url, images, args.clients, None, args.seconds))
    result['cores_busy_proc'] = round((proc_cpu_s(server) - c0) / (time.perf_counter() - t0), 2)
    spy.send_signal(signal.SIGINT)          # py-spy writes its file; the server is stopped after it
    spy.communicate(timeout=60)
    subprocess.run(['pkill', '-f', f'--port {port}'], check=False)
    return result


def table(t:dict, rate:int, seconds:float) -> str:
    "Markdown: each stage's busy samples as CPU seconds, share of busy time and cores."
    busy = sum(t['stages'].values()) or 1
    lines = ['| stage | CPU s | share of busy | cores |', '|---|---|---|---|']
    lines += [f'| {s} | {n / rate:.1f} | {n / busy:.1%} | {n / rate / seconds:.2f} |' for s, n in t['stages'].items()]
    return '\n'.join(lines)


def picture(oncpu:dict, gil:dict, path:Path):
    "Two horizontal bars: on-CPU time and GIL-holding time by stage."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys([*oncpu['stages'], *gil['stages']]))
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for row, t in enumerate((gil, oncpu)):
        left = 0
        for i, s in enumerate(names):
            v = t['stages'].get(s, 0) / RATE
            ax.barh(row, v, left=left, color=plt.cm.tab20(i % 20), label=s if row == 0 else None); left += v
    ax.set(yticks=[0, 1], yticklabels=['holding the GIL', 'on a CPU (all threads)'], xlabel='seconds of the loaded run (sampled)')
    ax.legend(fontsize=7, ncol=3, loc='upper center', bbox_to_anchor=(0.5, -0.25)); fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches='tight')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True); p.add_argument('--model', default='models/default')
    p.add_argument('--images', default=str(ROOT.parent/'shared/data/chest_xray_sample/test'))
    p.add_argument('--clients', type=int, default=32); p.add_argument('--seconds', type=float, default=60)
    p.add_argument('--base', default=None); p.add_argument('--serve', default='', help='options for pneumonia_serve')
    p.add_argument('--retally', action='store_true', help="recount an existing --out's stacks (after a change to STAGES)")
    args = p.parse_args()
    if args.retally: return report(Path(args.out), args, json.loads((Path(args.out)/'profile.json').read_text())['load'])
    if args.base:
        sys.path.insert(0, str(ROOT/'scripts')); from serve_ab import extract
        args.base_dir = extract(args.base, Path(tempfile.mkdtemp(prefix='serve-profile-')))
    out = Path(args.out)
    if out.exists(): sys.exit(f'serve_profile: {out} already exists; choose another --out.')
    out.mkdir(parents=True)
    loads = {}
    for mode in ('oncpu', 'gil'):
        loads[mode] = record(mode, out, args)
        (out/f'{mode}.txt.gz').write_bytes(gzip.compress((out/f'{mode}.txt').read_bytes())); (out/f'{mode}.txt').unlink()   # a tenth of the size
        print(f"{mode}: {loads[mode]['images_per_s']} images/s, server cores busy {loads[mode]['cores_busy_proc']}", file=sys.stderr)
    report(out, args, loads)


def report(out:Path, args, loads:dict):
    "`profile.json`, `profile.md` and `profile.png` from the stacks in `out` and the loads measured."
    tallies = {mode: tally(read_raw(out/f'{mode}.txt.gz')) for mode in ('oncpu', 'gil')}
    (out/'profile.json').write_text(json.dumps(dict(clients=args.clients, seconds=args.seconds, rate=RATE, model=args.model, load=loads, **tallies), indent=2) + '\n')
    md = [f"# One loaded minute of pneumonia_serve: {args.clients} clients, {args.seconds:g} s, {args.model}", '',
          f"code: {args.base or 'working tree'}; serve options: {args.serve or 'none'}; py-spy {RATE} Hz", '',
          f"on a CPU: {loads['oncpu']['images_per_s']} images/s, server cores busy {loads['oncpu']['cores_busy_proc']} (/proc)", '',
          '## On a CPU, every thread', '',
          "py-spy counts a thread that waits for the GIL, and uvloop's loop while it runs native code (polling included), as on a CPU: these "
          "rows over-count (their sum exceeds the cores /proc measured) and say where threads *are*, not what they cost. The GIL rows are exact.", '',
          table(tallies['oncpu'], RATE, args.seconds), '',
          '## Holding the GIL', '', table(tallies['gil'], RATE, args.seconds), '',
          '## Threads (samples)', '', json.dumps(tallies['oncpu']['threads'], indent=2), '', '![profile](profile.png)', '']
    (out/'profile.md').write_text('\n'.join(md))
    picture(tallies['oncpu'], tallies['gil'], out/'profile.png')
    print(out/'profile.md')


if __name__ == '__main__': main()
