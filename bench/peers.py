"""This package against its peers on an OpenAI-compatible server: the same chat calls.

Run ``python bench/peers.py`` (LiteLLM's column needs the ``bench`` extra:
``pip install 'hostedai-harpoon[bench]'``; without it that column is skipped). One emulated
vLLM-like server (``Emulator.serve_openai``) runs over TCP on 127.0.0.1 in a child process,
so the server does not share the clients' interpreter. In one run, each client makes the
same chat calls (one user message, ``max_tokens=16``) at concurrency 1 and 50:

* **raw httpx**: an ``httpx.AsyncClient`` posting the JSON and decoding the answer (the
  baseline);
* **openai-python**: ``AsyncOpenAI(...).chat.completions.create``, no retries;
* **LiteLLM Router**: two deployments of the same model on that server, ``simple-shuffle``
  routing, no retries (``LITELLM_LOCAL_MODEL_COST_MAP=True``: no network at import);
* **AsyncEndpoint**: this package's ``AsyncEndpoint.infer``;
* **Orchestrator**: this package's ``Orchestrator.infer`` over two endpoint targets of the
  same model on that server (the same job as LiteLLM's Router: routing, queueing, failover
  and breakers in front of servers that run).

Rounds alternate between the clients so that drift on a noisy machine hits all alike; each
figure is the median round's seconds for the calls, and its ratio to raw httpx's. Add a
client by appending to ``CLIENTS`` (a name and a factory of an ``infer(prompt)`` callable).

Then **stream parsing**: chunks per second through this package's SSE reader and through
openai-python's, each reading the same 10,000-chunk chat stream from an in-process transport.
Target: at least as fast as openai-python's. The exit status is 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record

MODEL = "gemma-3-270m"
PROMPT = "Summarise the incident report in three sentences."
MAX_TOKENS = 16
CONCURRENCY = (1, 50)
CALLS = {1: 200, 50: 1000}
ROUNDS = 3
STREAM_CHUNKS = 10_000
STREAM_ROUNDS = 5
BASELINE = "raw httpx, the same chat calls over TCP"
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]

Infer = Callable[[str], Awaitable[str]]
Factory = Callable[[str], contextlib.AbstractAsyncContextManager[Infer]]

_SERVER = """
import sys, time
from hostedai_harpoon.testing import Emulator
with Emulator().serve_openai() as url:
    print(url, flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def served() -> Any:
    """The root URL of an emulated OpenAI-compatible server in a child process."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


@contextlib.asynccontextmanager
async def raw_httpx(url: str) -> AsyncIterator[Infer]:
    async with httpx.AsyncClient(base_url=url, headers={"authorization": "Bearer k"}) as http:

        async def infer(prompt: str) -> str:
            body: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": MAX_TOKENS,
            }
            response = await http.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            text: str = json.loads(response.content)["choices"][0]["message"]["content"]
            return text

        yield infer


@contextlib.asynccontextmanager
async def openai_python(url: str) -> AsyncIterator[Infer]:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)

    async def infer(prompt: str) -> str:
        answer = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS
        )
        return answer.choices[0].message.content or ""

    yield infer
    await client.close()


@contextlib.asynccontextmanager
async def litellm_router(url: str) -> AsyncIterator[Infer]:
    from litellm import Router  # type: ignore[attr-defined,unused-ignore]

    deployment = {"model": f"openai/{MODEL}", "api_base": f"{url}/v1", "api_key": "k"}
    router = Router(
        model_list=[
            {"model_name": MODEL, "litellm_params": dict(deployment)},
            {"model_name": MODEL, "litellm_params": dict(deployment)},
        ],
        routing_strategy="simple-shuffle",
        num_retries=0,
    )

    async def infer(prompt: str) -> str:
        answer: Any = await router.acompletion(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS
        )
        return str(answer.choices[0].message.content)

    yield infer


@contextlib.asynccontextmanager
async def async_endpoint(url: str) -> AsyncIterator[Infer]:
    async with harpoon.AsyncEndpoint(url, api_key="k", model=MODEL, max_retries=0) as endpoint:

        async def infer(prompt: str) -> str:
            return (await endpoint.infer(prompt, max_tokens=MAX_TOKENS)).text

        yield infer


@contextlib.asynccontextmanager
async def orchestrator(url: str) -> AsyncIterator[Infer]:
    targets = [
        harpoon.Target(
            name, tier="small", model=MODEL, endpoint=url, api_key="k", max_concurrency=64
        )
        for name in ("vllm-a", "vllm-b")
    ]
    policy = harpoon.WeightedPolicy({"vllm-a": 1.0, "vllm-b": 1.0}, seed=1)
    async with harpoon.Orchestrator(targets=targets, policy=policy) as orch:

        async def infer(prompt: str) -> str:
            return (await orch.infer(prompt, max_tokens=MAX_TOKENS)).result.text

        yield infer


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


CLIENTS: list[tuple[str, Factory]] = [
    ("raw httpx", raw_httpx),
    ("openai-python", openai_python),
    ("LiteLLM Router", litellm_router),
    ("AsyncEndpoint", async_endpoint),
    ("Orchestrator", orchestrator),
]


async def _timed(infer: Infer, calls: int, concurrency: int) -> float:
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            await infer(PROMPT)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def peers(url: str) -> dict[int, dict[str, float]]:
    """Median seconds per client and concurrency."""
    clients = [
        (name, make) for name, make in CLIENTS if name != "LiteLLM Router" or _has("litellm")
    ]
    seconds: dict[int, dict[str, list[float]]] = {
        c: {name: [] for name, _ in clients} for c in CONCURRENCY
    }
    async with contextlib.AsyncExitStack() as stack:
        made = [(name, await stack.enter_async_context(make(url))) for name, make in clients]
        for name, infer in made:
            expected = await made[0][1](PROMPT)
            assert await infer(PROMPT) == expected, f"{name} answered differently"
            await _timed(infer, 50, 10)  # warm up connections and caches
        for round_index in range(ROUNDS):
            order = made if round_index % 2 == 0 else made[::-1]
            for concurrency in CONCURRENCY:
                for name, infer in order:
                    seconds[concurrency][name].append(
                        await _timed(infer, CALLS[concurrency], concurrency)
                    )
    return {
        c: {name: statistics.median(runs) for name, runs in by.items()} for c, by in seconds.items()
    }


def _stream_body() -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    events = [
        {
            **head,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    ]
    events += [
        {**head, "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]}
        for i in range(STREAM_CHUNKS - 1)
    ]
    events.append(
        {**head, "choices": [{"index": 0, "delta": {"content": "."}, "finish_reason": "stop"}]}
    )
    events.append(
        {
            **head,
            "choices": [],
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": STREAM_CHUNKS,
                "total_tokens": STREAM_CHUNKS + 9,
            },
        }
    )
    lines = [
        b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n" for event in events
    ]
    return b"".join(lines) + b"data: [DONE]\n\n"


def stream_parsing() -> dict[str, float]:
    """Chunks per second (median of the rounds) through each SSE reader."""
    import httpx2
    import openai

    body = _stream_body()
    headers = {"content-type": "text/event-stream"}
    ours = harpoon.Endpoint(
        "https://vllm.example",
        model=MODEL,
        http_client=httpx.Client(
            transport=httpx.MockTransport(
                lambda r: httpx.Response(200, headers=headers, content=body)
            )
        ),
    )
    theirs = openai.OpenAI(
        base_url="https://vllm.example/v1",
        api_key="k",
        http_client=httpx2.Client(
            transport=httpx2.MockTransport(
                lambda r: httpx2.Response(200, headers=headers, content=body)
            )
        ),
    )

    def harpoon_chunks() -> int:
        return sum(1 for chunk in ours.stream(PROMPT) if chunk.delta)

    def openai_chunks() -> int:
        stream: Any = theirs.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
        )
        count = 0
        for event in stream:
            if event.choices and event.choices[0].delta.content:
                count += 1
        return count

    rates: dict[str, list[float]] = {"hostedai-harpoon": [], "openai-python": []}
    for _ in range(STREAM_ROUNDS):
        for name, read in (("hostedai-harpoon", harpoon_chunks), ("openai-python", openai_chunks)):
            started = time.perf_counter()
            count = read()
            rates[name].append(count / (time.perf_counter() - started))
            assert count == STREAM_CHUNKS, f"{name} read {count} chunks"
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> int:
    failed = False
    with served() as url:
        table = asyncio.run(peers(url))
    print(f"{'client':<18}" + "".join(f"{f'c={c} s':>12}{'ratio':>8}" for c in CONCURRENCY))
    for name in table[CONCURRENCY[0]]:
        row = f"{name:<18}"
        for concurrency in CONCURRENCY:
            seconds = table[concurrency][name]
            ratio = seconds / table[concurrency]["raw httpx"]
            row += f"{seconds:>12.3f}{ratio:>8.2f}"
            if name == "Orchestrator":  # routing in front of servers: at most 1.25x raw httpx
                ok = ratio <= 1.25
                failed |= not ok
                verdict = "PASS" if ok else "FAIL"
                row += f"  {verdict} (target <= 1.25)" if concurrency == CONCURRENCY[-1] else ""
                record(
                    f"peers, {CALLS[concurrency]} chat calls at concurrency {concurrency}: {name}",
                    ratio,
                    baseline=BASELINE,
                    target="<= 1.25",
                    passed=ok,
                )
            elif name != "raw httpx":
                record(
                    f"peers, {CALLS[concurrency]} chat calls at concurrency {concurrency}: {name}",
                    ratio,
                    baseline=BASELINE,
                )
        print(row)
    rates = stream_parsing()
    ratio = rates["hostedai-harpoon"] / rates["openai-python"]
    sse_passed = ratio >= 1.0
    passed = sse_passed and not failed
    for name, rate in rates.items():
        print(f"SSE parsing, {name}: {rate:,.0f} chunks/s")
    verdict = "PASS" if sse_passed else "FAIL"
    print(f"{verdict} SSE parsing: {ratio:.2f}x openai-python's (target >= 1)")
    record(
        f"SSE parsing, a {STREAM_CHUNKS:,}-chunk chat stream: chunks/s over openai-python's",
        ratio,
        baseline="openai-python's SSE reader, the same stream",
        target=">= 1.0",
        passed=sse_passed,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
