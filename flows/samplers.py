"""Which `Sampler` a campaign run gets: one decision for ``innloop run`` and the Prefect flow.

Generator samples are drawn in this process unless the campaign enables Ray (``[ray]
enabled``) and the caller has not turned it off (``--no-ray``); then they fan out to
Ray actors (`flows.ray_sampler`). Ray is imported only in that case: it costs seconds
and a gigabyte to start.
"""

from __future__ import annotations

from agent.campaign.config import RaySpec
from agent.design.sampling import LocalSampler, Sampler

__all__ = ["make_sampler"]


def make_sampler(ray: RaySpec, address: str | None = None, *, use_ray: bool = True) -> Sampler:
    """A `LocalSampler`, or a `RaySampler` on ``address`` (else ``ray.address``; ``None``
    starts a private local Ray) when ``use_ray`` and the campaign's ``ray.enabled``."""
    if not use_ray or not ray.enabled:
        return LocalSampler()
    from flows.ray_sampler import RaySampler  # Ray only when asked for

    return RaySampler(address or ray.address, ray.actors, ray.cpus_per_actor)
