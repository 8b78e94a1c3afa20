"""On PYTHONPATH, makes this Python look like the GPU machine to the project: the packages the machine lacks and that the
project uses elsewhere (MLflow, the web service's, scikit-image) cannot be imported. The GPU script's dry run runs under
it, so a step that needs one of them fails here, not in the few minutes of a lent GPU."""
import importlib.abc, sys

ABSENT = {'mlflow', 'fastapi', 'prometheus_client', 'skimage'}   # not starlette: this venv's fastprogress needs it, the machine's pinned one does not

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ABSENT: raise ModuleNotFoundError(f"No module named {name!r} (the GPU machine has none)", name=name)
        return None

sys.meta_path.insert(0, Absent())
