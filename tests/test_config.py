import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from bnstudy.validation import ConfigError, to_config, validate

from conftest import CONF_DIR, EXPERIMENTS, compose_config, run_cli

GROUPS = ["data", "model", "norm", "init", "optim", "schedule", "scale", "trainer"]


def test_defaults_compose():
    cfg = compose_config()
    assert (cfg.data.name, cfg.model.depth, cfg.norm.name, cfg.scale.name) == ("synthetic", 20, "bn", "smoke")
    assert cfg.optim.lr == 0.1 and cfg.data.batch_size == 64 and cfg.trainer.max_steps == 16


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group):
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        overrides = [f"{group}={option}"]
        if option == "cifar10_folder":
            overrides.append("data.root=/nonexistent")
        if option == "custom":  # a layer of your own: any importable class
            overrides.append("norm._target_=torch.nn.Identity")
        cfg = compose_config(overrides)
        assert cfg is not None


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_every_job_of_every_study_composes_and_validates(exp):
    """Every job a study's sweep plans (its sweeper's arms and params, as `status` reads them)
    composes to a valid Config of that study: what a smoke sweep of each study checked in a
    subprocess, here in-process (the slow tier still runs them all once, tests/test_cli.py).
    At smoke every job; at the larger scales up to 12 of their cells, seed and rate aside
    (neither changes what is valid: the rates are checked as numbers), so the test stays fast."""
    from hydra import compose, initialize_config_dir
    from omegaconf.errors import InterpolationResolutionError

    from bnstudy.sweep_status import planned_jobs

    scales = []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for scale in ("smoke", "cpu", "medium", "full"):
            try:
                jobs, _ = planned_jobs(compose("config", overrides=[f"+exp={exp}", f"scale={scale}"],
                                               return_hydra_config=True))
            except InterpolationResolutionError as e:
                assert f"has no scale={scale} protocol" in str(e) and scale in ("medium", "full"), e
                continue
            scales.append(scale)
            assert len(jobs) >= 2, (exp, scale)
            drop = ("seed=",) if scale == "smoke" else ("seed=", "optim.lr=")
            distinct = sorted({tuple(o for o in job if not o.startswith(drop)) for job in jobs})
            if scale != "smoke":  # every arm and value at smoke; here a spread of at most 12 cells
                distinct = distinct[::max(1, len(distinct) // 12)]
            for job in distinct:
                cfg = to_config(compose("config", overrides=list(job)))  # a job holds the command line too
                assert cfg.study == exp and cfg.scale.name == scale, job
        rates = [float(o.split("=", 1)[1]) for job in jobs for o in job if o.startswith("optim.lr=")]
        assert all(0 < r < 100 for r in rates), (exp, scale)
    assert scales[:2] == ["smoke", "cpu"], scales


def test_exp_files_document_themselves():
    """Each study YAML opens with a short header (claim and source, command, cost, its claim
    module); the rule, protocol and deviations live in the claim module, dated notes in
    results/HISTORY.md."""
    for exp in EXPERIMENTS:
        text = (CONF_DIR / "exp" / f"{exp}.yaml").read_text()
        assert text.startswith("# @package _global_"), exp
        lines = text.splitlines()
        header = next(i for i, line in enumerate(lines) if not line.startswith("#")) - 1
        assert header <= 20, f"{exp}.yaml opens with {header} comment lines (at most 20)"
        head = text.lower()
        for word in ("claim", "command", "cost", "mode: multirun", "sweeper:"):
            assert word in head, f"{exp}.yaml lacks {word!r}"


def test_scale_full_is_the_paper_recipe():
    cfg = compose_config(["scale=full"])
    assert cfg.trainer.epochs >= 160 and cfg.data.train_subset is None and cfg.schedule.name == "step"
    assert cfg.scale.seeds.count(",") >= 2  # >= 3 seeds


def test_probe_cadence_is_sparser_at_full_scale_and_off_stays_off():
    """64k steps at scale=full: the default probes fire 10x less often than at cpu, so
    probes.csv stays a few MB a run; probes=none stays off at every scale."""
    cpu, full = compose_config(["scale=cpu"]).probes, compose_config(["scale=full"]).probes
    assert (cpu.activations.every, cpu.gradients.every, cpu.bn.every) == (200, 50, 200)
    assert (full.activations.every, full.gradients.every, full.bn.every, full.sigprop.every) == (2000, 500, 2000, 2000)
    assert compose_config(["scale=full", "probes=all"]).probes.ics.every == 1000
    off = compose_config(["scale=full", "probes=none"]).probes
    assert off.activations.every is None and off.gradients.every is None
    # a study's own cadence still wins (covariate_shift probes activations densely)
    assert compose_config(["+exp=covariate_shift", "scale=full"]).probes.activations.every != 2000


def test_command_line_group_choice_beats_scale_default():
    assert compose_config(["scale=full", "schedule=cosine"]).schedule.name == "cosine"


def test_unknown_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="lrr"):
        compose_config(["optim.lrr=0.1"])


def test_wrong_type_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_config(["data.batch_size=big"])


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1", "optim.lr"),
    ("data.batch_size=0", "data.batch_size"),
    ("model.depth=21", "model.depth"),
    ("norm.momentum=1.5", "norm.momentum"),
    ("init.mode=fan_up", "init.mode"),
    ("schedule.milestones=[0.8,0.2]", "schedule.milestones"),
    ("device=tpu", "device"),
    ("trainer.max_steps=-3", "trainer.max_steps"),
    # NaN passes `value <= 0`: each float check must refuse it, and inf where it is no value
    ("optim.lr=nan", "optim.lr"),
    ("optim.lr=inf", "optim.lr"),
    ("init.scale=nan", "init.scale"),
    ("init.scale=inf", "init.scale"),
    ("norm.eps=nan", "norm.eps"),
    ("norm.momentum=nan", "norm.momentum"),
    ("optim.weight_decay=inf", "optim.weight_decay"),
    ("optim.momentum=nan", "optim.momentum"),
    ("model.dropout=nan", "model.dropout"),
    ("schedule.gamma=nan", "schedule.gamma"),
    ("data.intensity_offset=nan", "data.intensity_offset"),
    ("probes.landscape.lr_multiples=[1.0,nan]", "probes.landscape.lr_multiples"),
    ("trainer.precision=fp16", "trainer.precision"),
])
def test_impossible_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    assert err.value.key == key and key in str(err.value) and "\n" not in str(err.value)


