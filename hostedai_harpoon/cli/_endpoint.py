"""``harpoon infer --endpoint URL``: one prompt to a running OpenAI-compatible server."""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import hostedai_harpoon as harpoon

from ._common import _plural, _print_json, _UsageError

ENV_ENDPOINT_API_KEY = "HOSTED_AI_ENDPOINT_API_KEY"
"""The endpoint's key, if it wants one (like the API's, never taken on the command line)."""


def _infer_endpoint(args: argparse.Namespace) -> int:
    return asyncio.run(_infer_endpoint_async(args))


async def _infer_endpoint_async(args: argparse.Namespace) -> int:
    if args.target is not None:
        raise _UsageError("--target routes over the Orchestrator's targets: not with --endpoint")
    options = {} if args.timeout is None else {"timeout": args.timeout}
    try:
        endpoint = harpoon.AsyncEndpoint(
            args.endpoint,
            api_key=os.environ.get(ENV_ENDPOINT_API_KEY, "").strip() or None,
            model=args.model,
            allow_insecure_http=args.allow_insecure_http,
            **options,
        )
    except harpoon.ConfigurationError as exc:
        raise _UsageError(
            str(exc)
            .replace("url ", "--endpoint ", 1)
            .replace("allow_insecure_http=True", "--allow-insecure-http")
        ) from None
    async with endpoint:
        if endpoint.model is None:  # the server's first model, as GET /v1/models lists them
            models = await endpoint.models()
            if not models:
                raise _UsageError("the endpoint serves no model: pass --model")
            endpoint.model = models[0]
        if args.stream:
            usage = None
            async with endpoint.stream(args.text, max_tokens=args.max_tokens) as chunks:
                async for chunk in chunks:
                    if args.json:
                        print(
                            json.dumps({"delta": chunk.delta, "finish_reason": chunk.finish_reason})
                        )
                    else:
                        print(chunk.delta, end="", flush=True)
                    usage = chunk.usage or usage
            if not args.json:
                print()
                if usage is not None:
                    print(f"({_plural(usage.input_tokens, 'token')} in, {usage.output_tokens} out)")
            return 0
        result = await endpoint.infer(args.text, max_tokens=args.max_tokens)
    if args.json:
        _print_json(
            {
                "endpoint": endpoint.url,
                "id": result.id,
                "text": result.text,
                "model": result.model,
                "finish_reason": result.finish_reason,
                "usage": {
                    "input_tokens": result.usage.input_tokens,
                    "output_tokens": result.usage.output_tokens,
                },
            }
        )
        return 0
    print(f"endpoint: {endpoint.url}\nmodel: {result.model}\n")
    print(result.text)
    usage = result.usage
    print(f"({_plural(usage.input_tokens, 'token')} in, {usage.output_tokens} out)")
    return 0
