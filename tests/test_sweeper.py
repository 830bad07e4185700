"""bnstudy's sweeper (hydra_plugins/bnstudy_sweeper): named arms over a grid, and the measuring
phase that runs each arm at its chosen rate on fresh seeds."""
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from hydra_plugins.bnstudy_sweeper.bnstudy_sweeper import arm_jobs

ARMS = {"ghost2": {"norm": "ghost_bn", "norm.ghost_batch_size": 2},
        "bn128": {"norm": "ghost_bn", "norm.ghost_batch_size": 128},
        "gn": {"norm": "gn"}}


def parse(*lines):
    return OverridesParser.create().parse_overrides(list(lines))


def jobs(phase="select", cli=(), chosen=None, params=("optim.lr=0.1,0.2", "seed=100")):
    return arm_jobs(ARMS, parse(*params), parse(*cli), phase, chosen or {}, "optim.lr")


def test_each_arm_runs_over_the_params_it_does_not_name():
    got = jobs()
    assert len(got) == 3 * 2
    assert got[0] == ["norm=ghost_bn", "norm.ghost_batch_size=2", "optim.lr=0.1", "seed=100"]
    # GroupNorm has no ghost batch: its runs carry none, so no GN run is repeated per ghost size
    assert [j for j in got if "norm=gn" in j] == [["norm=gn", "optim.lr=0.1", "seed=100"],
                                                 ["norm=gn", "optim.lr=0.2", "seed=100"]]


def test_measure_runs_each_arm_at_its_chosen_rate_only():
    chosen = {"ghost2": 0.1, "bn128": 0.2, "gn": 0.4}
    got = jobs("measure", chosen=chosen, params=("optim.lr=0.1,0.2", "seed=0,1"))
    assert len(got) == 3 * 2
    rates = {tuple(j[:-2]): j[-2] for j in got}
    assert rates[("norm=ghost_bn", "norm.ghost_batch_size=2")] == "optim.lr=0.1"
    assert rates[("norm=gn",)] == "optim.lr=0.4"  # a chosen rate outside the selection grid is allowed (an extension)


def test_measure_refuses_before_every_arm_has_a_chosen_rate():
    with pytest.raises(HydraException, match="no chosen rate for arm.*gn"):
        jobs("measure", chosen={"ghost2": 0.1, "bn128": 0.2, "gn": None})


def test_command_line_keeps_the_arms_it_names_and_replaces_params():
    got = jobs(cli=("norm=gn", "seed=5,6"))
    assert got == [["norm=gn", "optim.lr=0.1", "seed=5"], ["norm=gn", "optim.lr=0.1", "seed=6"],
                   ["norm=gn", "optim.lr=0.2", "seed=5"], ["norm=gn", "optim.lr=0.2", "seed=6"]]
    assert len(jobs(cli=("norm.ghost_batch_size=2,128",))) == 2 * 2  # the two ghost arms; GN names no ghost size
    with pytest.raises(HydraException, match="no arm matches"):
        jobs(cli=("norm=bn",))


def test_unknown_phase_is_one_clear_error():
    with pytest.raises(HydraException, match="phase=final: one of select, measure"):
        jobs("final")


def test_measure_needs_chosen_rates_only_for_the_arms_it_runs():
    chosen = {"ghost2": 0.1, "bn128": 0.2, "gn": None}  # GN still selecting: its ghost arms can be measured
    got = jobs("measure", cli=("norm=ghost_bn",), chosen=chosen, params=("optim.lr=0.1,0.2", "seed=0"))
    assert [j[2] for j in got] == ["optim.lr=0.1", "optim.lr=0.2"]
    with pytest.raises(HydraException, match="cannot be set on the command line"):
        jobs("measure", cli=("optim.lr=0.4",), chosen={"ghost2": 0.1, "bn128": 0.2, "gn": 0.4})