def test_zero_init_residual_needs_residual_blocks():
    with pytest.raises(ConfigError, match="init.zero_init_residual"):
        compose_config(["model=mlp", "init.zero_init_residual=true"])


def test_diverge_loss_inf_means_only_a_non_finite_loss_diverges():
    assert compose_config(["trainer.diverge_loss=inf"]).trainer.diverge_loss == float("inf")
    with pytest.raises(ConfigError, match="trainer.diverge_loss"):
        compose_config(["trainer.diverge_loss=nan"])


def test_gn_groups_must_divide_channels():
    with pytest.raises(ConfigError, match="norm.groups"):
        compose_config(["norm=gn", "norm.groups=5"])
    validate(compose_config(["norm=gn", "norm.groups=16"]))


@pytest.mark.parametrize("override, message", [
    ("optim.lr=-1", "optim.lr=-1.0 is not allowed: must be > 0"),
    ("optim.lr=nan", "optim.lr=nan is not allowed: must be a finite number > 0"),  # not a diverged run
    ("optim.lrr=3", "optim.lrr: no such key"),
    ("norm=bnn", "norm=bnn: no such option; one of bn,"),
    ("data.batch_size=abc", "data.batch_size=abc: Value 'abc'"),
])
def test_cli_bad_value_is_one_line_and_exit_2(tmp_path, capsys, override, message):
    """What `run` checks before Hydra starts, in this process (tests/test_sweeps.py runs the
    same cases as a user's process, in the slow tier)."""
    from bnstudy.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", override, f"hydra.run.dir={tmp_path}/r"])
    err_lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert e.value.code == 2 and len(err_lines) == 1 and err_lines[0].startswith(f"bnstudy: error: {message}")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_unknown_option_lists_choices(tmp_path):
    r = run_cli(["run", "norm=batchnorm"], cwd=tmp_path)
    assert r.returncode != 0
    assert "norm" in r.stderr and "bn" in r.stderr and "gn" in r.stderr and "Traceback" not in r.stderr


