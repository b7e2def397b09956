"""Turning a command-line spec argument (a JSON file or a canonical name) into an ArchSpec."""

from __future__ import annotations

from pathlib import Path

from search_space import ArchSpec, SpecError
from shufflenet import CANONICAL, canonical_spec


def load_spec_arg(value: str) -> ArchSpec:
    """``value`` is a path to a spec JSON file, or a canonical name such as ``v2_1.0x``."""
    if value in CANONICAL:
        return canonical_spec(value)
    path = Path(value)
    if not path.exists():
        if not value.endswith(".json"):
            return canonical_spec(value)  # raises, naming canonical examples
        raise SpecError(f"{value}: no such spec file; give a spec JSON file or a canonical name such as v2_1.0x")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{value}: cannot read the spec file ({exc})") from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as exc:
        raise SpecError(f"{value}: {exc}") from None
