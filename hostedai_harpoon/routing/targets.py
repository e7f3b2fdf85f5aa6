"""The default targets: the two models of the seed, named after their models."""

from __future__ import annotations

from ._base import Target, Tier

__all__ = ["DEFAULT_TARGETS"]

DEFAULT_TARGETS: tuple[Target, ...] = (
    Target(
        "gemma-3-270m",
        tier=Tier.SMALL,
        cost_per_gpu_hour=0.40,
        max_concurrency=32,
        context_tokens=32_768,
        max_tokens=8_192,
    ),
    Target(
        "qwen3-30b-a3b",
        tier=Tier.LARGE,
        cost_per_gpu_hour=2.50,
        max_concurrency=8,
        context_tokens=32_768,
        max_tokens=16_384,
    ),
)
"""``gemma-3-270m`` (small tier, cheap) and ``qwen3-30b-a3b`` (large tier), on the default pool.

Costs are list prices of the GPU class each model fits on, per GPU-hour: a 270M model fits
on an entry-level inference GPU, the 30B mixture-of-experts model needs an 80 GB card.
"""
