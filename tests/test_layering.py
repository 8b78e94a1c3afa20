"The library's import layering, read from its source: no cycle, light rooms stay light, light commands do not drag heavy rooms."
import ast, subprocess, sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from conftest import ROOT

LIB = ROOT/'pneumonia_nb'
HEAVY = {'torch', 'torchvision', 'fastai', 'timm', 'fastapi', 'starlette', 'sklearn', 'matplotlib', 'mlflow', 'pandas'}
LIGHT = ('cli', 'config', 'images', 'schema', 'records', 'settings', 'workers', 'middleware', 'tracking', 'loadtest')   # importable without any of HEAVY (pandas: tracking only)


def top_level_imports(path:Path) -> tuple[set[str], set[str]]:
    "The project modules and the outside packages `path` imports at module level (imports inside functions are deliberate: lazy)."
    own, outside = set(), set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').startswith('pneumonia_nb')):
            name = (node.module or '').removeprefix('pneumonia_nb').lstrip('.')
            if name: own.add(name.split('.')[0])
        elif isinstance(node, ast.ImportFrom): outside.add(node.module.split('.')[0])
        elif isinstance(node, ast.Import): outside |= {a.name.split('.')[0] for a in node.names if a.name != 'pneumonia_nb'}
    return own, outside


def graph() -> dict[str, tuple[set[str], set[str]]]:
    return {p.stem: top_level_imports(p) for p in sorted(LIB.glob('*.py')) if not p.stem.startswith('_')}


def closure(g:dict, module:str) -> set[str]:
    "`module` and every project module it imports, directly or not."
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen: seen.add(m); todo += g[m][0]
    return seen


def test_no_import_cycle():
    g = graph()
    try: order = list(TopologicalSorter({m: own for m, (own, _) in g.items()}).static_order())
    except CycleError as e: raise AssertionError(f"import cycle: {e.args[1]}") from None
    assert set(order) == set(g)


def test_light_rooms_import_nothing_heavy():
    g = graph()
    for room in LIGHT:
        pulled = {m: g[m][1] & (HEAVY - ({'pandas'} if room == 'tracking' else set())) for m in closure(g, room)}
        assert not any(pulled.values()), f"{room} pulls in {pulled}"


def test_light_commands_do_not_drag_heavy_rooms():
    g = graph()
    for command, never in {'pacs': {'serve', 'evaluate', 'train'}, 'predict': {'evaluate', 'train', 'serve'},
                           'promote': {'train', 'evaluate'}, 'serve': {'evaluate', 'train'}, 'drift': {'train', 'evaluate', 'serve'}, 'loadtest': {'serve', 'core', 'data'}}.items():
        assert not closure(g, command) & never, f"{command} imports {closure(g, command) & never}"


def test_light_rooms_import_without_torch():   # so every command's --help is quick (tests/test_cli.py)
    code = f"import sys; import {', '.join('pneumonia_nb.' + r for r in LIGHT)}; print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert loaded in ("[]", "['pandas']"), loaded   # pandas: tracking reads the run's history with it
