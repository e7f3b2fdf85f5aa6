"""``harpoon infer``: one prompt through the Orchestrator, its decision and reason printed."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import hostedai_harpoon as harpoon

from ._common import _check_pool, _connect, _one_line, _plural, _print_json, _UsageError

if TYPE_CHECKING:
    from ..orchestrator import Attempt, Orchestrator, RoutedResult


# infer -----------------------------------------------------------------------------------


def _infer(args: argparse.Namespace) -> int:
    if args.endpoint is not None:
        from ._endpoint import _infer_endpoint

        return _infer_endpoint(args)
    with _connect(args, harpoon.HostedAI) as client:  # before anything is leased
        _check_pool(args, client)
    # asyncio.run turns Ctrl-C into a cancellation of this coroutine, so the orchestrator's
    # exit runs and releases what it leased before KeyboardInterrupt reaches main().
    return asyncio.run(_infer_async(args))


async def _infer_async(args: argparse.Namespace) -> int:
    from ..orchestrator import Orchestrator

    async with (
        _connect(args, harpoon.AsyncHostedAI) as client,
        Orchestrator(client) as orchestrator,
    ):
        try:
            if args.stream:
                await _infer_streamed(args, orchestrator)
                return 0
            routed = await orchestrator.process(
                args.text, target=args.target, max_tokens=args.max_tokens
            )
        except (harpoon.NoRouteError, harpoon.ConfigurationError):
            # A max_tokens past the API's own bound is refused up front (ConfigurationError):
            # when no target could take it anyway, say that, as for a NoRouteError.
            too_large = _too_large(args, orchestrator.targets)
            if too_large is None:
                raise
            raise _UsageError(too_large) from None
    if args.json:
        _print_json(_routed_json(routed))
        return 0
    _print_decision(routed.decision)
    print(routed.result.text)
    _print_summary(routed.attempts, routed.result.usage, routed.latency, routed.cost)
    return 0


def _print_summary(
    attempts: Sequence[Attempt], usage: harpoon.Usage | None, latency: float, cost: float
) -> None:
    """What follows the answer: the failed attempts, the tokens, the latency and the cost."""
    failures = [
        f"{attempt.target.name} failed ({_one_line(attempt.error)})"
        for attempt in attempts
        if attempt.error is not None
    ]
    if failures:
        print(f"failed over: {'; '.join(failures)}")
    tokens = (
        ""
        if usage is None
        else f"{_plural(usage.input_tokens, 'token')} in, {usage.output_tokens} out, "
    )
    print(f"({tokens}{latency:.2f}s, about ${cost:.6f})")


def _too_large(args: argparse.Namespace, targets: Sequence[harpoon.Target]) -> str | None:
    """Why the request is too large for every target it may go to; None when one could take it.

    Decided on the targets' limits alone, whatever their health: a request no target could
    ever take is the caller's mistake (exit status 2), not an outage.
    """
    if not args.text:
        return None  # not too large: empty, which the orchestrator's error says
    request = harpoon.RouteRequest(args.text, args.max_tokens)
    needed = request.prompt_tokens + args.max_tokens
    reasons = []
    for target in targets:
        if args.target is not None and target.name != args.target:
            continue
        if args.max_tokens > target.max_tokens:
            reasons.append(f"{target.name} takes --max-tokens up to {target.max_tokens}")
        elif needed > target.context_tokens:
            reasons.append(
                f"{target.name}'s context window holds {target.context_tokens} tokens, the "
                f"prompt and --max-tokens need about {needed}"
            )
        else:
            return None
    if not reasons:
        return None
    which = "every target" if args.target is None else f"the target {args.target}"
    return f"the request is too large for {which}: {'; '.join(reasons)}"


async def _infer_streamed(args: argparse.Namespace, orchestrator: Orchestrator) -> None:
    started = time.perf_counter()
    async with (
        orchestrator.allocate() as session,
        session.stream(args.text, target=args.target, max_tokens=args.max_tokens) as chunks,
    ):
        decision = chunks.decision
        if args.json:
            print(json.dumps(_decision_json(decision)), flush=True)
        else:
            _print_decision(decision)
        usage = None
        async for chunk in chunks:
            if args.json:
                print(json.dumps({"delta": chunk.delta, "finish_reason": chunk.finish_reason}))
            else:
                print(chunk.delta, end="", flush=True)
            usage = chunk.usage or usage
        ended = time.perf_counter()
    attempts = chunks.attempts
    latency = ended - started
    cost = sum(attempt.cost for attempt in attempts)  # as RoutedResult.cost
    if args.json:
        print(json.dumps(_outcome_json(usage, latency, cost, attempts)))
    else:
        print()
        _print_summary(attempts, usage, latency, cost)


def _print_decision(decision: harpoon.RouteDecision) -> None:
    print(f"target: {decision.target.name}\nreason: {decision.reason}\n", flush=True)


def _decision_json(decision: harpoon.RouteDecision) -> dict[str, object]:
    return {"target": decision.target.name, "reason": decision.reason}


def _routed_json(routed: RoutedResult) -> dict[str, object]:
    result = routed.result
    return {
        **_decision_json(routed.decision),
        "text": result.text,
        "model": result.model,
        "finish_reason": result.finish_reason,
        **_outcome_json(result.usage, routed.latency, routed.cost, routed.attempts),
    }


def _outcome_json(
    usage: harpoon.Usage | None, latency: float, cost: float, attempts: Sequence[Attempt]
) -> dict[str, object]:
    return {
        "usage": None
        if usage is None
        else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "latency": latency,
        "cost": cost,
        "attempts": [
            {
                "target": attempt.target.name,
                "reason": attempt.reason,
                "allocation_id": attempt.allocation_id,
                "error": None if attempt.error is None else _one_line(attempt.error),
            }
            for attempt in attempts
        ],
    }
