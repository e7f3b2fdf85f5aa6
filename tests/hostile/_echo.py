"""A server on 127.0.0.1 that repeats the request's credentials back, as a careless or
hostile API might: in its error message, in its whole body, in its headers.

The first two path segments pick the answer (the client's ``base_url`` ends with them, so any
SDK call of either dialect lands on it): ``/{where}/{status}/...``. ``where`` is ``message``
(the envelope's ``message`` and ``code`` say "key rejected: <the key's header>"), ``body``
(the body repeats every
request header, as JSON), ``text`` (a plain-text body repeating them), ``header``
(``www-authenticate`` and ``x-request-id`` repeat the key, the body is a plain envelope).
With ``status`` 200 the body breaks the contract: ``message`` and ``body`` put the key
where the health check expects its status, ``text`` is not JSON at all.

``/valid/200/...`` answers within the contract, with the key as the service's version
(``/v1/health``) and as a pool's id (every other path).
"""

from __future__ import annotations

import json
import pickle
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import hostedai_harpoon as harpoon

WHERE = ("message", "body", "text", "header")
STATUSES = (400, 401, 422, 500, 200)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        _, where, status_text, *_ = self.path.split("/")
        status = int(status_text)
        # v1 sends the key as a bearer token, hosted·ai's platform in x-api-key.
        credential = self.headers.get("authorization") or self.headers.get("x-api-key") or ""
        key = credential.removeprefix("Bearer ")
        sent = {name.lower(): value for name, value in self.headers.items()}
        headers = {"content-type": "application/json", "x-request-id": "req_echo"}
        body: object
        if where == "valid":
            pool: dict[str, object] = {"id": credential, "gpu_type": "H100", "gpus_total": 8}
            pool["gpus_free"] = 8
            pool |= {"models": ["gemma-3-270m"], "default": True}
            body = {"status": "ok", "version": credential}
            if not self.path.endswith("/v1/health"):
                body = {"data": [pool]}
        elif where == "message":
            message = f"key rejected: {credential}"
            body = {"status": message} if status == 200 else _envelope(message, code=key)
        elif where == "body":
            body = {"status": key, "you_sent": sent}
            if status != 200:
                body = {**_envelope("rejected"), "you_sent": sent}
        elif where == "text":
            headers["content-type"] = "text/plain"
            body = f"rejected, you sent: {json.dumps(sent)}"
        else:
            headers["www-authenticate"] = f'Bearer realm="api", error="invalid_token", {credential}'
            headers["x-request-id"] = key
            body = {"status": "nope"} if status == 200 else _envelope("rejected")
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        for name, value in {**headers, "content-length": str(len(data))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what the client shows, not the server's log."""


def _envelope(message: str, code: str = "rejected") -> dict[str, object]:
    return {"error": {"type": "echo", "code": code, "message": message, "request_id": "req_e"}}


@contextmanager
def serve() -> Iterator[str]:
    """Run the server on a free port of 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def everything_about(error: BaseException) -> str:
    """Every way an error shows itself: str, repr, attributes, pickle, the traceback, and
    the same for each error it was caused by."""
    shown = ["".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        shown += [str(seen), repr(seen), repr(seen.args), repr(vars(seen))]
        request = getattr(seen, "_request", None)
        if request is not None:
            shown += [repr(request), repr(dict(request.headers))]
        if isinstance(seen, harpoon.HostedAIError):
            shown.append(repr(pickle.dumps(seen)))
            shown.append(repr(vars(pickle.loads(pickle.dumps(seen)))))
        seen = seen.__cause__
    return "\n".join(shown)
