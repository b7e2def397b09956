"""shufflenas: objectives, study runner, export, guideline benchmarks and the CLI."""

from ._cost import Cost, analytic_macs, critical_path_fragments, profile, profile_module

__all__ = ["Cost", "analytic_macs", "critical_path_fragments", "profile", "profile_module"]
