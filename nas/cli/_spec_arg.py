"""Turning a command-line spec argument (a JSON file or a canonical name) into an ArchSpec."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from search_space import MAX_JSON_BYTES, SCHEMA_VERSION, ArchSpec, SpecError, parse_json
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
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise SpecError(f"{value}: not a regular file; give a spec JSON file")
        if st.st_size > MAX_JSON_BYTES:
            raise SpecError(f"{value}: {st.st_size:,} bytes; a spec is a few kilobytes of JSON (at most "
                            f"{MAX_JSON_BYTES:,})")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{value}: cannot read the spec file ({exc})") from None
    try:
        doc = parse_json(text)
        spec = ArchSpec.from_dict(doc)
    except SpecError as exc:
        raise SpecError(f"{value}: {exc}") from None
    if isinstance(doc, dict) and "schema_version" not in doc:
        print(f"note: {value} has no schema_version; read as schema_version {SCHEMA_VERSION} (the version this "
              f"shufflenas reads)", file=sys.stderr)
    return spec
