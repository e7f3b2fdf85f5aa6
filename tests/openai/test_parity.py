"""The official openai client and this package read the same answers from the emulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

MODEL = "gemma-3-270m"
PROMPTS = ["Hi", "Explain the KV cache of a transformer in two sentences.", "Count to five"]


def _chunks_text(chunks: list[harpoon.InferenceChunk]) -> tuple[str, harpoon.Usage | None]:
    assert chunks[-1].finish_reason is not None
    return "".join(chunk.delta for chunk in chunks), chunks[-1].usage


@pytest.mark.parametrize("prompt", PROMPTS)
def test_sync_chat_agrees_with_the_official_client(openai_url: str, prompt: str) -> None:
    official = openai.OpenAI(base_url=f"{openai_url}/v1", api_key="sk-test", max_retries=0)
    with harpoon.Endpoint(openai_url, api_key="sk-test", model=MODEL) as endpoint:
        ours = endpoint.infer(prompt, max_tokens=50)
        streamed = _chunks_text(list(endpoint.stream(prompt, max_tokens=50)))
    theirs = official.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=50
    )
    assert theirs.usage is not None
    assert ours.text == theirs.choices[0].message.content
    assert ours.finish_reason == theirs.choices[0].finish_reason
    assert ours.id.startswith("chatcmpl-")
    assert (ours.usage.input_tokens, ours.usage.output_tokens) == (
        theirs.usage.prompt_tokens,
        theirs.usage.completion_tokens,
    )
    pieces, usage = [], None
    for event in official.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if event.choices:
            pieces.append(event.choices[0].delta.content or "")
        if event.usage is not None:
            usage = event.usage
    assert usage is not None
    assert (
        streamed == ("".join(pieces), ours.usage) == (theirs.choices[0].message.content, ours.usage)
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        ours.usage.input_tokens,
        ours.usage.output_tokens,
    )
    official.close()


def test_sync_completions_agree_with_the_official_client(openai_url: str) -> None:
    official = openai.OpenAI(base_url=f"{openai_url}/v1", api_key="sk-test", max_retries=0)
    endpoint = harpoon.Endpoint(openai_url, model=MODEL, inference="openai-completions")
    for prompt in PROMPTS:
        ours = endpoint.infer(prompt, max_tokens=7, stop=["kernel"])
        theirs = official.completions.create(
            model=MODEL, prompt=prompt, max_tokens=7, stop=["kernel"]
        )
        assert theirs.usage is not None
        assert (ours.text, ours.finish_reason) == (
            theirs.choices[0].text,
            theirs.choices[0].finish_reason,
        )
        assert ours.usage.output_tokens == theirs.usage.completion_tokens
        streamed = list(official.completions.create(
                model=MODEL, prompt=prompt, max_tokens=7, stop=["kernel"], stream=True,
                stream_options={"include_usage": True},
            ))  # fmt: skip
        theirs_text = "".join(event.choices[0].text for event in streamed if event.choices)
        assert _chunks_text(list(endpoint.stream(prompt, max_tokens=7, stop=["kernel"]))) == (
            theirs_text,
            ours.usage,
        )
    endpoint.close()
    official.close()


async def test_async_chat_and_completions_agree_with_the_official_client(openai_url: str) -> None:
    official = openai.AsyncOpenAI(base_url=f"{openai_url}/v1", api_key="sk-test", max_retries=0)
    async with (
        harpoon.AsyncEndpoint(openai_url, api_key="sk-test", model=MODEL) as chat,
        harpoon.AsyncEndpoint(openai_url, model=MODEL, inference="openai-completions") as plain,
    ):
        for prompt in PROMPTS:
            messages: list[Any] = [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": prompt},
            ]
            ours = await chat.infer(messages=messages)
            theirs = await official.chat.completions.create(model=MODEL, messages=messages)
            assert theirs.usage is not None
            assert ours.text == theirs.choices[0].message.content
            assert ours.usage.input_tokens == theirs.usage.prompt_tokens
            async with chat.stream(messages=messages) as chunks:
                assert _chunks_text([chunk async for chunk in chunks]) == (ours.text, ours.usage)
            pieces = []
            events = await official.chat.completions.create(
                model=MODEL,
                messages=messages,
                stream=True,
            )
            async for event in events:
                if event.choices:
                    pieces.append(event.choices[0].delta.content or "")
            assert "".join(pieces) == ours.text
            plain_ours = await plain.infer(prompt)
            plain_theirs = await official.completions.create(model=MODEL, prompt=prompt)
            assert plain_ours.text == plain_theirs.choices[0].text
            assert plain_theirs.usage is not None
            assert plain_ours.usage.output_tokens == plain_theirs.usage.completion_tokens
    await official.close()


def test_an_openai_lease_over_tcp_agrees_with_the_official_client(emulator: Emulator) -> None:
    with emulator.serve() as base_url, harpoon.HostedAI(base_url, "sk-test") as client:
        lease = client.allocate(model=MODEL, inference="openai")
        with lease:
            endpoint = lease.allocation.endpoint if lease.allocation else None
            assert endpoint is not None
            assert endpoint.startswith(base_url)
            ours = lease.infer("Hi")
            official = openai.OpenAI(base_url=f"{endpoint}/v1", api_key="sk-test", max_retries=0)
            theirs = official.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}]
            )
            official.close()
            assert theirs.usage is not None
            assert ours.text == theirs.choices[0].message.content
            assert ours.usage.output_tokens == theirs.usage.completion_tokens
            assert ours.allocation_id == lease.id
            # The same deterministic answer the HostedAI API gives for the prompt.
            assert ours.text == client.infer(lease.id, "Hi").text
    assert emulator.live_allocations() == []
