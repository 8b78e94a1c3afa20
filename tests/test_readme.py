"What the README says about the commands is what they do (issue 36: a new user found claims that were false)."
import inspect, re, subprocess

from conftest import ROOT
import pneumonia_nb.data, pneumonia_nb.dataloaders, pneumonia_nb.evaluate, pneumonia_nb.monitor, pneumonia_nb.predict, pneumonia_nb.promote
import pneumonia_nb.ensemble, pneumonia_nb.loadtest, pneumonia_nb.serve, pneumonia_nb.site

README = (ROOT/'README.md').read_text()
COMMANDS = [pneumonia_nb.data.pneumonia_split, pneumonia_nb.dataloaders.pneumonia_show_batch, pneumonia_nb.evaluate.pneumonia_eval,
            pneumonia_nb.monitor.pneumonia_reference, pneumonia_nb.monitor.pneumonia_drift, pneumonia_nb.predict.pneumonia_predict,
            pneumonia_nb.promote.pneumonia_promote, pneumonia_nb.loadtest.pneumonia_loadtest, pneumonia_nb.site.pneumonia_calibrate,
            pneumonia_nb.ensemble.pneumonia_ensemble]


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
