"""The ShuffleNet V2 guideline experiments (G1-G4, Table 8) measured on this device, and the same
questions asked of a study's trials."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "BLOCKS": "nas.guidelines._paper",
    "CHOICES": "nas.guidelines._paper",
    "FLOPS_TOLERANCE": "nas.guidelines._paper",
    "INPUT_HW": "nas.guidelines._paper",
    "SCALES": "nas.guidelines._paper",
    "SETS": "nas.guidelines._paper",
    "TABLES": "nas.guidelines._paper",
    "Benchmark": "nas.guidelines._blocks",
    "Bottleneck": "nas.guidelines._blocks",
    "ParallelConvs": "nas.guidelines._blocks",
    "TwoConvBlock": "nas.guidelines._blocks",
    "assemble": "nas.guidelines._report",
    "benchmarks": "nas.guidelines._blocks",
    "build_benchmark": "nas.guidelines._blocks",
    "g1_widths": "nas.guidelines._blocks",
    "g2_width": "nas.guidelines._blocks",
    "g3_width": "nas.guidelines._blocks",
    "PAPER": "nas.guidelines._paper",
    "GuidelineError": "nas.guidelines._paper",
    "GuidelineSettings": "nas.guidelines._settings",
    "format_report": "nas.guidelines._report",
    "measure": "nas.guidelines._measure",
    "reassemble": "nas.guidelines._report",
    "run_guidelines": "nas.guidelines._measure",
    "StudyGuidelinesError": "nas.guidelines._study",
    "format_study": "nas.guidelines._study",
    "study_guidelines": "nas.guidelines._study",
    "unit_knobs": "nas.guidelines._study",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
