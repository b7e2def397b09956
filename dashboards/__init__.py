"""Plotly views of a shufflenas study, built from plain study rows (``nas.study_data(study)`` or any
list of row dicts): the Pareto view, FLOPs against latency, hypervolume over trials, the host (drift
control's reference network), the design-space views (parameter importance per objective, per-knob
EDFs); a
self-contained HTML page and a live server; the guideline-reproduction figures and report. Never imports torch;
the Pareto front, hypervolume, schema names and rank correlation are ``nas.study`` / ``nas.proxies``' torch-free
modules."""

from ._errors import DashboardError
from ._guidelines import (
    guideline_figures,
    guideline_table_figure,
    guidelines_html,
    networks_figure,
    study_fit_figure,
    study_guidelines_html,
    study_knob_figure,
)
from ._host import host_figure, host_points
from ._design import (
    design_figures,
    importance_figure,
    importance_info,
    knob_edf_figure,
    knob_edf_info,
)
from ._figures import WEBGL_THRESHOLD, figures, flops_latency_figure, hypervolume_figure, pareto_figure
from ._info import (
    Axis,
    FlopsLatencyInfo,
    HypervolumeInfo,
    ParetoInfo,
    StudyInfo,
    TrialInfo,
    flops_latency_info,
    gather,
    hypervolume_2d,
    hypervolume_info,
    pareto_front_2d,
    pareto_info,
)
from ._page import export_command, page_payload, render_html, render_live_html, write_html
from ._serve import DashboardServer, serve

__all__ = [
    "Axis", "DashboardError", "DashboardServer", "FlopsLatencyInfo", "HypervolumeInfo", "ParetoInfo", "StudyInfo", "TrialInfo",
    "WEBGL_THRESHOLD", "export_command", "figures", "flops_latency_figure", "flops_latency_info", "gather", "hypervolume_2d",
    "hypervolume_figure", "hypervolume_info", "page_payload", "pareto_figure", "pareto_front_2d", "pareto_info",
    "render_html", "render_live_html", "serve", "write_html",
    "guideline_figures", "guideline_table_figure", "guidelines_html", "networks_figure", "study_fit_figure",
    "study_guidelines_html", "study_knob_figure", "host_figure", "host_points",
    "design_figures", "importance_figure", "importance_info", "knob_edf_figure", "knob_edf_info",
]
