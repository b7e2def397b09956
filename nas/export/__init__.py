"""Exporting a spec or a study's trial as json, pytorch, TorchScript or ONNX, self-checked, with a
model card."""

from nas._lazy import lazy_exports

_EXPORTS = {
    "ATOL": "nas.export._export",
    "FORMATS": "nas.export._export",
    "ExportError": "nas.export._export",
    "ExportReport": "nas.export._export",
    "export_spec": "nas.export._export",
    "export_trial": "nas.export._export",
    "load_artifact": "nas.export._export",
    "load_pytorch": "nas.export._export",
    "read_metadata": "nas.export._export",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
