"""The selection rule (bnstudy/analysis/selection.py): each arm's rate chosen on selection seeds,
inside its grid, and measured on other seeds at that rate only."""
import numpy as np
import pandas as pd

from bnstudy.analysis import selection as S


def runs(rows):
    """rows: (norm, ghost, skipinit, lr, seed, acc, status)"""
    df = pd.DataFrame(rows, columns=["norm.name", "norm.ghost_batch_size", "model.skipinit", "optim.lr", "seed",
                                     "final_acc", "status"])
    return df.assign(**{"scale.selection_seeds": "100"})


def grid(norm, accs, ghost=32, skip=False, seed=100):
    return [(norm, ghost, skip, lr, seed, a, "completed") for lr, a in accs.items()]


def test_arm_names_follow_the_study_yamls():
    df = runs(grid("bn", {0.1: .8}) + grid("none", {0.1: .7}) + grid("none", {0.1: .7}, skip=True)
              + grid("ghost_bn", {0.1: .6}, ghost=2) + grid("gn", {0.1: .5}))
    assert list(S.arm_names(df)) == ["bn", "none", "skipinit", "ghost2", "gn"]


def test_the_best_rate_inside_the_grid_is_chosen():
    df = runs(grid("bn", {0.1: .84, 0.2: .86, 0.4: .85}))
    (c,) = S.choose(df).itertuples()
    assert c.chosen == 0.2 and c.status == S.INSIDE


def test_a_best_rate_at_an_edge_asks_for_the_next_rate_beyond_it():
    df = runs(grid("bn", {0.1: .84, 0.2: .85, 0.4: .86}) + grid("none", {0.1: .80, 0.2: .79, 0.4: .10}))
    c = S.choose(df).set_index("arm")
    assert c.loc["bn", "chosen"] == 0.4 and "upper edge: extend it to 0.8" in c.loc["bn", "status"]
    assert c.loc["none", "chosen"] == 0.1 and "lower edge: extend it to 0.05" in c.loc["none", "status"]


def test_an_arm_at_chance_everywhere_grows_its_grid_down_to_x16_before_it_counts_as_trained_nowhere():
    """At chance over 0.1-0.4 (x4): extend to 0.05, as a lower edge; at chance over 0.025-0.4 (x16):
    trained nowhere, measured at 0.025, and settled (nothing left to bracket)."""
    chance = {0.1: .10, 0.2: .11, 0.4: .10}
    (c,) = S.choose(runs(grid("none", chance))).itertuples()
    assert "lower edge: extend it to 0.05" in c.status and not S.settled(c.status)
    (c,) = S.choose(runs(grid("none", {0.025: .12, 0.05: .10, **chance}))).itertuples()
    assert c.status.startswith(S.NOWHERE) and S.settled(c.status) and c.chosen == 0.025


def test_a_tie_goes_to_the_lower_rate_and_an_unfinished_run_blocks_the_choice():
    df = runs(grid("bn", {0.05: .80, 0.1: .85, 0.2: .85, 0.4: .84}))
    assert S.choose(df).chosen.item() == 0.1
    df.loc[df["optim.lr"] == 0.4, ["status", "final_acc"]] = ["running", np.nan]
    assert S.choose(df).status.item().startswith("incomplete")


def test_phases_split_on_the_selection_seeds_and_measuring_runs_are_checked_against_the_choice():
    sel = grid("bn", {0.1: .84, 0.2: .86, 0.4: .85})
    meas = [("bn", 32, False, 0.2, s, .86, "completed") for s in range(5)]
    df = runs(sel + meas)
    selection, measuring = S.phases(df)
    assert set(selection.seed) == {100} and set(measuring.seed) == set(range(5))
    choices = S.choose(selection)
    assert S.measuring_problems(selection, measuring, choices) == []
    wrong = measuring.assign(**{"optim.lr": 0.4})
    assert S.measuring_problems(selection, wrong, choices) == ["bn: measured at 0.4, chosen 0.2"]


def test_a_claim_reads_the_measuring_runs_and_says_how_the_rates_were_chosen():
    from bnstudy.analysis.cells import SELECTED, study_runs

    df = runs(grid("bn", {0.1: .84, 0.2: .86, 0.4: .85}) + [("bn", 32, False, 0.2, s, .86, "completed") for s in range(5)])
    df = df.assign(study="lr_sweep", **{"scale.name": "medium", "data.name": "cifar10_folder"})
    measured, notes = study_runs(df, "lr_sweep")
    assert set(measured.seed) == set(range(5))
    assert any("chosen on 3 selection runs (seeds 100)" in n for n in notes)
    phase = [n for n in notes if getattr(n, "kind", "") == SELECTED]
    assert len(phase) == 1 and phase[0].data == {"selection_seeds": [100], "selection_runs": 3}
    chose, _ = study_runs(df, "lr_sweep", phase="select")
    assert set(chose.seed) == {100}
    # without selection seeds among the runs (the cpu studies) every run is read
    cpu = df[df.seed != 100]
    assert len(study_runs(cpu, "lr_sweep")[0]) == 5 and len(study_runs(cpu, "lr_sweep", phase="select")[0]) == 5


def test_no_measuring_runs_yet_is_no_problem():
    df = runs(grid("bn", {0.1: .84, 0.2: .86, 0.4: .85}))
    selection, measuring = S.phases(df)
    assert measuring.empty and S.arm_names(measuring).empty
    assert S.measuring_problems(selection, measuring, S.choose(selection)) == []


def test_audit_passes_a_fair_two_phase_study_and_names_what_breaks_one():
    sel = grid("bn", {0.1: .84, 0.2: .86, 0.4: .85}) + grid("none", {0.05: .78, 0.1: .80, 0.2: .79})
    meas = ([("bn", 32, False, 0.2, s, .86, "completed") for s in range(5)]
            + [("none", 32, False, 0.1, s, .80, "completed") for s in range(5)])
    df = runs(sel + meas).assign(precision="bf16")
    assert S.audit(df) == []
    assert S.audit(df.iloc[:-1]) == ["none: 4 finished measuring seeds (at least 5)"]
    edge = df[~((df.seed == 100) & (df["optim.lr"] == 0.4))]  # bn's best is now the grid's top
    assert S.audit(edge) == ["bn: at the grid's upper edge: extend it to 0.4", "bn: measured while its choice is "
                             "at the grid's upper edge: extend it to 0.4"]
    assert S.audit(df.assign(precision=["fp32"] + ["bf16"] * (len(df) - 1))) == ["runs in 2 precisions: ['bf16', 'fp32']"]


def test_a_claim_reads_no_measuring_run_the_selection_does_not_back():
    from bnstudy.analysis.cells import study_runs

    sel = grid("bn", {0.1: .84, 0.2: .86, 0.4: .85})
    meas = [("bn", 32, False, lr, s, .86, "completed") for s in range(5) for lr in (0.2, 0.4)]
    df = runs(sel + meas).assign(study="lr_sweep", **{"scale.name": "medium", "data.name": "cifar10_folder"})
    measured, notes = study_runs(df, "lr_sweep")
    assert measured.empty and any(n.startswith("not read: bn: measured at 0.2, 0.4") for n in notes)
    at_chosen, _ = study_runs(pd.concat([df[df.seed == 100], df[(df.seed != 100) & (df["optim.lr"] == 0.2)]]),
                              "lr_sweep")
    assert set(at_chosen["optim.lr"]) == {0.2} and len(at_chosen) == 5
