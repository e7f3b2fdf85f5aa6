"""``Endpoint`` and ``AsyncEndpoint``: checked settings, the key kept secret, the calls."""

from __future__ import annotations

import logging

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, EmulatorTransport

MODEL = "gemma-3-270m"


@pytest.mark.parametrize(
    ("url", "kwargs", "reason"),
    [
        ("ftp://vllm.example", {}, "^url must be an absolute http:// or https:// URL"),
        ("not a url", {}, "^url must be an absolute"),
        ("https://user:pw@vllm.example", {}, "^url must not carry credentials"),
        (None, {}, "^url is missing"),
        ("http://10.0.0.5:8000", {"api_key": "sk-abc"}, "refusing plain http:// to '10.0.0.5'"),
        ("https://vllm.example", {"inference": "hostedai"}, "^inference must be 'openai'"),
        ("https://vllm.example", {"inference": "grpc"}, "^inference must be one of"),
        ("https://vllm.example", {"api_key": 12}, "api_key must be a string"),
        ("https://vllm.example", {"model": ""}, "^model must not be empty"),
        ("https://vllm.example", {"timeout": -1}, "timeout"),
    ],
)
def test_bad_settings_are_configuration_errors(
    url: object, kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(harpoon.ConfigurationError, match=reason):
        harpoon.Endpoint(url, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(harpoon.ConfigurationError, match=reason):
        harpoon.AsyncEndpoint(url, **kwargs)  # type: ignore[arg-type]


def test_plain_http_elsewhere_is_fine_without_a_key_or_when_allowed() -> None:
    assert harpoon.Endpoint("http://10.0.0.5:8000/v1/").url == "http://10.0.0.5:8000"
    harpoon.Endpoint("http://10.0.0.5:8000", api_key="sk", allow_insecure_http=True).close()


def test_a_call_without_a_model_is_refused_before_sending(emulator: Emulator) -> None:
    endpoint = _endpoint(emulator, model=None)
    with pytest.raises(harpoon.ConfigurationError, match=r"^model is required"):
        endpoint.infer("Hi")
    with pytest.raises(harpoon.ConfigurationError, match=r"^pass prompt or messages, not both"):
        endpoint.infer("Hi", model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(harpoon.ConfigurationError, match=r"^messages\[0\]\['role'\]"):
        endpoint.infer(model=MODEL, messages=[{"role": "robot", "content": "Hi"}])
    with pytest.raises(harpoon.ConfigurationError, match=r"^max_tokens"):
        endpoint.infer("Hi", model=MODEL, max_tokens=0)
    assert emulator.exchanges == []
    assert endpoint.infer("Hi", model=MODEL).model == MODEL


def test_an_empty_model_is_refused_not_taken_for_the_endpoints_own(emulator: Emulator) -> None:
    endpoint = _endpoint(emulator, model=MODEL)
    with pytest.raises(harpoon.ConfigurationError, match="model"):
        endpoint.infer("Hi", model="")
    with pytest.raises(harpoon.ConfigurationError, match="model"):
        endpoint.stream("Hi", model="")
    assert emulator.exchanges == []


def _endpoint(emulator: Emulator, **kwargs: object) -> harpoon.Endpoint:
    http = httpx.Client(transport=EmulatorTransport(emulator.openai_server()))
    kwargs.setdefault("model", MODEL)
    return harpoon.Endpoint("https://vllm.example", http_client=http, **kwargs)  # type: ignore[arg-type]


def test_the_key_is_sent_and_shown_nowhere(
    make_emulator: object, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = Emulator(api_keys={"sk-right-key"})
    caplog.set_level(logging.DEBUG, logger="hostedai_harpoon")
    good = _endpoint(emulator, api_key="sk-right-key")
    assert good.infer("Hi").text
    bad = _endpoint(emulator, api_key="sk-wrong-key")
    with pytest.raises(harpoon.AuthenticationError) as caught:
        bad.infer("Hi")
    shown = repr(good) + repr(bad) + str(caught.value) + repr(caught.value.body) + caplog.text
    assert "sk-right-key" not in shown
    assert "sk-wrong-key" not in shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        good.__reduce__()
    nobody = _endpoint(emulator)
    with pytest.raises(harpoon.AuthenticationError):
        nobody.infer("Hi")
    assert "authorization" not in emulator.exchanges[-1].request_headers


def test_without_keys_the_standalone_server_takes_requests_without_a_key(
    emulator: Emulator,
) -> None:
    endpoint = _endpoint(emulator)
    assert endpoint.models() == ["gemma-3-270m", "qwen3-30b-a3b"]
    assert endpoint.infer("Hi").text
    assert "authorization" not in emulator.exchanges[-1].request_headers


async def test_the_async_endpoint_over_tcp(emulator: Emulator) -> None:
    with emulator.serve_openai(models=[MODEL]) as url:
        async with harpoon.AsyncEndpoint(url, model=MODEL, timeout=5) as endpoint:
            assert await endpoint.models() == [MODEL]
            result = await endpoint.infer("Hi", max_tokens=3)
            assert (result.finish_reason, result.usage.output_tokens) == ("length", 3)
            assert result.allocation_id == ""
            with pytest.raises(harpoon.NotFoundError):
                await endpoint.infer("Hi", model="qwen3-30b-a3b")
    with pytest.raises(harpoon.UsageError, match="async with"), harpoon.AsyncEndpoint(url):
        pass


def test_the_standalone_server_answers_only_the_openai_paths() -> None:
    emulator = Emulator()  # its log mixes two servers: not for the control plane's checker
    with emulator.serve_openai() as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/pools").status_code == 404
        assert http.get("/v1/models").status_code == 200
    with emulator.serve() as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/models", headers={"authorization": "Bearer k"}).status_code == 404
