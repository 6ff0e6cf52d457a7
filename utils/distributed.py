"""torchrun's processes (this one among them), and Ctrl-C or SIGTERM as a request to stop after a step.

`Processes` is this process's place (rank 0 of 1 without torchrun), with the collectives a run
needs: sums, averaged buffers, and `agree`, which gives every process the same verdict on a user
error so that none waits in a collective. `join_processes` joins torchrun's process group;
`stop_requests` turns Ctrl-C and SIGTERM into a request that the training loop honours after a step.
"""

import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils import cli, devices


class StopRequest:
    """Set by SIGINT (Ctrl-C) or SIGTERM while `stop_requests()` is active: `signal` holds the
    signal's name, for a loop to stop at its next safe point. A second signal stops at once.
    Processes forked from this one (DataLoader workers) inherit the handler but ignore it: the
    terminal sends Ctrl-C to all of them, and only this process stops the run and says so."""

    def __init__(self):
        self.signal = ""
        self.pid = os.getpid()

    def handle(self, number: int, frame) -> None:
        if os.getpid() != self.pid:
            return
        if self.signal:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number).name
        print(f"\n{self.signal}: stopping after this step, then saving (send it again to stop at once)",
              file=sys.stderr, flush=True)


@contextlib.contextmanager
def stop_requests():
    """Within: SIGINT and SIGTERM set the yielded StopRequest instead of raising. Python delivers
    signals to the main thread only: elsewhere the request is never set and signals act as before."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.signal(number, request.handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclass(frozen=True)
class Processes:
    """This process's place among those torchrun started: rank 0 of 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # among the processes of this machine

    def agree(self, work):
        """work()'s result, where a UserError of work in any process is raised in every process (the
        lowest rank's message), so that all end with the same one line and none is left waiting in a
        collective. Every process must call it at the same point: it is one collective."""
        result, message = None, ""
        try:
            result = work()
        except cli.UserError as error:
            message = str(error)
        if self.world_size > 1:
            messages = [""] * self.world_size
            dist.all_gather_object(messages, message)
            message = next((text for text in messages if text), "")
        if message and self.world_size > 1:  # every process says it before any exits: torchrun then stops none
            sys.stderr.write(f"error: {message}\n")  # one write: the lines of two processes do not interleave
            sys.stderr.flush()
            dist.barrier()
            raise cli.Reported(message)
        if message:
            raise cli.UserError(message)
        return result

    def local_leaders_first(self, work):
        """work() in the first process of each machine, then in the others: one download or
        generation of a dataset per machine, which the others then read. A UserError in any
        process is raised in all of them (agree)."""
        result = self.agree(work if self.local_rank == 0 else lambda: None)
        if self.world_size == 1:
            return result
        return self.agree(lambda: result if self.local_rank == 0 else work())

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """values (a tensor) summed over all processes; values itself in a single process."""
        if self.world_size > 1:
            dist.all_reduce(values)
        return values

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """values summed over all processes (the same list back in a single process)."""
        if self.world_size == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def average_buffers(self, net: torch.nn.Module) -> None:
        """Make the batch-norm running statistics the mean over all processes, so every process
        (and the checkpoint) holds the same model."""
        if self.world_size == 1:
            return
        for buffer in net.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.world_size


def join_processes(device_name: str = "auto") -> tuple[torch.device, Processes]:
    """This process's device (--device: devices.pick_device) and Processes. Under torchrun
    (WORLD_SIZE > 1) it joins the process group: NCCL with one GPU per process (cuda:LOCAL_RANK), or
    gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = devices.pick_device(device_name)
    if world_size == 1:
        return device, Processes()
    if device.type not in ("cuda", "cpu"):
        raise cli.UserError(f"torchrun runs on CUDA GPUs or on CPU, not on {device.type}; set --device=cpu or cuda")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, Processes(dist.get_rank(), world_size, int(os.environ["LOCAL_RANK"]))
