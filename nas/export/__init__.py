"""Exporting a spec or a study's trial as json, pytorch, TorchScript or ONNX, self-checked, with a
model card."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "ATOL": "nas.export._checks",
    "Check": "nas.export._checks",
    "Format": "nas.export._formats",
    "TABLE": "nas.export._formats",
    "calibrate_batchnorm": "nas.export._export",
    "default_suffix": "nas.export._formats",
    "render_card_md": "nas.export._card",
    "FORMATS": "nas.export._formats",
    "ExportError": "nas.export._checks",
    "ExportReport": "nas.export._export",
    "export_spec": "nas.export._export",
    "export_trial": "nas.export._export",
    "load_artifact": "nas.export._formats",
    "load_pytorch": "nas.export._formats",
    "read_metadata": "nas.export._formats",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
