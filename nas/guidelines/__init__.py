"""The ShuffleNet V2 guideline experiments (G1-G4, Table 8) measured on this device, and the same
questions asked of a study's trials."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "PAPER": "nas.guidelines._benchmarks",
    "GuidelineError": "nas.guidelines._benchmarks",
    "GuidelineSettings": "nas.guidelines._benchmarks",
    "format_report": "nas.guidelines._benchmarks",
    "measure": "nas.guidelines._benchmarks",
    "reassemble": "nas.guidelines._benchmarks",
    "run_guidelines": "nas.guidelines._benchmarks",
    "StudyGuidelinesError": "nas.guidelines._study",
    "format_study": "nas.guidelines._study",
    "study_guidelines": "nas.guidelines._study",
    "unit_knobs": "nas.guidelines._study",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
