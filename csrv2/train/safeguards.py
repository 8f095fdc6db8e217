"""What keeps a training run safe: numerical faults stop it before an update, signals stop it at a step boundary.

fault = non_finite(parts, grad_norm, world, device)   # "" or what is not finite, agreed over ranks
stop = GracefulStop()                                 # SIGINT / SIGTERM → stop.agreed(world, device) becomes True
"""

from __future__ import annotations

import math
import signal
import threading

import torch

from csrv2 import distributed


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT / SIGTERM after a checkpoint of the last finished step was written."""


class GracefulStop:
    """SIGINT / SIGTERM handlers for the training loop: the first signal asks the loop to stop after the current
    step (it then writes a checkpoint); a second one interrupts at once. Installed only in the main thread (signal
    handlers cannot be set elsewhere); `restore()` puts the previous handlers back."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal_name = ""
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        if self.signal_name:  # the second signal: do not wait for the step
            self.restore()
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once, without a checkpoint")
        self.signal_name = signal.Signals(signum).name

    def agreed(self, world: distributed.World, device: torch.device) -> bool:
        """True once any rank has been signalled (all ranks then stop at the same step)."""
        if not world.active:
            return bool(self.signal_name)
        flag = torch.tensor([bool(self.signal_name)], device=device)
        return bool(distributed.any_across_ranks(flag, world)[0])

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


def gradient_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of the parameters' gradients (what clip_grad_norm_ measures), without touching them."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def non_finite(parts: dict[str, float], grad_norm: float, world: distributed.World, device: torch.device) -> str:
    """What is not finite in one optimizer step ("" when all is well), agreed over ranks so that all stop together.

    parts: this rank's loss parts; grad_norm: the norm of the rank-averaged gradients (the same on every rank)."""
    bad = [name for name, value in parts.items() if not math.isfinite(value)]
    if not math.isfinite(grad_norm):
        bad.append(f"gradient norm ({grad_norm})")
    anywhere = distributed.any_across_ranks(torch.tensor([bool(bad)], device=device), world)
    if not bad and bool(anywhere[0]):
        return "a loss part on another rank is not finite"
    return "non-finite " + ", ".join(bad) if bad else ""
