"""Resolve ``provider/name`` strings to models through one registry.

Built-in providers register through the same entry-point group third parties
use (``recursa.providers`` in pyproject.toml), so ``myprovider/some-model``
works once a plugin package declares::

    [project.entry-points."recursa.providers"]
    myprovider = "my_package.recursa_plugin:create"

where ``create(name: str, options: ModelOptions) -> Model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..plugins import registered
from .base import ModelOptions

__all__ = ["ENTRY_POINT_GROUP", "ModelOptions", "providers", "register_provider", "resolve"]

if TYPE_CHECKING:
    from .base import Model

ENTRY_POINT_GROUP = "recursa.providers"


ProviderFactory = Callable[[str, ModelOptions], "Model"]
_registered: dict[str, ProviderFactory] = {}


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Register a provider at run time (entry points are the usual way)."""
    _registered[name] = factory


def providers() -> dict[str, ProviderFactory | None]:
    """Known provider names; entry-point factories are loaded only when used."""
    known: dict[str, ProviderFactory | None] = dict.fromkeys(registered(ENTRY_POINT_GROUP))
    known.update(_registered)
    return known


def _factory(provider: str) -> ProviderFactory:
    if provider in _registered:
        return _registered[provider]
    ep = registered(ENTRY_POINT_GROUP).get(provider)
    if ep is not None:
        try:
            factory: ProviderFactory = ep.load()
        except ImportError as exc:
            raise ConfigError(
                f"model provider {provider!r} cannot be loaded ({exc}); its package is "
                f"probably missing: pip install 'recursa[{provider}]'"
            ) from None
        return factory
    known = ", ".join(sorted(providers())) or "none"
    raise ConfigError(f"unknown model provider {provider!r} (known: {known})")


def resolve(spec: str | Model, options: ModelOptions | None = None) -> Model:
    """Turn ``"provider/name"`` (or a ready :class:`Model`) into a model.

    With a ``base_url`` a bare name (no provider) means an OpenAI-compatible server.
    """
    if not isinstance(spec, str):
        return spec
    options = options or ModelOptions()
    provider, sep, name = spec.partition("/")
    if not sep or not name:
        if options.base_url and spec:
            provider, name = "openai", spec
        else:
            raise ConfigError(
                f"model {spec!r} is not of the form provider/name (e.g. openai/gpt-5-mini)"
            )
    if provider not in providers() and options.base_url:
        # "--base-url http://vllm:8000/v1 --model Qwen/Qwen3-8B": any name goes to that server.
        provider, name = "openai", spec
    if provider != "openai":
        # --base-url names an OpenAI-compatible server; other providers keep their own.
        options = replace(options, base_url=None)
    return _factory(provider)(name, replace(options))
