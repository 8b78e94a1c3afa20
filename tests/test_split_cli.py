"`pneumonia_split` end to end on the real data (issue 2, acceptance 2 and 3)."
import re
import pandas as pd
import pytest

from conftest import run_cli


@pytest.fixture(scope='module')
def full_split(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp('split')/'s.csv'
    proc = run_cli('pneumonia_split', '--data', shared/'chest_xray_224', '--out', out)
    return out, proc.stdout


def test_counts_match_the_protocol(full_split):
    df = pd.read_csv(full_split[0])
    assert list(df.columns[:4]) == ['path', 'label', 'split', 'patient']
    assert df.split.value_counts().to_dict() == {'train': 4716, 'valid': 516, 'test': 40}


def test_no_patient_in_both_train_and_valid(full_split):
    df = pd.read_csv(full_split[0])
    assert not set(df.patient[df.split == 'train']) & set(df.patient[df.split == 'valid'])
    assert re.search(r'patients: \d+ train, \d+ valid, 0 shared', full_split[1])   # which patients: the draw follows the pixels' hashes


def test_valid_is_stratified_and_keeps_official_val(full_split):
    df = pd.read_csv(full_split[0])
    pool = df[df.split != 'test']
    share = lambda d: (d.label == 'PNEUMONIA').mean()
    assert abs(share(pool[pool.split == 'valid']) - share(pool)) < 0.01
    assert (df.split[df.official_split == 'val'] == 'valid').all()
    assert (df.split[df.official_split == 'test'] == 'test').all()


def test_same_seed_same_csv_other_seed_other_csv(full_split, shared, tmp_path):
    again, other = tmp_path/'again.csv', tmp_path/'other.csv'
    run_cli('pneumonia_split', '--data', shared/'chest_xray_224', '--out', again, '--seed', '42')
    run_cli('pneumonia_split', '--data', shared/'chest_xray_224', '--out', other, '--seed', '7')
    assert again.read_bytes() == full_split[0].read_bytes()
    assert other.read_bytes() != full_split[0].read_bytes()
    a, b = pd.read_csv(again), pd.read_csv(other)
    assert set(a.path[a.split == 'valid']) != set(b.path[b.split == 'valid'])
    assert (b.split == 'valid').sum() == 516


def test_never_overwrites_a_different_split(full_split, shared):
    before = full_split[0].read_bytes()
    proc = run_cli('pneumonia_split', '--data', shared/'chest_xray_224', '--out', full_split[0], '--seed', '3', check=False)
    assert proc.returncode != 0
    assert 'already exists and differs' in proc.stderr and str(full_split[0]) in proc.stderr and '--force' in proc.stderr
    assert full_split[0].read_bytes() == before


def test_bad_files_are_named_and_excluded(messy_sample, tmp_path):
    out = tmp_path/'messy.csv'
    proc = run_cli('pneumonia_split', '--data', messy_sample, '--out', out)
    reasons = {
        'truncated.jpeg': 'unreadable: image file is truncated',
        'x.jpeg': 'not an image',
        'empty.jpeg': 'empty file (0 bytes)',
        'tiny.png': 'too small for a chest X-ray: 1x1 px',
    }
    for name, reason in reasons.items():
        line = next(ln for ln in proc.stdout.splitlines() if name in ln)
        assert reason in line, line
    rejected = pd.read_csv(out.with_suffix('.rejected.csv'))
    assert sorted(rejected.path.str.rsplit('/', n=1).str[-1]) == sorted(reasons)
    df = pd.read_csv(out)
    assert len(df) == 256 and not df.path.str.contains('|'.join(reasons)).any()
    assert all((messy_sample/'train'/'NORMAL'/n).exists() for n in reasons)  # reported, never deleted


def test_missing_data_says_how_to_get_it(tmp_path):
    proc = run_cli('pneumonia_split', '--data', tmp_path/'nothing', '--out', tmp_path/'s.csv', check=False)
    assert proc.returncode != 0
    assert 'does not exist' in proc.stderr and 'paultimothymooney/chest-xray-pneumonia' in proc.stderr
    assert not (tmp_path/'s.csv').exists()
