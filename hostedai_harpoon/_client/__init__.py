"""The clients: ``BaseClient`` holds the settings and hands every call to the planner;
``HostedAI`` and ``AsyncHostedAI`` carry signatures, docstrings and the I/O; ``Endpoint``
and ``AsyncEndpoint`` reach a running OpenAI-compatible server."""

from ._async import AsyncHostedAI
from ._base import BaseClient
from ._endpoint import AsyncEndpoint, Endpoint
from ._sync import HostedAI

__all__ = ["AsyncEndpoint", "AsyncHostedAI", "BaseClient", "Endpoint", "HostedAI"]
