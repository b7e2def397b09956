"""The ``dashboards`` package's error type."""


class DashboardError(ValueError):
    """Study data handed to a figure builder, the page or the server is unusable (not a study-data
    document, an unknown axis, a bad option). The message names the argument, the value found and
    what is allowed."""
