"""Why a model gave its output: attention and gradient attributions per example (``explanation``,
``attribution``) and the HTML report that shows them (``report``)."""
from .explanation import EXPLAIN_METHODS, Explanation, PlotDependencyError, explain_decoded, explain_forced

__all__ = ["EXPLAIN_METHODS", "Explanation", "PlotDependencyError", "explain_decoded", "explain_forced"]
