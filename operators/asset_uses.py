"""The payload-model protocol: how a structured payload names assets, and gets them checked at submission.

A payload model (a timeline, a transcript reference) that names assets implements :class:`NamesAssets`:
``asset_uses()`` lists where each asset is named and as what (:class:`AssetUse`), and
``with_assets(assets, **limits)`` answers the value the graph sees once the scheduler has found, checked and
described every one of them (:mod:`scheduler.admission.payload_assets`). Besides the settings' limits it gets
``sources`` (the job's resolved sources), ``storage`` (to read what it names; it runs in a thread) and
``inputs``: the resolved values of the inputs its graph input ``requires:`` (tighten's word edits read the
transcript they index that way). A model that names no asset but needs that check returns ``[]`` from
``asset_uses()``. It lives here, beside neither the
timeline nor its resolver, so that those two (and the clip request) import it instead of each other.

A model whose binding needs code that itself imports the model (the timeline's resolver, which places its
clips on frames) registers that code with :func:`asset_binder`, and its ``with_assets`` calls
:func:`bind_assets`: the model's module then imports nothing of the resolver's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from operators.registry import REGISTRY, OperatorRegistry

__all__ = ["AssetUse", "Loc", "NamesAssets", "asset_binder", "bind_assets"]

#: Where in a payload value an asset is named: keys and list indices from the value's root.
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class AssetUse:
    """One place a payload value names an asset, and what the asset must be there."""

    loc: Loc
    asset_id: str
    role: str  # visual | audio | font | transcript


@runtime_checkable
class NamesAssets(Protocol):
    def asset_uses(self) -> list[AssetUse]: ...

    def with_assets(self, assets: dict[str, Any], **limits: Any) -> Any: ...


B = TypeVar("B", bound=Callable[..., Any])


def asset_binder(model: type, *, registry: OperatorRegistry | None = None) -> Callable[[B], B]:
    """Register ``func(value, assets, **limits)`` as the binding of ``model``'s values."""

    def decorate(func: B) -> B:
        (registry or REGISTRY).register_binder(model, func)
        return func

    return decorate


def bind_assets(value: Any, assets: dict[str, Any], **limits: Any) -> Any:
    """``value``'s registered binding (see :func:`asset_binder`), with the built-in operators loaded."""
    import operators  # noqa: F401  (the built-in binders register on import)

    return REGISTRY.binder(type(value))(value, assets, **limits)
