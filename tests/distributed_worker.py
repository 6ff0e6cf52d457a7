"""Run by tests/test_train.py under torchrun: train.train() with the command line's hyperparameters,
then save this rank's model to OUT/rank<N>.pt, so the test can compare the ranks.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py OUT --epochs=2 ...
"""

import os
import sys
from pathlib import Path

import torch

import train
from utils import cli  # the repo is on PYTHONPATH

runs = []
build = train.setup


def keep_the_run(*args, **kwargs):
    runs.append(build(*args, **kwargs))
    return runs[-1]


train.setup = keep_the_run
train.train(cli.parse_hyperparameters(train, sys.argv[2:]))
torch.save(runs[0].net.state_dict(), Path(sys.argv[1]) / f"rank{os.environ['RANK']}.pt")
