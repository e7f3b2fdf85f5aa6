"""``harpoon infer``: one prompt through the Orchestrator, its decision and reason printed."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import hostedai_harpoon as harpoon

from ._api import _connect
from ._common import _one_line, _plural, _print_json, _UsageError

ClientT = TypeVar("ClientT", harpoon.HostedAI, harpoon.AsyncHostedAI)

if TYPE_CHECKING:
    from ..orchestrator import Orchestrator, RoutedResult


# infer -----------------------------------------------------------------------------------


def _infer(args: argparse.Namespace) -> int:
    if args.endpoint is not None:
        from ._endpoint import _infer_endpoint

        return _infer_endpoint(args)
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
    failures = [
        f"{attempt.target.name} failed ({_one_line(attempt.error)})"
        for attempt in routed.attempts
        if attempt.error is not None
    ]
    if failures:
        print(f"failed over: {'; '.join(failures)}")
    usage = routed.result.usage
    print(
        f"({_plural(usage.input_tokens, 'token')} in, {usage.output_tokens} out, "
        f"{routed.latency:.2f}s, about ${routed.cost:.6f})"
    )
    return 0


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
    if not args.json:
        print()
        if usage is not None:
            print(f"({_plural(usage.input_tokens, 'token')} in, {usage.output_tokens} out)")


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
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
        },
        "latency": routed.latency,
        "cost": routed.cost,
        "attempts": [
            {
                "target": attempt.target.name,
                "reason": attempt.reason,
                "allocation_id": attempt.allocation_id,
                "error": None if attempt.error is None else _one_line(attempt.error),
            }
            for attempt in routed.attempts
        ],
    }
