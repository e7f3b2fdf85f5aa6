"""Your own routing policy, as a plain function or as a class, plugged into the Orchestrator.

Run ``python examples/custom_policy.py``. Against the embedded emulator by default (no
credentials, no network); against a real HostedAI endpoint when ``HOSTED_AI_BASE_URL`` and
``HOSTED_AI_API_KEY`` are set.

A policy is any callable ``(request, candidates) -> RouteDecision``: ``candidates`` are the
healthy targets able to take the request, each with its live state (breaker, calls in
flight, warm allocations, observed latency). It must be pure: no I/O, no clock.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

PROMPTS = [
    "Hi there!",
    "Write a Python function that merges two sorted lists.",
    "What is the capital of France?",
    "Fix this SQL query: SELECT * FROM users WHERE id = '1' OR 1=1",
]


def prefer_warm(
    request: harpoon.RouteRequest, candidates: Sequence[harpoon.TargetState], /
) -> harpoon.RouteDecision:
    """A policy as a plain function: a target with a warm allocation first, then the
    fewest calls in flight, then the cheapest; the others are the fallbacks."""
    ranked = sorted(
        candidates,
        key=lambda s: (s.warm_allocations == 0, s.in_flight, s.target.cost_per_hour),
    )
    chosen = ranked[0]
    return harpoon.RouteDecision(
        chosen.target,
        f"{chosen.target.name}: {chosen.warm_allocations} warm, {chosen.in_flight} in flight",
        {s.target.name: float(s.warm_allocations) for s in ranked},
        tuple(s.target for s in ranked[1:]),
    )


class KeywordPolicy:
    """A policy as a class: prompts about code go to the largest tier, the rest to the
    smallest; the other candidates are the fallbacks."""

    def __init__(self, keywords: Sequence[str]) -> None:
        self.keywords = tuple(word.lower() for word in keywords)

    def __call__(
        self, request: harpoon.RouteRequest, candidates: Sequence[harpoon.TargetState], /
    ) -> harpoon.RouteDecision:
        """Choose the largest candidate for a prompt naming a keyword, else the smallest."""
        words = request.prompt.lower()
        hits = [word for word in self.keywords if word in words]
        by_size = sorted(candidates, key=lambda s: s.target.tier, reverse=bool(hits))
        chosen = by_size[0].target
        why = f"mentions {', '.join(hits)}" if hits else "no keyword"
        return harpoon.RouteDecision(
            chosen,
            f"{why}: {chosen.tier.name.lower()} tier, {chosen.name}",
            {"keywords": float(len(hits))},
            tuple(s.target for s in by_size[1:]),
        )


def connect() -> tuple[harpoon.AsyncHostedAI, Emulator | None]:
    """A client for the real endpoint when one is configured, else for an emulator."""
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against {os.environ['HOSTED_AI_BASE_URL']} (from HOSTED_AI_BASE_URL)")
        return harpoon.AsyncHostedAI(), None
    print("against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
    emulator = Emulator(latency_scale=0.02)
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "demo-key", http_client=emulator.async_http_client()
    )
    return client, emulator


async def main() -> None:
    """Route the same prompts with each policy and print every decision."""
    client, emulator = connect()
    policies: list[tuple[str, harpoon.RoutingPolicy]] = [
        ("KeywordPolicy (a class)", KeywordPolicy(["python", "sql", "function", "code"])),
        ("prefer_warm (a function)", prefer_warm),
    ]
    async with client:
        for label, policy in policies:
            print(f"\n== {label}")
            async with harpoon.Orchestrator(client, policy=policy) as orchestrator:
                for prompt in PROMPTS:
                    routed = await orchestrator.process(prompt, max_tokens=16)
                    print(f"  {prompt[:36]!r:40} -> {routed.target.name}")
                    print(f"  {'':40}    why: {routed.decision.reason}")
    print()
    if emulator is not None:
        print(f"allocations left on the emulator: {len(emulator.live_allocations())}")
    print(f"allocations the client could not release: {len(client.orphans())}")


if __name__ == "__main__":
    asyncio.run(main())