def test_steps_to_target_gives_each_arm_its_own_rate():
    """`${by_arm:BN,NONE,SKIPINIT}`: one rate per arm, not a grid; an arm it has no value for is
    a clear error, not a silent default."""
    rate = {arm: compose_config(["+exp=steps_to_target", "scale=cpu", f"norm={arm}"]).optim.lr
            for arm in ("bn", "none", "skipinit")}
    assert rate == {"bn": 0.05, "none": 0.1, "skipinit": 0.4}
    cfg = compose_config(["+exp=steps_to_target", "scale=cpu", "norm=bn"])
    assert (cfg.trainer.eval_every, cfg.data.test_subset, cfg.data.batch_size) == (8, 2000, 128)
    with pytest.raises(Exception, match="by_arm: norm=gn has no value here"):
        compose_config(["+exp=steps_to_target", "scale=cpu", "norm=gn"])
    with pytest.raises(Exception, match="by_arm: norm=bn with model.skipinit is no arm here"):
        compose_config(["+exp=steps_to_target", "scale=cpu", "norm=bn", "model.skipinit=true"])


def test_run_folders_are_not_named_by_the_keys_that_are_not_the_experiment():
    """conf/config.yaml's exclude_keys: the groups a sweep folder is named by, then exactly
    bnstudy.config.NOT_THE_EXPERIMENT (the list run folders and the report use)."""
    from omegaconf import OmegaConf

    from bnstudy.config import NOT_THE_EXPERIMENT

    exclude = OmegaConf.load(CONF_DIR / "config.yaml").hydra.job.config.override_dirname.exclude_keys
    assert list(exclude[:3]) == ["exp", "scale", "data"]
    assert sorted(exclude[3:]) == sorted(NOT_THE_EXPERIMENT) and len(set(exclude)) == len(exclude)
    # and every key named there is one of the schema's
    cfg = compose_config()
    for key in NOT_THE_EXPERIMENT:
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = getattr(node, part)
        assert hasattr(node, leaf), key


@pytest.mark.parametrize("scale, arms, rates, selecting, measuring", [
    ("smoke", 6, [0.05, 0.1], 12, [0]), ("cpu", 18, [0.0125, 0.025, 0.05, 0.1, 0.2, 0.4], 108, [5, 6, 7, 8, 9])])
