"""A Griffe extension (``mkdocs.yml`` loads it): signatures in the API reference that a
reader can use.

- A default written as a private ``DEFAULT_*`` constant, as in ``ttl: float | None =
  DEFAULT_LEASE_TTL``, reads well in the source, where the constant is one click away, but
  not in the reference, where it is a name defined nowhere the reader can see: it is shown as
  the constant's value instead, ``ttl: float | None = 120.0``. A public one
  (``DEFAULT_TARGETS``, in the package's ``__all__``) has its own entry and stays a name.
- A class whose docstring says how it is ``Made by`` (``Made by ``HostedAI.allocate(...)````)
  is not for users to construct: its constructor, which takes the SDK's internals, is left
  out of the reference (the others show theirs on the class, ``merge_init_into_class``).
"""

from __future__ import annotations

from typing import Any

import griffe

MADE_BY = "Made by ``"


class ReferenceSignatures(griffe.Extension):
    """Private defaults shown as values; no constructor for the classes the SDK makes."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        public = {str(name) for name in pkg.exports or ()}
        for obj in defined_in(pkg):
            if isinstance(obj, griffe.Function):
                for parameter in obj.parameters:
                    value = default_value(parameter.default, public, loader)
                    if value is not None:
                        parameter.default = value
            elif obj.docstring is not None and MADE_BY in " ".join(obj.docstring.value.split()):
                # The constructor may be inherited: from a private base, made by the SDK too.
                for owner in (obj, *obj.mro()):
                    owner.members.pop("__init__", None)


def defined_in(parent: griffe.Module | griffe.Class) -> list[griffe.Function | griffe.Class]:
    """Every function and class defined in ``parent``, at any depth (not what it imports)."""
    found: list[griffe.Function | griffe.Class] = []
    for member in parent.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Function):
            found.append(member)
        elif isinstance(member, griffe.Class):
            found.extend([member, *defined_in(member)])
        elif isinstance(member, griffe.Module):
            found.extend(defined_in(member))
    return found


def default_value(
    default: object, public: set[str], loader: griffe.GriffeLoader
) -> str | griffe.Expr | None:
    """The value of the private ``DEFAULT_*`` constant that ``default`` names; ``None`` for
    any other default."""
    if not isinstance(default, griffe.ExprName) or not default.name.startswith("DEFAULT_"):
        return None
    if default.name in public:
        return None
    try:
        constant = loader.modules_collection[default.canonical_path]
    except KeyError:
        return None
    value: str | griffe.Expr | None = getattr(constant, "value", None)
    return value
