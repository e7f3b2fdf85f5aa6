"""``Endpoint`` and ``AsyncEndpoint``: a server that already runs an OpenAI-compatible API
(vLLM, SGLang, llama.cpp, TGI), with no allocation behind it.

The calls are the OpenAI-compatible ones of ``_http/_openai.py``, planned and driven as every
other call (retries, the breaker, the deadline, bounded reading, telemetry). ``infer`` and
``stream`` take what a lease's take and give the same values, so whatever runs work on a
lease can run it on an endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, Self, TypeVar

import httpx

from .._checks import check_optional_text
from .._config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    DefaultHeaders,
    NotGiven,
    Secret,
    key_problem,
)
from .._exceptions import ConfigurationError, UsageError
from .._http import _openai as openai
from .._http._drivers import AsyncDriver, SyncDriver
from .._http._plan import Planner
from .._http._sse import AsyncInferenceStream, InferenceStream
from .._models import InferenceResult
from .._resilience import CircuitBreaker, CircuitBreakerConfig, RetryPolicy
from ._base import (
    BaseClient,
    check_deadline,
    check_retry,
    pick_timeout,
    positive_int,
    split_headers,
)

__all__ = ["AsyncEndpoint", "Endpoint"]

HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
Timeout = float | httpx.Timeout | NotGiven | None
Messages = Sequence[Mapping[str, str]]


class _EndpointBase(Generic[HttpT]):
    """Settings and the planner of one endpoint's calls; the twins add the I/O."""

    _http: HttpT
    _owns_http: bool

    def __init__(
        self,
        url: str,
        api_key: Secret | None,
        *,
        model: str | None,
        inference: str,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        deadline: float | None,
        retry: RetryPolicy | None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None,
        allow_insecure_http: bool,
        default_headers: Mapping[str, str] | None,
        max_response_bytes: int,
        http: HttpT | None,
        http_type: type[HttpT],
    ) -> None:
        if api_key is not None:
            problem = key_problem(api_key)
            if problem is not None:
                raise ConfigurationError(problem)
        root, why = openai.check_endpoint(
            url, "url", keyed=api_key is not None, allow_insecure_http=allow_insecure_http is True
        )
        if root is None:
            raise ConfigurationError(why)
        if openai.check_inference(inference) == openai.HOSTEDAI:
            raise ConfigurationError(
                "inference must be 'openai' or 'openai-completions' for an endpoint (the "
                "HostedAI API's /v1/inference needs an allocation: use client.allocate)"
            )
        self.url = root
        """The server's root URL (OpenAI clients take ``f"{url}/v1"``)."""
        self.model = check_optional_text(model, "model")
        """The model calls ask for unless they name one."""
        self.inference = inference
        """``"openai"`` (chat completions) or ``"openai-completions"`` (plain completions)."""
        if circuit_breaker is not None and not isinstance(
            circuit_breaker, CircuitBreakerConfig | NotGiven
        ):
            raise ConfigurationError(
                "circuit_breaker must be a CircuitBreakerConfig or None, "
                f"got {type(circuit_breaker).__name__}"
            )
        config = (
            CircuitBreakerConfig() if isinstance(circuit_breaker, NotGiven) else circuit_breaker
        )
        host = httpx.URL(root).netloc.decode("ascii")
        self._max_response_bytes: int = positive_int(max_response_bytes, "max_response_bytes")
        if http is not None and not isinstance(http, http_type):
            raise ConfigurationError(f"http_client must be an {http_type.__qualname__}")
        self._http = http or http_type(timeout=pick_timeout(timeout), follow_redirects=False)
        self._owns_http = http is None
        headers, secret_headers = split_headers(DefaultHeaders.of(default_headers), api_key)
        del default_headers  # no frame that can raise holds a key given there
        self._planner = Planner(
            build_request=self._http.build_request,
            prefix=root,
            headers=headers,
            secret_headers=secret_headers,
            secret=api_key,
            timeout=pick_timeout(timeout),
            deadline=check_deadline(deadline),
            retry=check_retry(retry, max_retries),
            breaker=None if config is None else CircuitBreaker(config, name=host),
        )

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        """The breaker guarding this endpoint, or ``None`` when disabled."""
        return self._planner.breaker

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout of each attempt."""
        return self._planner.timeout

    def __repr__(self) -> str:
        return f"<{type(self).__name__} url={self.url!r} model={self.model!r}>"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(f"{type(self).__name__} cannot be pickled: it may hold an API key")

    def _call(
        self,
        stream: bool,
        prompt: str | None,
        messages: Messages | None,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        stop: str | list[str] | None,
        timeout: Timeout,
    ) -> Any:
        call = openai.inference_call(
            self.inference, stream, prompt, messages, model, self.model, max_tokens,
            temperature, stop,
        )  # fmt: skip
        return BaseClient._timed(call, timeout)


class Endpoint(_EndpointBase[httpx.Client]):
    """A running OpenAI-compatible server (sync): ``Endpoint(url, api_key=..., model=...)``.

    ``infer`` and ``stream`` work as a lease's do (``InferenceResult``, ``InferenceChunk``;
    ``allocation_id`` is empty, ``latency`` 0.0: such servers report none). Without
    ``api_key`` no ``Authorization`` header is sent (a vLLM started without ``--api-key``).
    Plain ``http://`` carries a key only to this machine unless ``allow_insecure_http``.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        inference: openai.Inference = "openai",
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None = NOT_GIVEN,
        http_client: httpx.Client | None = None,
        allow_insecure_http: bool = False,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        key = Secret.of(api_key, "api_key")
        del api_key  # only in the Secret from here on
        super().__init__(
            url, key, model=model, inference=inference, timeout=timeout,
            max_retries=max_retries, deadline=deadline, retry=retry,
            circuit_breaker=circuit_breaker, allow_insecure_http=allow_insecure_http,
            default_headers=default_headers, max_response_bytes=max_response_bytes,
            http=http_client, http_type=httpx.Client,
        )  # fmt: skip
        self._driver = SyncDriver(self._http, self._max_response_bytes)

    def infer(
        self,
        prompt: str | None = None,
        *,
        messages: Messages | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> InferenceResult:
        """One inference: ``prompt`` as one user message (or the chat ``messages``)."""
        call = self._call(False, prompt, messages, model, max_tokens, temperature, stop, timeout)
        result: InferenceResult = self._driver.run(self._planner.plan(call))
        return result

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Messages | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> InferenceStream:
        """A streamed inference: ``with endpoint.stream(...) as chunks: for chunk in chunks``
        (nothing is sent until the stream is entered or iterated)."""
        call = self._call(True, prompt, messages, model, max_tokens, temperature, stop, timeout)
        return InferenceStream(
            lambda: self._driver.run(self._planner.plan(call)),
            self._max_response_bytes,
            self._events,
        )

    def _events(self) -> openai.StreamEvents:
        return openai.StreamEvents(self.inference)

    def models(self, *, timeout: Timeout = NOT_GIVEN) -> list[str]:
        """The ids of the models the server serves (``GET /v1/models``)."""
        models: list[str] = self._driver.run(
            self._planner.plan(BaseClient._timed(openai.list_models(), timeout))
        )
        return models

    def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        raise UsageError("Endpoint is sync: use `with Endpoint(...)`, or AsyncEndpoint")

    async def __aexit__(self, *_: object) -> None:
        """Never reached: entering with ``async with`` is refused."""


class AsyncEndpoint(_EndpointBase[httpx.AsyncClient]):
    """A running OpenAI-compatible server (asyncio): the same calls as ``Endpoint``, awaited,
    with ``infer`` and ``stream`` as ``AsyncLease`` has them."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        inference: openai.Inference = "openai",
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None = NOT_GIVEN,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        key = Secret.of(api_key, "api_key")
        del api_key  # only in the Secret from here on
        super().__init__(
            url, key, model=model, inference=inference, timeout=timeout,
            max_retries=max_retries, deadline=deadline, retry=retry,
            circuit_breaker=circuit_breaker, allow_insecure_http=allow_insecure_http,
            default_headers=default_headers, max_response_bytes=max_response_bytes,
            http=http_client, http_type=httpx.AsyncClient,
        )  # fmt: skip
        self._driver = AsyncDriver(self._http, self._max_response_bytes)

    async def infer(
        self,
        prompt: str | None = None,
        *,
        messages: Messages | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> InferenceResult:
        """One inference: ``prompt`` as one user message (or the chat ``messages``)."""
        call = self._call(False, prompt, messages, model, max_tokens, temperature, stop, timeout)
        result: InferenceResult = await self._driver.run(self._planner.plan(call))
        return result

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Messages | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> AsyncInferenceStream:
        """A streamed inference: ``async with endpoint.stream(...) as chunks: async for ...``."""
        call = self._call(True, prompt, messages, model, max_tokens, temperature, stop, timeout)
        return AsyncInferenceStream(
            lambda: self._driver.run(self._planner.plan(call)),
            self._max_response_bytes,
            self._events,
        )

    def _events(self) -> openai.StreamEvents:
        return openai.StreamEvents(self.inference)

    async def models(self, *, timeout: Timeout = NOT_GIVEN) -> list[str]:
        """The ids of the models the server serves (``GET /v1/models``)."""
        models: list[str] = await self._driver.run(
            self._planner.plan(BaseClient._timed(openai.list_models(), timeout))
        )
        return models

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        raise UsageError("AsyncEndpoint is async: use `async with AsyncEndpoint(...)`")

    def __exit__(self, *_: object) -> None:
        """Never reached: entering with ``with`` is refused."""
