"""Reading sweeps: a study as a table, Pareto fronts per architecture, hypervolume against a
reference point stored in the study, dominance between fronts, comparisons that carry seed noise
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
from dynsweep.analysis.figures import plot_effects, plot_fronts, plot_hypervolume
from dynsweep.analysis.pareto import (
    AnalysisError,
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
    "coverage",
    "dominates",
    "dynamic_against_static",
    "eligible",
    "from_study",
    "front_mask",
    "hypervolume",
    "hypervolume_difference",
    "hypervolume_history",
    "load",
    "neighbour_overlaps",
    "param_importances",
    "pareto_front",
    "plot_effects",
    "plot_fronts",
    "plot_hypervolume",
    "read_study",
    "reference_point",
    "set_reference_point",
    "side_names",
    "stored_reference_point",
    "write_report",
]
