"""Usage balancing (csrv2.train.balance): the sign update and its clip, against a loop."""

import torch

from csrv2.train.balance import UsageBalancer


def test_sign_update_moves_rare_latents_up_busy_ones_down_and_stops_at_the_limit():
    balancer = UsageBalancer(4, rate=0.1, limit=0.25)
    bias = torch.tensor([1.0, 0.0, -1.0, 0.5])
    usage = torch.tensor([10.0, 0.0, 2.0, 4.0])  # mean 4: latent 0 busy, 1 and 2 rare, 3 exactly average
    expected, shift = bias.clone(), torch.zeros(4)
    for _ in range(4):
        balancer.step(bias, usage)
        for j in range(4):
            step = 0.1 * (1 if usage[j] < 4 else -1 if usage[j] > 4 else 0)
            new = min(0.25, max(-0.25, float(shift[j]) + step))
            expected[j] += new - float(shift[j])
            shift[j] = new
    torch.testing.assert_close(bias, expected)
    torch.testing.assert_close(balancer.shift, torch.tensor([-0.25, 0.25, 0.25, 0.0]))
    assert set(balancer.state_dict()) == {"shift"}  # saved in checkpoints, so a resumed run continues from it
