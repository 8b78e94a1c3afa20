"""The house's size limits, read from the source (issue 34): small modules, functions and exported cells; short
lines; a short README."""
import ast, json, statistics

from conftest import ROOT

LIB = sorted(p for p in (ROOT/'pneumonia_nb').glob('*.py') if not p.name.startswith('_'))
MAX_MODULE, MAX_FUNCTION, MAX_CELL, MEDIAN_CELL, WIDTH, MAX_LONG_SHARE, MAX_README = 400, 40, 40, 9, 120, 0.01, 150


def exported_cells() -> list[tuple[str, int]]:
    "(notebook and cell id, lines after the `#| export` line) of every exported code cell."
    out = []
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and src.startswith('#| export'):
                out.append((f"{nb.name} #{c.get('id')}", len(src.splitlines()) - 1))
    return out


def test_modules_and_functions_are_small():
    big = {p.name: n for p in LIB if (n := len(p.read_text().splitlines())) > MAX_MODULE}
    assert not big, f"modules over {MAX_MODULE} lines: {big}"
    long = {f"{p.stem}.{f.name}": f.end_lineno - f.lineno + 1 for p in LIB for f in ast.walk(ast.parse(p.read_text()))
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > MAX_FUNCTION}
    assert not long, f"functions over {MAX_FUNCTION} lines: {long}"


def test_exported_cells_are_small():
    cells = exported_cells()
    assert len(cells) > 100, len(cells)
    assert statistics.median(n for _, n in cells) <= MEDIAN_CELL
    assert not (big := [c for c in cells if c[1] > MAX_CELL]), f"exported cells over {MAX_CELL} lines: {big}"


def test_few_long_lines_and_a_short_readme():
    lines = [line for p in LIB for line in p.read_text().splitlines()]
    long = [line for line in lines if len(line) > WIDTH]
    assert len(long) <= MAX_LONG_SHARE * len(lines), f"{len(long)} of {len(lines)} library lines over {WIDTH}: {long[:5]}"
    assert len((ROOT/'README.md').read_text().splitlines()) <= MAX_README