def test_init_rates_arms_are_the_cells_select_names_and_measure_at_their_own_rates(scale, arms, rates, selecting,
                                                                                  measuring):
    """init_rates: each (norm, init, init.scale) cell a sweeper arm, named as selection.arm_names
    names its runs (so `select`'s chosen rates map back onto the arms); seed 100 over the grid,
    then the measuring seeds, each arm at its own chosen rate."""
    import pandas as pd
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bnstudy.analysis.selection import arm_names
    from bnstudy.sweep_status import planned_jobs

    base = ["+exp=init_rates", f"scale={scale}"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        hydra_cfg = compose("config", overrides=base, return_hydra_config=True)
        named = OmegaConf.to_container(hydra_cfg.hydra.sweeper, resolve=True)["arms"]
        jobs, _ = planned_jobs(hydra_cfg)
        chosen = {name: rates[i % len(rates)] for i, name in enumerate(named)}
        as_select_prints = "{" + ", ".join(f"{name}: {r:g}" for name, r in chosen.items()) + "}"
        measure, _ = planned_jobs(compose("config", overrides=base + ["hydra.sweeper.phase=measure",
                                                                        f"hydra.sweeper.chosen={as_select_prints}"],
                                          return_hydra_config=True))
    assert len(named) == arms and len(jobs) == selecting == arms * len(rates)
    assert {o for job in jobs for o in job if o.startswith("seed=")} == {"seed=100"}
    assert sorted({float(o.split("=")[1]) for job in jobs for o in job if o.startswith("optim.lr=")}) == rates
    assert len(measure) == arms * len(measuring)
    for name, overrides in named.items():
        cfg = compose_config([f"{k}={v}" for k, v in overrides.items()] + base + ["seed=100"])
        run = pd.DataFrame([{"norm.name": cfg.norm.name, "model.skipinit": cfg.model.skipinit,
                             "init.name": cfg.init.name, "init.scale": cfg.init.scale}])
        assert arm_names(run).item() == name and cfg.scale.selection_seeds == "100", (name, overrides)
        mine = [job for job in measure if all(f"{k}={v}" in job for k, v in overrides.items())]
        assert sorted(int(o.split("=")[1]) for job in mine for o in job if o.startswith("seed=")) == measuring, name
        assert {o for job in mine for o in job if o.startswith("optim.lr=")} == {f"optim.lr={chosen[name]}"}, name


def test_batch_noise_trains_every_arm_alike_and_runs_in_two_phases_at_cpu():
    """+exp=batch_noise: at cpu and full the same training (10,000 images, no augmentation,
    18 epochs of 78 steps, bf16, all test images, evaluations half-way and at the end); its four
    arms over {0.1, 0.2, 0.4} on seed 100 at cpu (12 runs), then each at its chosen rate on seeds
    0-4 (20 runs); no medium protocol; smoke composes one run an arm, in fp32."""
    from hydra import compose, initialize_config_dir

    from bnstudy.sweep_status import planned_jobs

    for scale in ("cpu", "full"):
        cfg = compose_config(["+exp=batch_noise", f"scale={scale}", "norm=running_bn"])
        assert (cfg.data.train_subset, cfg.data.test_subset, cfg.data.augment, cfg.data.batch_size) == (10000, None,
                                                                                                        False, 128)
        assert (cfg.trainer.epochs, cfg.trainer.eval_every, cfg.trainer.precision) == (18, 702, "bf16")
        assert 10000 // 128 * 18 == 2 * cfg.trainer.eval_every  # 1,404 steps
        assert cfg.schedule.name == "linear" and cfg.optim.nesterov and cfg.probes.bn.every is None
        assert cfg.norm.name == "running_bn" and cfg.norm.burn_in == 50
    smoke = compose_config(["+exp=batch_noise", "scale=smoke", "norm=running_bn"])
    assert smoke.trainer.precision == "fp32" and smoke.data.train_subset == 1024
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        def jobs(*overrides):
            return planned_jobs(compose("config", overrides=["+exp=batch_noise", *overrides],
                                        return_hydra_config=True))[0]

        chosen = "hydra.sweeper.chosen={bn: 0.1, ghost16: 0.2, running_bn: 0.2, gn: 0.4}"
        smoke_jobs, select, measure = (jobs("scale=smoke"), jobs("scale=cpu"),
                                       jobs("scale=cpu", "hydra.sweeper.phase=measure", chosen))
    norms = ["norm=bn", "norm=ghost_bn", "norm=running_bn", "norm=gn"]
    assert [job[0] for job in smoke_jobs] == norms and "norm.ghost_batch_size=16" in smoke_jobs[1]
    assert len(select) == 12 and {o for job in select for o in job if o.startswith(("seed=", "optim.lr="))} == {
        "seed=100", "optim.lr=0.1", "optim.lr=0.2", "optim.lr=0.4"}
    assert len(measure) == 20 and {o for job in measure for o in job if o.startswith("seed=")} == {
        f"seed={s}" for s in range(5)}
    assert {job[0]: [o for o in job if o.startswith("optim.lr=")] for job in measure}["norm=gn"] == ["optim.lr=0.4"]
