"""The operator registry: plain typed functions registered by name.

An operator is a function whose parameters are its graph inputs, plus optionally
``params`` (annotated with a pydantic model) and ``ctx`` (an :class:`OpContext`)::

    class TranscodeParams(BaseModel):
        crf: int = 23

    @operator("media.transcode_chunk", weight=10)
    def transcode_chunk(chunk: Chunk, *, params: TranscodeParams, ctx: OpContext) -> ChunkOutput:
        ...

The registry only holds what modules register when they are imported, so a worker
process that imports :mod:`operators` sees exactly what the dispatcher saw.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from operators.errors import OperatorParamsError, UnknownOperatorError

__all__ = [
    "NoParams",
    "OperatorRegistry",
    "OperatorSpec",
    "REGISTRY",
    "get_operator",
    "operator",
    "payload_model",
]

F = TypeVar("F", bound=Callable[..., Any])
_RESERVED = ("params", "ctx")


class NoParams(BaseModel):
    """The params model of an operator that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """What the graph engine knows about one operator."""

    name: str
    func: Callable[..., Any]
    params_model: type[BaseModel]
    weight: float
    description: str
    required_inputs: frozenset[str]
    optional_inputs: frozenset[str]
    wants_ctx: bool
    wants_params: bool = False
    accepts_any_input: bool = False
    #: The version of the operator's output, bumped whenever the same inputs would give another output; a
    #: node may declare ``cache: true`` only when its operator declares one (it is part of every cache key).
    version: int | None = None
    #: What of its inputs the output depends on, when that is less than all of them: called with the
    #: node's inputs (keyword arguments) in the dispatcher, its answer replaces them in the cache key
    #: (``render.segment`` keeps only the layers and captions of its own frames).
    cache_key: Callable[..., Any] | None = None

    @property
    def inputs(self) -> frozenset[str]:
        return self.required_inputs | self.optional_inputs

    def parse_params(self, raw: Mapping[str, Any] | None) -> BaseModel:
        """Validate raw params from YAML; raise :class:`OperatorParamsError` naming each field."""
        try:
            return self.params_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            problems = tuple(
                ('.'.join(str(p) for p in err["loc"]) or "(params)", err["msg"]) for err in exc.errors()
            )
            listed = "; ".join(f"{where}: {msg}" for where, msg in problems)
            raise OperatorParamsError(f"invalid params for operator '{self.name}': {listed}", problems) from None


class OperatorRegistry:
    """Operators by name. One instance, :data:`REGISTRY`, is filled at import time."""

    def __init__(self) -> None:
        self._ops: dict[str, OperatorSpec] = {}
        self._models: dict[str, type[BaseModel]] = {}
        self._binders: dict[type, Callable[..., Any]] = {}

    def register_model(self, name: str, model: type[BaseModel]) -> None:
        """A structured payload type graphs can declare as an input (``{type: timeline}``)."""
        if name in self._models and self._models[name] is not model:
            raise ValueError(f"payload model '{name}' is already registered by {self._models[name].__qualname__}")
        self._models[name] = model

    def model(self, name: str) -> type[BaseModel] | None:
        return self._models.get(name)

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def register_binder(self, model: type, func: Callable[..., Any]) -> None:
        """How ``model``'s values get their assets (see :mod:`operators.asset_uses`)."""
        self._binders[model] = func

    def binder(self, model: type) -> Callable[..., Any]:
        for cls in model.__mro__:
            if cls in self._binders:
                return self._binders[cls]
        raise LookupError(f"no asset binder is registered for {model.__qualname__}")

    def register(self, name: str, func: Callable[..., Any], *, weight: float = 1.0, version: int | None = None,
                 cache_key: Callable[..., Any] | None = None) -> OperatorSpec:
        if name in self._ops and self._ops[name].func is not func:
            existing = self._ops[name].func
            raise ValueError(f"operator '{name}' is already registered by {existing.__module__}.{existing.__qualname__}")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError(f"operator '{name}': version must be a positive integer, not {version!r}")
        spec = dataclasses.replace(_describe(name, func, weight), version=version, cache_key=cache_key)
        self._ops[name] = spec
        return spec

    def get(self, name: str) -> OperatorSpec:
        try:
            return self._ops[name]
        except KeyError:
            raise UnknownOperatorError(name, self._ops) from None

    def names(self) -> list[str]:
        return sorted(self._ops)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self) -> Iterator[OperatorSpec]:
        return iter(self._ops.values())


REGISTRY = OperatorRegistry()


def operator(name: str, *, weight: float = 1.0, version: int | None = None,
             cache_key: Callable[..., Any] | None = None, registry: OperatorRegistry | None = None) -> Callable[[F], F]:
    """Register ``func`` under ``name``. ``weight`` is its share of a job's progress per task; ``version`` (bumped
    when its output changes) lets graphs cache its results, ``cache_key`` narrows what of its inputs they hang on."""

    def decorate(func: F) -> F:
        (registry or REGISTRY).register(name, func, weight=weight, version=version, cache_key=cache_key)
        return func

    return decorate


M = TypeVar("M", bound=type[BaseModel])


def payload_model(name: str, *, registry: OperatorRegistry | None = None) -> Callable[[M], M]:
    """Register a pydantic model as a payload input type, e.g. ``@payload_model("timeline")``."""

    def decorate(model: M) -> M:
        (registry or REGISTRY).register_model(name, model)
        return model

    return decorate


def get_operator(name: str) -> OperatorSpec:
    """Look an operator up, importing the built-in operator modules first."""
    import operators  # noqa: F401  (registers the built-in operators)

    return REGISTRY.get(name)


def _describe(name: str, func: Callable[..., Any], weight: float) -> OperatorSpec:
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {k: p.annotation for k, p in signature.parameters.items()}
    params_model: type[BaseModel] = NoParams
    required: set[str] = set()
    optional: set[str] = set()
    wants_ctx = False
    wants_params = False
    var_keyword = False
    for pname, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            var_keyword = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TypeError(f"operator '{name}': *args is not supported, name every input")
        if pname == "params":
            model = hints.get(pname)
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                raise TypeError(f"operator '{name}': 'params' must be annotated with a pydantic model")
            params_model = model
            wants_params = True
            continue
        if pname == "ctx":
            wants_ctx = True
            continue
        (optional if param.default is not inspect.Parameter.empty else required).add(pname)
    doc = inspect.getdoc(func) or ""
    return OperatorSpec(
        name=name,
        func=func,
        params_model=params_model,
        weight=float(weight),
        description=doc.splitlines()[0] if doc else "",
        required_inputs=frozenset(required),
        optional_inputs=frozenset(optional),
        wants_ctx=wants_ctx,
        wants_params=wants_params,
        accepts_any_input=var_keyword,
    )
