"""Every command answers `--help`, and a wrong option, in under 2 s: its options live in the light `cli` module and its
room (torch, fastai, timm) is imported only after they are parsed (issue 34)."""
import subprocess, sys, time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

SCRIPTS = [e for e in entry_points(group='console_scripts') if e.value.startswith('pneumonia_nb.')]
BIN = Path(sys.executable).parent


def timed(*args) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    return out, time.perf_counter() - t0


def test_every_command_is_a_face_in_cli():
    assert len(SCRIPTS) >= 18 and all(e.value.startswith('pneumonia_nb.cli:') for e in SCRIPTS), SCRIPTS


@pytest.mark.parametrize('command', sorted(e.name for e in SCRIPTS))
def test_help_answers_in_under_two_seconds(command):
    out, took = timed(BIN/command, '--help')
    assert out.returncode == 0 and out.stdout.startswith('usage: '), out.stderr[-2000:]
    assert took < 2, f"{command} --help took {took:.2f} s"


def test_a_wrong_option_is_refused_before_the_room_loads():
    out, took = timed(BIN/'pneumonia_eval', '--modle', 'x')
    assert out.returncode == 2 and 'unrecognized arguments: --modle' in out.stderr, out.stderr
    assert took < 2, took
