"""Checks of the Orchestrator's arguments: a bad value is a ``ConfigurationError`` naming it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .. import ConfigurationError
from ..routing import DEFAULT_TARGETS, Target
from ._group import Limits

__all__ = ["check_seconds", "checked_limits", "checked_targets", "target_names"]


def _known(target: Target | str) -> Target:
    """A target, or the name of one of ``DEFAULT_TARGETS``."""
    if isinstance(target, Target):
        return target
    for known in DEFAULT_TARGETS:
        if target == known.name:
            return known
    names = ", ".join(known.name for known in DEFAULT_TARGETS)
    raise ConfigurationError(
        f"targets must be Targets or names of the default targets ({names}), got {target!r}"
    )


def checked_targets(targets: Sequence[Target | str]) -> tuple[Target, ...]:
    """The targets (a name stands for the default target of that name) as a tuple, once
    known to be Targets with unique names."""
    if isinstance(targets, str | Target) or not isinstance(targets, Iterable):
        raise ConfigurationError(f"targets must be a sequence of Target, got {targets!r}")
    checked = tuple(_known(target) for target in targets)
    if not checked:
        raise ConfigurationError("targets must be a non-empty sequence of Target")
    names = [target.name for target in checked]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"target names must be unique, got {names}")
    return checked


def check_seconds(what: str, value: object) -> None:
    """``value`` must be a number of seconds (or dollars) >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"{what} must be a number >= 0, got {value!r}")


def checked_limits(what: str, limits: Limits, names: set[str]) -> Limits:
    """``limits`` once known to be counts (one, or per known target name)."""
    values: Iterable[object]
    if isinstance(limits, Mapping):
        unknown = set(limits) - names
        if unknown:
            raise ConfigurationError(f"{what} names unknown targets: {sorted(unknown)}")
        values = limits.values()
    else:
        values = () if limits is None else (limits,)
    for value in values:
        if type(value) is not int or value < (0 if what == "min_warm" else 1):
            raise ConfigurationError(f"{what} must be a positive integer, got {value!r}")
    return limits


def target_names(refs: Iterable[Target | str], known: Mapping[str, Target]) -> list[str]:
    """The names of the targets ``refs`` (targets or names), each one of ``known``."""
    if isinstance(refs, str | Target):
        refs = [refs]
    names = []
    for ref in refs:
        name = ref.name if isinstance(ref, Target) else ref
        if not isinstance(name, str) or name not in known:
            raise ConfigurationError(
                f"unknown target {ref!r}; the known targets are {sorted(known)}"
            )
        names.append(name)
    return names
