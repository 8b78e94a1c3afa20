"""On PYTHONPATH, makes this Python look like the GPU machine to the project: the packages the machine lacks and that the
project uses elsewhere (MLflow, the web service's, scikit-image) cannot be found. The GPU script's dry run runs under
it, so a step that needs one of them fails here, not in the few minutes of a lent GPU. They are hidden from the path
finder itself, so `importlib.util.find_spec` says None as it does there (libraries such as accelerate probe for
optional packages that way) and an import fails with ModuleNotFoundError."""
import importlib.machinery

ABSENT = {'mlflow', 'fastapi', 'prometheus_client', 'skimage'}   # not starlette: this venv's fastprogress needs it, the machine's pinned one does not
_find_spec = importlib.machinery.PathFinder.find_spec

def _find_present(cls, name, path=None, target=None):
    return None if name.split('.')[0] in ABSENT else _find_spec(name, path, target)

importlib.machinery.PathFinder.find_spec = classmethod(_find_present)
