"""``harpoon infer --endpoint URL``: a prompt to a running OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest

from hostedai_harpoon.cli import main
from hostedai_harpoon.testing import Emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_infer_at_an_endpoint_needs_no_hostedai_settings(
    capsys: pytest.CaptureFixture[str], emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HOSTED_AI_BASE_URL", "HOSTED_AI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with emulator.serve_openai(models=["qwen3-30b-a3b"]) as url:
        status, out, err = run(capsys, "infer", "Hi", "--endpoint", url, "--max-tokens", "3")
        assert (status, err) == (0, "")
        endpoint, model, blank, text, usage = out.splitlines()
        assert (endpoint, model, blank) == (f"endpoint: {url}", "model: qwen3-30b-a3b", "")
        assert len(text.split()) == 3
        assert usage == "(1 token in, 3 out)"
        status, out, _ = run(capsys, "infer", "Hi", "--endpoint", url, "--stream", "--json")
        assert status == 0
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines[-1]["finish_reason"] in ("stop", "length")
    assert len(emulator.requests_to("POST", "/v1/chat/completions")) == 2


def test_a_bad_endpoint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "infer", "Hi", "--endpoint", "ftp://vllm.example")
    assert status == 2
    assert "--endpoint must be an absolute http:// or https:// URL" in err
