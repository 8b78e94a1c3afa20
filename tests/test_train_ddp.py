"`pneumonia_train --processes 2`: one training as two DDP processes under torchrun, gloo on the CPU (issue 21, part 1)."
import json
from pathlib import Path

from conftest import run_cli

ARGS = ('--arch', 'cnn', '--epochs', '4', '--img_size', '64', '--bs', '16', '--aug_mult', '0', '--no_mlflow', '--quiet')


def test_two_processes_share_each_epoch_and_end_with_one_model(shared, tmp_path, monkeypatch):
    monkeypatch.setenv('GLOO_SOCKET_IFNAME', 'lo')   # gloo's rendezvous and traffic stay on the loopback
    monkeypatch.setenv('OMP_NUM_THREADS', '1')        # one thread per process on the 2 cores
    train = lambda runs, *extra: Path(run_cli('pneumonia_train', '--data', shared/'chest_xray_sample', *ARGS, '--runs', runs, *extra).stdout.splitlines()[-1])
    ddp, one = train(tmp_path/'ddp', '--processes', '2'), train(tmp_path/'one')
    # rank 0 alone wrote: one run folder, the one-process run's files but the executed notebook, one log line per epoch
    assert list((tmp_path/'ddp').iterdir()) == [ddp]
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in one.iterdir() if p.name != 'train.ipynb')
    assert len((ddp/'history.csv').read_text().splitlines()) == 1 + 4
    procs, alone = (json.loads((d/'config.json').read_text())['processes'] for d in (ddp, one))
    assert (procs['world_size'], procs['global_batch'], procs['batch_per_process'], procs['backend']) == (2, 16, 8, 'gloo')
    # each rank took half of every epoch: as many steps as the one process, half its images per step
    for epoch, solo in enumerate(alone['ranks'][0]['epochs']):
        seen = [r['epochs'][epoch] for r in procs['ranks']]
        assert [s['batches'] for s in seen] == [solo['batches']] * 2 and [s['images'] for s in seen] == [solo['images'] // 2] * 2
    assert procs['ranks'][0]['parameters_sha256'] == procs['ranks'][1]['parameters_sha256']   # gradients averaged: one model
    # close to the one-process run with the same global batch and seed, not equal: each step's 16 films are other
    # films of the shuffled epoch (two halves), BatchNorm normalises 8 films, not 16, and the best epoch is chosen on
    # validation metrics that count one padded film twice. How far a seed alone moves one-process runs of this
    # configuration on these 21 validation films (seeds 42-44): ROC-AUC 0.66-0.75, loss 0.62-0.68; measured between the
    # two runs here: ROC-AUC 0.664 vs 0.673, loss 0.766 vs 0.620. The bounds are that order of noise, not more.
    m, m1 = (json.loads((d/'metrics.json').read_text()) for d in (ddp, one))
    assert abs(m['roc_auc'] - m1['roc_auc']) <= 0.1 and abs(m['loss'] - m1['loss']) <= 0.2, (m, m1)
    assert m['n'] == m1['n'] == 21
