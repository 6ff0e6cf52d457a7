import pytest
import torch

from utils import cli, devices


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_dtype_of_the_forward_pass(precision, dtype):
    with devices.autocast(precision, torch.device("cpu")):
        output = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert output.dtype == dtype


@pytest.mark.parametrize("capability, native_bf16, dtype", [
    ("AVX512", True, torch.bfloat16),  # an AVX512-BF16 CPU: bf16 is fast
    ("AVX2", True, torch.float32),  # the same CPU held to AVX2 (ATEN_CPU_CAPABILITY=avx2): emulated, slow
    ("AVX512", False, torch.float32),  # AVX-512 without its bf16 instructions
    ("AVX2", False, torch.float32),  # most laptops
])
def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, capability, native_bf16, dtype):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    with devices.autocast("auto", torch.device("cpu")):
        output = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert output.dtype == dtype


def test_pick_device():
    assert devices.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert devices.pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(cli.UserError, match="no CUDA GPU is available"):
            devices.pick_device("cuda")
    with pytest.raises(cli.UserError, match="unknown device 'gpu0'"):
        devices.pick_device("gpu0")
