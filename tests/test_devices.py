import pytest
import torch

from utils import cli
from utils import devices


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_dtype_of_the_forward_pass(precision, dtype):
    with devices.autocast(precision, torch.device("cpu")):
        output = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert output.dtype == dtype
    with devices.autocast("auto", torch.device("cpu")):
        output = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert output.dtype == (torch.bfloat16 if devices.fast_bf16(torch.device("cpu")) else torch.float32)


def test_pick_device():
    assert devices.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert devices.pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(cli.UserError, match="no CUDA GPU is available"):
            devices.pick_device("cuda")
    with pytest.raises(cli.UserError, match="unknown device 'gpu0'"):
        devices.pick_device("gpu0")

