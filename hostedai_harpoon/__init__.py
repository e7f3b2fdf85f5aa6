"""hostedai-harpoon: a typed client for HostedAI's GPU pools."""

from ._version import __version__

__all__ = ["__version__"]
