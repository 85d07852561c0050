"""``recursa models``: what this installation can run, and what it costs.

Four parts: the providers (the ``recursa.providers`` entry points, each with
whether the package it needs is installed, checked with ``find_spec`` and never
imported), the priced models of the main providers (recursa's own price table
and what genai-prices lists, with USD per million input and output tokens and the
context window where known; a listed model with no token price is *unpriced*), the
embedded local models (whether their weights are installed, and their size on disk;
nothing is joined or downloaded) and the aliases of model names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import click

from .models import local, pricing
from .models.base import installed
from .models.registry import ENTRY_POINT_GROUP, providers
from .plugins import registered

#: What each built-in provider imports when it is used, and the extra that installs it
#: (``None``: a dependency of recursa itself).
BUILTIN_REQUIRES: dict[str, tuple[str, str | None]] = {
    "openai": ("openai", None),
    "azure": ("openai", None),
    "openrouter": ("openai", None),
    "anthropic": ("anthropic", "anthropic"),
    "gemini": ("google.genai", "gemini"),
    "litellm": ("litellm", "litellm"),
    "local": ("llama_cpp", "local"),
}

#: The providers whose models are listed with their prices.
PRICED_PROVIDERS = ("openai", "anthropic", "gemini")


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    module: str | None  # where its factory lives (None: registered at run time)
    requires: str | None  # the package it imports when used
    installed: bool
    install: str | None  # how to install what is missing


@dataclass(frozen=True)
class ModelInfo:
    spec: str
    provider: str
    priced: bool
    input_usd_per_mtok: float | None
    output_usd_per_mtok: float | None
    cached_input_usd_per_mtok: float | None
    context_window: int | None


@dataclass(frozen=True)
class LocalInfo:
    spec: str
    installed: bool  # its weights are on disk
    runtime_installed: bool  # llama-cpp-python, which runs it
    size_bytes: int | None
    files: list[str]
    context_window: int
    install: str


def provider_infos() -> list[ProviderInfo]:
    entry_points = registered(ENTRY_POINT_GROUP)
    found: list[ProviderInfo] = []
    for name in sorted(providers()):
        ep = entry_points.get(name)
        module = ep.module if ep is not None else None
        requires: str | None
        install: str | None
        if name in BUILTIN_REQUIRES and (module or "").startswith("recursa."):
            requires, extra = BUILTIN_REQUIRES[name]
            install = f"pip install 'recursa[{extra}]'" if extra else "pip install recursa"
        else:  # a plugin: its own top-level package (finding it imports nothing)
            requires = module.split(".")[0] if module else None
            dist = getattr(ep, "dist", None)
            install = f"pip install {dist.name}" if dist is not None else None
        ok = requires is None or installed(requires)
        hint = None if ok else install
        found.append(ProviderInfo(name, module, requires, ok, hint))
    return found


def _provider_of(name: str) -> str:
    """Which provider a name of recursa's own price table (:data:`pricing.PRICES`) is."""
    if name.startswith("claude"):
        return "anthropic"
    if name.startswith("gemini"):
        return "gemini"
    return "openai"


def _listable(provider: str, name: str) -> bool:
    # genai-prices' match prefixes of fine-tunes ("ft:gpt-4o", "gpt-4o-mini-...ft-") name
    # no model; Google's Vertex lists Anthropic's models, which the Gemini API does not serve.
    if ":" in name or name.endswith(("-", ".")):
        return False
    return not (provider == "gemini" and name.startswith("claude"))


def model_infos(wanted: str | None = None) -> list[ModelInfo]:
    found: list[ModelInfo] = []
    for provider in PRICED_PROVIDERS:
        if wanted is not None and provider != wanted:
            continue
        windows = {
            n: w for n, w in pricing.listed_models(provider).items() if _listable(provider, n)
        }
        names = set(windows) | {n for n in pricing.PRICES if _provider_of(n) == provider}
        for name in sorted(names):
            price = pricing.lookup(f"{provider}/{name}")
            found.append(
                ModelInfo(
                    spec=f"{provider}/{name}",
                    provider=provider,
                    priced=price is not None,
                    input_usd_per_mtok=price.input if price else None,
                    output_usd_per_mtok=price.output if price else None,
                    cached_input_usd_per_mtok=price.cached if price else None,
                    context_window=windows.get(name),
                )
            )
    return found


