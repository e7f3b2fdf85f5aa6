"""The clients: ``BaseClient`` holds the settings and hands every call to the planner;
``HostedAI`` and ``AsyncHostedAI`` carry signatures, docstrings and the I/O."""

from ._async import AsyncHostedAI
from ._base import BaseClient
from ._sync import HostedAI

__all__ = ["AsyncHostedAI", "BaseClient", "HostedAI"]
