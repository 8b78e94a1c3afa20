"""On PYTHONPATH, makes this Python look like the GPU machine to the project: the packages the project uses elsewhere
and that neither the machine nor the wheels `scripts/device_pack.py` derives for it have (`NOT_ON_DEVICE` there:
MLflow, the web server and clients, spaCy, the compressed-DICOM decoders; scikit-image, a test tool) cannot be found.
The GPU script's dry run runs under it, so a step that needs one of them fails here, not in the few minutes of a lent
GPU. They are hidden from the path finder itself, so `importlib.util.find_spec` says None as it does there (libraries
such as accelerate probe for optional packages that way) and an import fails with ModuleNotFoundError."""
import importlib.machinery

ABSENT = {'mlflow', 'uvicorn', 'httpx', 'aiohttp', 'multipart', 'python_multipart', 'spacy', 'skimage'}
# not fasthtml: this venv's fastprogress imports it (the machine gets fastprogress 1.0.3, which does not); not the
# compressed-DICOM decoders: pylibjpeg loads the installed ones through their entry points (the rehearsal checks that)
_find_spec = importlib.machinery.PathFinder.find_spec

def _find_present(cls, name, path=None, target=None):
    return None if name.split('.')[0] in ABSENT else _find_spec(name, path, target)

importlib.machinery.PathFinder.find_spec = classmethod(_find_present)
