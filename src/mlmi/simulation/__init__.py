"""The paper's simulation study (METHOD.md §6): design, amputation, resumable runs on
one machine or a Dask cluster, performance measures and the paper's tables and figures.

    from mlmi import simulation as sim
    sim.run(sim.scenarios("paper"), reps=1000, out="sim-out", seed=1)
    sim.summarize("sim-out")
    sim.report("sim-out", "report/")
"""

from .design import ALPHA, LAMBDA, OMEGA, ampute, generate, truth
from .grid import parse_scenario, parse_where, scenario_id, scenarios
from .replication import METHODS, PARAMETERS, replicate, task_seed
from .reporting import report
from .runner import compact, load, load_errors, run
from .summary import summarize

__all__ = [
    "ALPHA",
    "LAMBDA",
    "METHODS",
    "OMEGA",
    "PARAMETERS",
    "ampute",
    "compact",
    "generate",
    "load",
    "load_errors",
    "parse_scenario",
    "parse_where",
    "replicate",
    "report",
    "run",
    "scenario_id",
    "scenarios",
    "summarize",
    "task_seed",
    "truth",
]
