"""Where and how the math runs: the device, bf16 or fp32, the memory layout, and the allocator.

`pick_device` turns --device into a torch.device; `autocast` gives the precision context of
--precision (auto: bf16 where it is fast, else fp32); `memory_format` the layout of --channels_last;
`describe_device` names the device and its CPU class for timings.
"""

import contextlib
import ctypes
import platform

import torch

from utils.cli import UserError

PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available, then mps, then cpu; otherwise the named device, which must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA GPU is available; use --device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} asked for, but MPS is not available; use --device=auto or cpu")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether --precision (auto | bf16 | fp32) trains in bf16 autocast on device: bf16, or auto
    where bf16 is fast (fast_bf16)."""
    return precision == "bf16" or (precision == "auto" and fast_bf16(device))


def describe_device(device: torch.device) -> str:
    """The device in words, for timings: a GPU's name, or a CPU's model, the instruction set torch's
    kernels use (AVX2, AVX512, ...), whether it has native bf16, and torch's thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    if device.type != "cpu":
        return device.type
    name = platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as cpuinfo:
        name = next(line for line in cpuinfo if line.startswith("model name")).split(":", 1)[1].strip()
    return (f"CPU {name}, {torch.backends.cpu.get_cpu_capability()} kernels, native bf16: "
            f"{'yes' if fast_bf16(device) else 'no'}, {torch.get_num_threads()} threads")


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast speeds up convolutions on device: CUDA GPUs that support bf16, and CPUs
    with native bf16 instructions (AVX512-BF16 or AMX: faster training than fp32, docs/performance.md),
    unless torch's kernels are held below AVX-512 (ATEN_CPU_CAPABILITY=avx2, as when
    emulating an AVX2 CPU). Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up with a fallback
        native = any(getattr(torch.cpu, name, lambda: False)() for name in checks)
        return native and torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return False


def autocast(precision: str, device: torch.device):
    """bf16 autocast where --precision asks for it (uses_bf16), else a context that does nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(precision, device))


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC (channels_last: faster convolutions on CPUs) or the default NCHW layout."""
    return torch.channels_last if channels_last else torch.contiguous_format


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    By default each buffer over a few MB (a batch of activations) is mmap-ed when allocated and
    unmapped when freed, so every training step page-faults its activations afresh: slower
    training on small CPUs. Does nothing where malloc is not glibc's.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    for option, value in ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 256 << 20)):
        libc.mallopt(option, value)


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt() options
