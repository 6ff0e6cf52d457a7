"""Run by tests/test_train.py under torchrun: train.train() with the command line's hyperparameters,
then save this rank's model to OUT/rank<N>.pt, so the test can compare the ranks.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py OUT --epochs=2 ...
"""

import os
import sys
from pathlib import Path

import torch

import cli  # the repo is on PYTHONPATH
import train

nets = []
build = train.training_state


def keep_the_model(*args, **kwargs):
    state = build(*args, **kwargs)
    nets.append(state[0])
    return state


train.training_state = keep_the_model
train.train(cli.parse_hyperparameters(train, sys.argv[2:]))
torch.save(nets[0].state_dict(), Path(sys.argv[1]) / f"rank{os.environ['RANK']}.pt")
