"""Issue 23, defect 4: what hostile-but-small requests cost a running server (time, and its resident memory).

    pneumonia_serve --model models/default --log '' &        # then, with its pid:
    .venv/bin/python scripts/decode_cost.py --url http://127.0.0.1:8000 --pid PID

Sends, each `--repeat` times: 16 PNGs of 9000 x 9000 (81 million pixels each, about 80 KB) in one request, and 16
PNGs of 5000 x 5000 (25 million each: under the per-image limit, 400 million together); prints each request's
status, seconds, and the server's resident memory after it; then 6 of the 5000 x 5000 (150 million: within every
limit, so decoded) to see whether memory comes back.
"""
import io, time

import httpx
import numpy as np
from fastcore.script import call_parse
from PIL import Image

def png(a) -> bytes:
    buf = io.BytesIO(); Image.fromarray(a).save(buf, 'PNG'); return buf.getvalue()

def rss_mb(pid:int) -> float:
    return int(next(line for line in open(f'/proc/{pid}/status') if line.startswith('VmRSS')).split()[1]) / 1024

@call_parse
def main(url:str='http://127.0.0.1:8000', # A running pneumonia_serve
         pid:int=None, # Its process id, to read its resident memory
         repeat:int=3): # Times to send each kind of request
    gradient = png(np.tile(np.arange(5000, dtype=np.uint8), (5000, 1)))
    kinds = {'16 x 9000x9000 PNG': (16, png(np.full((9000, 9000), 40, np.uint8))), '16 x 5000x5000 PNG': (16, gradient), '6 x 5000x5000 PNG': (6, gradient)}
    if pid: print(f"server RSS before: {rss_mb(pid):.0f} MB")
    for name, (n, data) in kinds.items():
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = httpx.post(f'{url}/predict', files=[('files', (f'{i}.png', data, 'image/png')) for i in range(n)], timeout=300)
            print(f"{name} ({n * len(data) / 1e6:.1f} MB body): {r.status_code} {r.json().get('error')} in {time.perf_counter() - t0:.2f} s"
                  + (f"; server RSS {rss_mb(pid):.0f} MB" if pid else ''))
