"""Reading sweeps: a study as a table, Pareto fronts per architecture, hypervolume against a
reference point stored in the study (over trials and over the epochs trained), trials stopped
early, MACs against measured latency, dominance between fronts, comparisons that carry seed noise
(intervals over seeds, Welch/paired t-tests, the bootstrap of a hypervolume difference), figures,
and the files of ``dynsweep sweep pareto``.

>>> from dynsweep import analysis
>>> frame = analysis.load("sqlite:///runs/quickstart.db", "quickstart")
>>> analysis.pareto_front(frame, by="arch")
"""

from dynsweep.analysis.compare import (
    compare,
    dynamic_against_static,
    hypervolume_difference,
    neighbour_overlaps,
    side_names,
)
from dynsweep.analysis.figures import (
    plot_effects,
    plot_fronts,
    plot_hypervolume,
    plot_latency_fronts,
)
from dynsweep.analysis.latency import has_latency, macs_latency_tau, macs_not_faster
from dynsweep.analysis.pareto import (
    AnalysisError,
    compute_history,
    coverage,
    dominates,
    eligible,
    front_mask,
    hypervolume,
    hypervolume_history,
    pareto_front,
)
from dynsweep.analysis.report import write_report
from dynsweep.analysis.study import (
    epochs_trained,
    from_study,
    load,
    param_importances,
    read_study,
    reference_point,
    set_reference_point,
    stored_reference_point,
)

__all__ = [
    "AnalysisError",
    "compare",
    "compute_history",
    "coverage",
    "dominates",
    "dynamic_against_static",
    "eligible",
    "epochs_trained",
    "from_study",
    "front_mask",
    "has_latency",
    "hypervolume",
    "hypervolume_difference",
    "hypervolume_history",
    "load",
    "macs_latency_tau",
    "macs_not_faster",
    "neighbour_overlaps",
    "param_importances",
    "pareto_front",
    "plot_effects",
    "plot_fronts",
    "plot_hypervolume",
    "plot_latency_fronts",
    "read_study",
    "reference_point",
    "set_reference_point",
    "side_names",
    "stored_reference_point",
    "write_report",
]
