"DataLoaders from a split CSV made by the CLI, on the real data (issue 2, acceptance 4)."
import pytest
import torch
from PIL import Image

import numpy as np

from conftest import run_cli
from pneumonia_nb.data import subset_images
from pneumonia_nb.images import to_gray8
from pneumonia_nb.dataloaders import inference_dataloader, xray_dataloaders


@pytest.fixture(scope='module')
def full_csv(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp('split')/'split.csv'
    run_cli('pneumonia_split', '--data', shared/'chest_xray_224', '--out', out)
    return out


def test_batches_are_normalised_single_channel_with_both_labels(full_csv, shared):
    dls = xray_dataloaders(full_csv, shared/'chest_xray_224', bs=64)
    assert (len(dls.train_ds), len(dls.valid_ds)) == (4716, 516)
    xs, ys = zip(*[dls.train.one_batch() for _ in range(3)])
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (192, 1, 224, 224) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.15 and abs(x.std().item() - 1) < 0.15
    assert set(y.tolist()) == {0, 1}
    assert dls.valid.one_batch()[0].shape == (64, 1, 224, 224)
    assert set(torch.cat([yb for _, yb in dls.valid]).tolist()) == {0, 1}


def test_test_loader_covers_the_official_test_rows(full_csv, shared):
    tdl = inference_dataloader(subset_images('test', shared/'chest_xray_224'), shared/'chest_xray_224', bs=16)
    assert len(tdl.dataset) == 40
    x, y = tdl.one_batch()
    assert x.shape == (16, 1, 224, 224)


def test_rgb_sample_images_load_as_their_luminance(shared, tmp_path):
    "fastai's PILImageBW opens any file as `L`, so the mode proves nothing: compare the pixels with `to_gray8`."
    csv = tmp_path/'sample.csv'
    run_cli('pneumonia_split', '--data', shared/'chest_xray_sample', '--out', csv)
    dls = xray_dataloaders(csv, shared/'chest_xray_sample', bs=8, size=128)
    rgb = [i for i, p in enumerate(dls.train_ds.items.path)
           if Image.open(shared/'chest_xray_sample'/p).mode == 'RGB']
    assert len(rgb) >= 5
    for i in rgb[:5]:
        with Image.open(shared/'chest_xray_sample'/dls.train_ds.items.path.iloc[i]) as src:
            assert np.array_equal(np.asarray(dls.train_ds[i][0]), np.asarray(to_gray8(src)))


def test_show_batch_cli_writes_a_picture(full_csv, shared, tmp_path):
    png = tmp_path/'batch.png'
    proc = run_cli('pneumonia_show_batch', '--split', full_csv, '--data', shared/'chest_xray_224', '--out', png, '--bs', '8')
    assert 'batch (8, 1, 224, 224) torch.float32' in proc.stdout
    assert Image.open(png).size[0] > 300
