"""The planner: choose splits, micro-batches and cuts from a model of time (profiles + predictor).

PipeLearn's split and micro-batch search (per device), MP-SL's ILP for the cuts under memory
limits (HiGHS), FTPipeHD's min-max DP, and the run config that reproduces the choice.
"""

from splitpipe.planner.choose import PlanResult, memory_nodes, plan_for, plannable
from splitpipe.planner.config_file import plan_toml
from splitpipe.planner.ftpipehd_dp import DpSolution, partition_min_max
from splitpipe.planner.mpsl_ilp import MpslSolution, solve_mpsl_cuts
from splitpipe.planner.pipelearn import choose_split, micro_batch_choices
from splitpipe.planner.sizes import parse_limits

__all__ = [
    "plannable", "memory_nodes", "PlanResult", "plan_for", "plan_toml", "DpSolution", "partition_min_max",
    "MpslSolution", "solve_mpsl_cuts", "choose_split", "micro_batch_choices", "parse_limits",
]
