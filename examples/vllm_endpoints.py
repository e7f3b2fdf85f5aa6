"""Routing over vLLM servers that already run: the Orchestrator with endpoint targets.

Run ``python examples/vllm_endpoints.py``. By default it serves two emulated
OpenAI-compatible servers on 127.0.0.1 (no credentials, no network). Against real servers,
set ``VLLM_URLS`` to two root URLs, small model first, separated by a comma (for example
``VLLM_URLS=http://gpu-a:8000,http://gpu-b:8000``), ``VLLM_MODELS`` to their models
(default ``gemma-3-270m,qwen3-30b-a3b``) and ``VLLM_API_KEY`` if they take a key.

The small model answers simple prompts and the large one complex ones; when one server is
down, its calls fail over to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

PROMPTS = [
    "Hi there!",
    "Prove step by step that the square root of 2 is irrational, then justify each step.",
    "What is 17 * 23?",
]


@contextlib.contextmanager
def servers() -> Iterator[tuple[list[str], list[str], str | None]]:
    """Root URLs of the two servers, their models and the key (None: no key)."""
    models = os.environ.get("VLLM_MODELS", "gemma-3-270m,qwen3-30b-a3b").split(",")
    if os.environ.get("VLLM_URLS"):
        print(f"against {os.environ['VLLM_URLS']} (from VLLM_URLS)")
        yield os.environ["VLLM_URLS"].split(","), models, os.environ.get("VLLM_API_KEY")
        return
    print("against two emulated vLLM servers on 127.0.0.1 (set VLLM_URLS for real ones)")
    emulator = Emulator(latency_scale=0.02)
    with (
        emulator.serve_openai(models=models[:1]) as a,
        emulator.serve_openai(models=models[1:]) as b,
    ):
        yield [a, b], models, None


async def main() -> None:
    with servers() as (urls, models, key):
        small = harpoon.Target(
            "small-vllm", tier="small", model=models[0], endpoint=urls[0], api_key=key
        )
        large = harpoon.Target(
            "large-vllm", tier="large", model=models[1], endpoint=urls[1], api_key=key
        )
        # No client: every target is a server that runs, nothing is allocated.
        async with harpoon.Orchestrator(targets=[small, large]) as orchestrator:
            for prompt in PROMPTS:
                routed = await orchestrator.infer(prompt, max_tokens=32)
                print(f"{routed.target.name}: {routed.result.text[:48]!r}")
            answers = await asyncio.gather(*(orchestrator.infer("Hi!") for _ in range(20)))
            print(f"20 calls at once: {sum(1 for a in answers if a.result.text)} answered")
            async with orchestrator.stream("Name three uses of a GPU.", max_tokens=16) as chunks:
                text = "".join([chunk.delta async for chunk in chunks])
            print(f"streamed from {chunks.decision.target.name}: {text[:48]!r}")
            stats = orchestrator.snapshot().targets
            for name, counts in stats.items():
                print(f"{name}: {counts.requests} requests, {counts.errors} errors")


if __name__ == "__main__":
    asyncio.run(main())