def local_infos() -> list[LocalInfo]:
    runtime = installed("llama_cpp")
    found: list[LocalInfo] = []
    for weights in local.KNOWN_MODELS.values():
        files = local.installed_files(weights)
        size = sum(p.stat().st_size for p in files) if files else None
        found.append(
            LocalInfo(
                spec=f"local/{weights.name}",
                installed=files is not None,
                runtime_installed=runtime,
                size_bytes=size,
                files=[str(p) for p in files or []],
                context_window=weights.context_length,
                install=weights.pip,
            )
        )
    return found


def aliases() -> dict[str, str]:
    return {f"local/{alias}": f"local/{name}" for alias, name in sorted(local.ALIASES.items())}


def catalogue(provider: str | None = None) -> dict[str, Any]:
    """Everything ``recursa models --json`` prints, for one provider or all."""
    infos = [p for p in provider_infos() if provider is None or p.name == provider]
    show_local = provider in (None, "local")
    return {
        "providers": [asdict(p) for p in infos],
        "models": [asdict(m) for m in model_infos(provider)],
        "local": [asdict(m) for m in local_infos()] if show_local else [],
        "aliases": aliases() if show_local else {},
    }


def _usd(value: float | None) -> str:
    return "unpriced" if value is None else f"{value:g}"


def _tokens(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 1_000_000 and value % 1_000_000 == 0:
        return f"{value // 1_000_000}M"
    return f"{value // 1000}K" if value % 1000 == 0 or value >= 10_000 else str(value)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _print_tables(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title="Providers", title_justify="left")
    for column in ("provider", "needs", "installed", "to install"):
        table.add_column(column)
    for p in data["providers"]:
        table.add_row(
            p["name"], p["requires"] or "-", "yes" if p["installed"] else "no", p["install"] or ""
        )
    console.print(table)
    if data["models"]:
        table = Table(title="Models (USD per million tokens)", title_justify="left")
        table.add_column("model")
        for column in ("input", "output", "cached input", "context"):
            table.add_column(column, justify="right")
        for m in data["models"]:
            table.add_row(
                m["spec"],
                _usd(m["input_usd_per_mtok"]),
                _usd(m["output_usd_per_mtok"]),
                _usd(m["cached_input_usd_per_mtok"]),
                _tokens(m["context_window"]),
            )
        console.print(table)
    if data["local"]:
        table = Table(title="Local models (free, offline)", title_justify="left")
        for column in ("model", "weights", "size", "context", "to install"):
            table.add_column(column)
        for m in data["local"]:
            weights = "installed" if m["installed"] else "not installed"
            if not m["runtime_installed"]:
                weights += " (llama-cpp-python missing)"
            table.add_row(
                m["spec"],
                weights,
                _size(m["size_bytes"]),
                _tokens(m["context_window"]),
                "" if m["installed"] else m["install"],
            )
        console.print(table)
    if data["aliases"]:
        table = Table(title="Aliases", title_justify="left")
        table.add_column("alias")
        table.add_column("model")
        for alias, target in data["aliases"].items():
            table.add_row(alias, target)
        console.print(table)


@click.command("models")
@click.option("--provider", "provider", default=None, metavar="NAME", help="Only this provider.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models_command(provider: str | None, as_json: bool) -> None:
    """List providers, priced models, local models and aliases.

    Prices are USD per million input and output tokens (standard tier, prompts under
    200K tokens); a model without a token price is "unpriced". Nothing is imported,
    joined or downloaded to find out what is installed.

    \b
    Examples:
      recursa models
      recursa models --provider anthropic
      recursa models --json
    """
    if provider is not None and provider not in providers():
        known = ", ".join(sorted(providers()))
        raise click.BadParameter(
            f"unknown provider {provider!r} (known: {known})", param_hint="--provider"
        )
    data = catalogue(provider)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        _print_tables(data)
