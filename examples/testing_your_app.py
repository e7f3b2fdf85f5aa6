"""Your code, and how to test it: a small function built on the SDK.

``summarise_tickets`` is the kind of function an application has: it rents one GPU for a
batch of work and releases it whatever happens. Its tests are in ``test_testing_your_app.py``
next to this file; they use the fixtures of the pytest plugin that ships with the package
(no conftest needed) and inject faults with a ``FaultPlan``. Run them with::

    python -m pytest examples/test_testing_your_app.py

Run this file to see the function work: against the real service when
``HOSTED_AI_BASE_URL`` (and ``HOSTED_AI_API_KEY``) are set, else against the embedded
emulator::

    python examples/testing_your_app.py
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import hostedai_harpoon as harpoon

SUMMARY_MODEL = "gemma-3-270m"


def summarise_tickets(
    client: harpoon.HostedAI, tickets: Sequence[str], *, max_tokens: int = 24
) -> list[str]:
    """One short summary per support ticket, all on one GPU lease released at the end."""
    if not tickets:
        return []
    with client.allocate(model=SUMMARY_MODEL) as lease:
        return [
            lease.infer(
                f"Summarise this support ticket in one line: {ticket}", max_tokens=max_tokens
            ).text.strip()
            for ticket in tickets
        ]


async def answer(client: harpoon.AsyncHostedAI, question: str) -> str:
    """An answer from the large model, on a lease held for this one question."""
    async with client.allocate(model="qwen3-30b-a3b") as lease:
        return (await lease.infer(question, max_tokens=64)).text


TICKETS = [
    "The invoice for March was charged twice to my card.",
    "The GPU dashboard shows 'pending' for an hour after I start a job.",
]


def main() -> None:
    """Summarise two tickets, against the real service or the embedded emulator."""
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against HOSTED_AI_BASE_URL ({os.environ['HOSTED_AI_BASE_URL']})")
        client = harpoon.HostedAI()
    else:
        from hostedai_harpoon.testing import Emulator

        print("against the embedded emulator (set HOSTED_AI_BASE_URL to use a real endpoint)")
        emulator = Emulator()
        client = harpoon.HostedAI(
            "http://127.0.0.1", "demo-key", http_client=emulator.http_client()
        )
    with client:
        for ticket, summary in zip(TICKETS, summarise_tickets(client, TICKETS), strict=True):
            print(f"- {ticket}\n  -> {summary}")


if __name__ == "__main__":
    main()
