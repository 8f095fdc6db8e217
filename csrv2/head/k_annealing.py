"""CSRv2 progressive k-annealing: k as a pure function of the optimiser step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KAnnealing:
    """k_t = round(k_start·(1 − p) + k_end·p), p = min(1, step / (decay_fraction · total_steps)).

    k decreases linearly from k_start to k_end over the first decay_fraction of the steps, then stays
    at k_end. k_start is clipped to at most hidden // 4 (when hidden is given) and at least k_end.
    decay_fraction = 0 means no annealing (k_end from step 0).
    """

    k_start: int = 64
    k_end: int = 2
    total_steps: int = 1000
    decay_fraction: float = 0.7
    hidden: int | None = None

    def __post_init__(self):
        if self.k_end < 1:
            raise ValueError(f"KAnnealing: k_end must be ≥ 1, got {self.k_end}")
        if self.total_steps < 1:
            raise ValueError(f"KAnnealing: total_steps must be ≥ 1, got {self.total_steps}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"KAnnealing: decay_fraction must lie in [0, 1], got {self.decay_fraction}")
        if self.hidden is not None and self.k_end > self.hidden:
            raise ValueError(f"KAnnealing: k_end={self.k_end} exceeds hidden={self.hidden}")

    @property
    def start(self) -> int:
        """k_start after clipping to [k_end, hidden // 4]."""
        k = self.k_start if self.hidden is None else min(self.k_start, self.hidden // 4)
        return max(k, self.k_end)

    def __call__(self, step: int) -> int:
        decay_steps = self.decay_fraction * self.total_steps
        p = 1.0 if decay_steps <= 0 else min(1.0, max(step, 0) / decay_steps)
        return int(round(self.start * (1.0 - p) + self.k_end * p))
