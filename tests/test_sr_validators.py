"""The PACS reports (issue 35) as third-party DICOM tools read them: dicom3tools' `dciodvfy` finds no error and no warning,
and dcmtk's `dsrdump` shows the TID 1500 tree, for every kind of answer the watcher stores (`.ci/run` installs both)."""
import io, shutil, subprocess

import pydicom
import pytest
from PIL import Image

from conftest import ROOT
from pneumonia_nb.data import expand_paths, film_to_dicom
from pneumonia_nb.pacs import device_uid, film_result, result_sr
from pneumonia_nb.predict import Detector

TOOLS = [t for t in ('dciodvfy', 'dsrdump') if not shutil.which(t)]
pytestmark = pytest.mark.skipif(bool(TOOLS), reason=f"needs Debian's dicom3tools and dcmtk ({', '.join(TOOLS)} missing)")


@pytest.fixture(scope='module')
def reports(shared, tmp_path_factory):
    "SRs of real films as the watcher makes them: with and without pixel spacing, each decision, the guard's and the tags' verdicts."
    det, out, made = Detector.load(ROOT/'models'/'default', device='cpu'), tmp_path_factory.mktemp('sr'), {}
    films = expand_paths([shared/'chest_xray_sample'/'test'])
    for name, f, tags in (('spacing', films[0], dict(ImagerPixelSpacing=[0.15, 0.15])), ('lateral', films[-1], dict(ViewPosition='LL')),
                          ('adult', films[1], dict(PatientAge='045Y'))):
        film = pydicom.dcmread(io.BytesIO(film_to_dicom(Image.open(f), **tags)))
        res = film_result(det, film)
        for decision in ('NORMAL', 'PNEUMONIA', 'REFER'):
            path = out/f'{name}-{decision}.dcm'
            result_sr(film, {**res, 'decision': decision}, det.model_id).save_as(path, enforce_file_format=True)
            made[path.stem] = path
    return made, det


def test_dciodvfy_finds_no_error_and_no_warning(reports):
    made, _ = reports
    for name, path in made.items():
        proc = subprocess.run(['dciodvfy', str(path)], capture_output=True, text=True)
        said = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip() and l.strip() != 'EnhancedSR']
        assert proc.returncode == 0 and said == [], (name, said)


def test_dsrdump_shows_the_tid1500_tree(reports):
    made, det = reports
    tree = subprocess.run(['dsrdump', str(made['spacing-REFER'])], capture_output=True, text=True, check=True).stdout
    for line in ('<CONTAINER:(,,"Imaging Measurement Report")', '<has obs context CODE:(,,"Observer Type")=(121007,DCM,"Device")>',
                 f'<has obs context UIDREF:(,,"Device Observer UID")="{device_uid(det.model_id)}">',
                 '<has concept mod CODE:(,,"Procedure reported")=(399208008,SCT,"Plain chest X-ray")>', '<contains CONTAINER:(,,"Image Library")',
                 '<contains CONTAINER:(,,"Measurement Group")', f'<has concept mod TEXT:(,,"Algorithm Parameters")="model {det.model_id}">',
                 '<contains CODE:(,,"Finding")=(82334004,SCT,"Indeterminate")>', '<contains CODE:(,,"Recommendation")=(128201,DCM,"For Physician Review")>',
                 '<contains NUM:(,,"Probability")=', '<contains IMAGE:(,,"Source of Measurement")', 'Verification Flag   : UNVERIFIED'):
        assert line in tree, (line, tree)
    lateral = subprocess.run(['dsrdump', str(made['lateral-NORMAL'])], capture_output=True, text=True, check=True).stdout
    assert '(17621005,SCT,"Normal")' in lateral and 'warnings: view' in lateral and 'Image Library' not in lateral   # no spacing: no library entry made up
