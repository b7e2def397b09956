"""PEP 562 lazy re-exports for ``nas`` and its sub-packages.

A package's ``__init__`` names its public API in one table, ``{public name: module that defines
it}``, and nothing is imported until a name is first used. So ``import nas`` costs nothing,
``from nas.study import pareto_front`` loads only ``nas.study._pareto`` (no torch: the dashboards
rely on it), and ``from nas import Evaluator`` loads what the evaluator needs.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names are ``exports``."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
