"""Architecture specs and the search space (plain data; never imports torch)."""

from ._space import (SearchSpace, SpaceError, build_spec, iter_samples, param_names, params_of, sample_specs,
                     suggest)
from ._spec import (
    FAMILIES,
    LAYOUTS,
    MAX_JSON_BYTES,
    MAX_STAGES,
    MAX_UNITS,
    SCHEMA_VERSION,
    SHORT_LEGEND,
    ArchSpec,
    SpecError,
    StageSpec,
    UnitChoice,
    UnitPlan,
    branch_cost,
    parse_json,
    round_to_multiple,
)
from ._toml import load_space

__all__ = [
    "FAMILIES", "LAYOUTS", "MAX_JSON_BYTES", "MAX_STAGES", "MAX_UNITS", "SCHEMA_VERSION", "SHORT_LEGEND", "ArchSpec",
    "SearchSpace", "SpaceError", "SpecError", "StageSpec", "UnitChoice", "UnitPlan", "branch_cost", "build_spec",
    "iter_samples", "load_space", "param_names", "params_of", "parse_json", "round_to_multiple", "sample_specs",
    "suggest",
]
