"What the README says about the commands is what they do (issue 36: a new user found claims that were false)."
import inspect, re, subprocess

from conftest import ROOT
from importlib.metadata import entry_points

README = (ROOT/'README.md').read_text()
COMMANDS = [e.load() for e in entry_points(group='console_scripts') if e.value.startswith('pneumonia_nb.')]   # every command


def test_the_commands_said_to_take_force_are_those_that_do():
    end = README.index('replace theirs when told `--force`')
    said = README[README.rindex('only ', 0, end):end]   # "only `a`, `b` and `c` replace theirs when told `--force`"
    named = set(re.findall(r'`(pneumonia_\w+)`', said))
    have = {f.__name__ for f in COMMANDS if 'force' in inspect.signature(f).parameters}
    assert named == have, (named, have)


def test_the_batch_picture_is_drawn_at_the_size_the_recipe_trains_at():
    dry = subprocess.run(['make', '-n', 'run', 'DATA=somewhere'], cwd=ROOT, capture_output=True, text=True).stdout
    assert '--img_size 96' in dry and 'at the size the recipe trains at (96 px for the `cpu` recipe)' in README, dry[-2000:]


def test_the_readme_says_how_long_the_tests_take_and_how_to_run_one():
    assert re.search(r'`make test` \(about \d+ minutes', README)
    assert '.venv/bin/pytest tests/' in README and '.venv/bin/nbdev_test --path nbs/' in README
