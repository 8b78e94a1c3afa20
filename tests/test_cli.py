"""Every command answers `--help`, and refuses a wrong option, without importing its room: its options live in the light
`cli` module and torch, fastai and timm are imported only after they are parsed (issue 34). Checked by putting modules
of those names that refuse to load first on the path, not by a clock, which a busy machine defeats (8.7 s for a
`--help` beside two trainings)."""
import os, subprocess, sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

SCRIPTS = [e for e in entry_points(group='console_scripts') if e.value.startswith('pneumonia_nb.')]
BIN = Path(sys.executable).parent


ROOM = ('torch', 'fastai', 'timm')


@pytest.fixture(scope='module')
def without_room(tmp_path_factory) -> dict:
    "An environment in which importing torch, fastai or timm fails, naming the module."
    poisoned = tmp_path_factory.mktemp('room')
    for name in ROOM: (poisoned/f'{name}.py').write_text(f"raise ImportError('{name} imported before the options were parsed')\n")
    return {**os.environ, 'PYTHONPATH': str(poisoned)}


def run(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)


def test_every_command_is_a_face_in_cli():
    assert len(SCRIPTS) >= 18 and all(e.value.startswith('pneumonia_nb.cli:') for e in SCRIPTS), SCRIPTS


@pytest.mark.parametrize('command', sorted(e.name for e in SCRIPTS))
def test_help_answers_without_the_room(command, without_room):
    out = run(BIN/command, '--help', env=without_room)
    assert out.returncode == 0 and out.stdout.startswith('usage: '), out.stderr[-2000:]


def test_a_wrong_option_is_refused_before_the_room_loads(without_room):
    out = run(BIN/'pneumonia_eval', '--modle', 'x', env=without_room)
    assert out.returncode == 2 and 'unrecognized arguments: --modle' in out.stderr, out.stderr


def test_the_poisoned_room_does_stop_a_command_that_needs_it(without_room):
    "The check can fail: a command past its parsing, which loads torch, is stopped by the poisoned module."
    out = run(BIN/'pneumonia_eval', '--model', 'models/default', '--data', 'nowhere', env=without_room)
    assert out.returncode != 0 and 'imported before the options were parsed' in out.stderr, out.stderr[-2000:]
