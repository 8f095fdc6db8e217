"""Usage balancing without an auxiliary loss (DeepSeek-V3's router bias, applied to a sparse head's latents).

After every optimizer step each latent's encoder bias b_lat[j] moves by rate · sign(mean usage − usage[j]): up for
latents used less than the average latent in that step, down for those used more. The bias sits in the pre-activation,
so it changes both which latents win the top-k and their values: a bias that only steered the selection would pick
latents whose pre-activations are negative, which the ReLU then zeros (30 points lost on R8 in our probes).
The total shift is clipped to ± limit, so balancing can nudge but never dominate what the gradient learns.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UsageBalancer(nn.Module):
    """Holds the cumulative shift (h,) it has applied, so a resumed run continues from it (saved in checkpoints)."""

    def __init__(self, hidden: int, rate: float, limit: float):
        super().__init__()
        if rate <= 0 or limit <= 0:
            raise ValueError(f"UsageBalancer: rate ({rate}) and limit ({limit}) must be > 0")
        self.rate, self.limit = rate, limit
        self.register_buffer("shift", torch.zeros(hidden))

    @torch.no_grad()
    def step(self, bias: Tensor, usage: Tensor) -> None:
        """bias (h,): the head's b_lat, updated in place. usage (h,): rows in which each latent fired this step."""
        usage = usage.to(self.shift)
        target = (self.shift + self.rate * torch.sign(usage.mean() - usage)).clamp(-self.limit, self.limit)
        bias += (target - self.shift).to(bias)
        self.shift.copy_(target)
