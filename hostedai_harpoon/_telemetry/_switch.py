"""Whether anything would record: the check every hook makes first, kept cheap.

Nothing can have configured OpenTelemetry before ``opentelemetry`` itself was imported, so
until then the answer is "no" without importing it (``import hostedai_harpoon`` does not
load the OpenTelemetry API). Once it is imported, the global providers are looked at on
each call while they are the API's own (proxies or no-ops, which record nothing); the
first time one is an SDK's, the recorder is built and kept: the API lets a global provider
be set only once, and its proxies follow a provider that is set later.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._recorder import Recorder

_chosen: Recorder | None = None
_probe: Callable[[], Recorder | None] | None = None


def recorder() -> Recorder | None:
    """The recorder to feed, or None when no SDK is configured (nothing would record)."""
    if _chosen is not None:
        return _chosen
    modules = sys.modules
    if "opentelemetry.trace" not in modules and "opentelemetry.metrics" not in modules:
        return None
    probe = _probe
    if probe is None:
        probe = _load_probe()
    return probe()


def _load_probe() -> Callable[[], Recorder | None]:
    global _probe
    from ._recorder import global_recorder

    _probe = global_recorder
    return global_recorder


def use(chosen: Recorder | None) -> Recorder | None:
    """Feed ``chosen`` instead of the global providers (None: back to them); returns the
    previous choice. For tests, which cannot set a global provider more than once."""
    global _chosen
    previous, _chosen = _chosen, chosen
    return previous
