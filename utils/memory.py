"""How much memory is left: refuse work that cannot fit before it starts, with the setting to lower.
"""

from utils.cli import DatasetError


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as file:
            fields = dict(line.split(":", 1) for line in file)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_memory(needed: int, what: str, fix: str) -> None:
    """DatasetError saying how much memory what needs, and the fix, if needed is over what is available."""
    available = available_memory()
    if available is not None and needed > available:
        raise DatasetError(f"the {what} need {needed / 2**30:.1f} GiB of memory, and {available / 2**30:.1f} GiB "
                           f"is available; {fix}")
