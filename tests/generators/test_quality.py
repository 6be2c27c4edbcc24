"""A test that can fail for a model that trains but does not learn ``p(u | y)``."""

from __future__ import annotations

import torch

from generators import TrainConfig, make_generator


def test_cinn_hits_the_target_on_a_sum_problem() -> None:
    """y = u0 + u1 on the unit square: random points miss target 1.0 by 1/3 on average."""
    gen = torch.Generator().manual_seed(0)
    u = torch.rand((2000, 2), generator=gen)
    y = u.sum(dim=1)
    model = make_generator("cinn", 2, blocks=4, hidden=64, cond_features=16, cond_hidden=32)
    model.fit(u, y, config=TrainConfig(epochs=12, batch_size=128, lr=3e-3))

    samples = model.sample(1.0, 2000, seed=1)
    mae = (samples.sum(dim=1) - 1.0).abs().mean().item()
    random = torch.rand((2000, 2), generator=gen)
    random_mae = (random.sum(dim=1) - 1.0).abs().mean().item()
    assert random_mae > 0.3
    assert mae < 0.25 * random_mae, f"cINN MAE {mae:.3f} vs random {random_mae:.3f}"
    inside = ((samples >= -0.05) & (samples <= 1.05)).all(dim=1).float().mean().item()
    assert inside > 0.9, f"only {inside:.0%} of samples near the unit square"


def test_cinn_box_logit_keeps_samples_near_the_box() -> None:
    gen = torch.Generator().manual_seed(0)
    u = torch.rand((600, 3), generator=gen)
    model = make_generator("cinn", 3, blocks=2, hidden=32, cond_features=4, box_logit=True, box_margin=0.05)
    u_in = torch.tensor([[0.0, 0.5, 1.0], [0.01, 0.99, 0.3]])
    torch.testing.assert_close(model._from_model(model._to_model(u_in)), u_in, atol=1e-5, rtol=0)
    model.fit(u, u.sum(dim=1), config=TrainConfig(epochs=2, batch_size=128))
    samples = model.sample(1.5, 500, seed=0)
    assert bool(((samples > -0.05) & (samples < 1.05)).all())
