"""What travels to the GPU machine (issue 33): the wheel list is derived from the package's requirements, the size check
refuses an oversize tree before any device time is spent, and the rehearsal fails when a wheel is missing."""
import os, shutil, subprocess, sys, uuid

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT/'scripts'))
import device_pack   # noqa: E402

PY = sys.executable


def test_the_wheels_are_what_the_requirements_need_and_the_machine_lacks():
    pins = dict(p.split('==') for p in device_pack.wheel_list())
    names = {device_pack.norm(n) for n in pins}
    assert {'fastai', 'fastcore', 'papermill', 'ipykernel', 'pydicom', 'highdicom', 'crepes', 'fastapi'} <= names
    assert not names & {'torch', 'torchvision', 'timm', 'numpy', 'pandas', 'scikit-learn', 'scipy', 'pillow'}   # the machine's
    assert not names & {'mlflow', 'spacy', 'uvicorn', 'debugpy', 'jedi', 'python-fasthtml'}   # no GPU step imports them
    assert pins['fastprogress'] == '1.0.3'   # DEVICE_PINS: without the web framework 1.1 imports
    assert 'pydicom' not in {device_pack.norm(p.split('==')[0]) for p in device_pack.wheel_list(drop=['pydicom'])}


def test_the_size_check_counts_on_disk_and_refuses_an_oversize_tree():
    small = subprocess.run([PY, 'scripts/device_pack.py', 'check'], cwd=ROOT, capture_output=True, text=True)
    assert small.returncode == 0 and small.stdout.startswith('what travels: ') and small.stdout.strip().endswith('MiB of 64')
    folder = ROOT/'.data'/f'pytest-{uuid.uuid4().hex[:8]}'   # an ignored folder, carried as a device call would
    try:
        folder.mkdir(parents=True)
        for i in range(2000): (folder/f'{i}.txt').write_text('x')   # 2,000 one-byte files: 8 MB on disk, 2 kB of bytes
        (folder/'big.bin').write_bytes(os.urandom(60 * 2**20))
        big = subprocess.run([PY, 'scripts/device_pack.py', 'check', '--carry', str(folder.relative_to(ROOT))], cwd=ROOT,
                             capture_output=True, text=True)
        assert big.returncode == 1 and 'over the device\'s limit' in big.stderr and folder.name in big.stderr, big
        total = float(big.stdout.split()[2])
        assert total >= float(small.stdout.split()[2]) + 60 + 7, big.stdout   # the small files at their blocks, not bytes
    finally: shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize('drop', [[], ['pydicom']])
def test_the_rehearsal_imports_every_module_and_fails_without_a_wheel(tmp_path, drop):
    proc = subprocess.run([PY, 'scripts/rehearse_gpu_machine.py', '--imports_only', '--work', str(tmp_path/'r'),
                           *(['--drop', *drop] if drop else [])], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if drop:
        assert proc.returncode == 1 and "pneumonia_nb.images: No module named 'pydicom'" in proc.stderr, proc.stderr[-2000:]
    else:
        assert proc.returncode == 0 and 'every module imports' in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_data_travels_as_one_tar_or_its_parts(shared, tmp_path):
    one = device_pack.pack_data(shared/'chest_xray_site', tmp_path/'one')
    parts = device_pack.pack_data(shared/'chest_xray_site', tmp_path/'parts', part_mib=0.5)
    assert [p.name for p in one] == ['chest_xray_site.tar'] and len(parts) == 4 and parts[0].name == 'chest_xray_site.tar.00'
    assert b''.join(p.read_bytes() for p in parts) == one[0].read_bytes()   # cat NAME.tar.?? gives the tar back
    with pytest.raises(SystemExit, match='already exists'): device_pack.pack_data(shared/'chest_xray_site', tmp_path/'parts')
