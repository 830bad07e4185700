"""Checks that run before any training (a Hydra callback, bnstudy/conf/config.yaml: hydra.callbacks).

A typo'd value at run 17 of a sweep should fail in the first second, not after an hour:
before a multirun starts, every value each swept key will take is checked against the
schema and the value rules, every swept config-group option must exist, and the output
folder must be writable. A run pinned to bf16 where this machine only emulates it is refused
then too, and again as each job starts, on the machine that runs it (a swept group, SLURM).
Failures print one line and exit with code 2 (config) or 3 (output folder).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .config import CONF_DIR, Config
from .validation import ConfigError, to_config


def _fail(code: int, message: str) -> None:
    print(f"bnstudy: error: {message}", file=sys.stderr)
    sys.exit(code)


def _check_writable(folder: str) -> None:
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".bnstudy-write-check-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        _fail(3, f"cannot write the output folder {folder}: {e.strerror or e}")


def _task_config(config: DictConfig) -> DictConfig:
    """The job's config without the hydra node, typed by the schema again."""
    cfg = OmegaConf.masked_copy(config, [k for k in config.keys() if k != "hydra"])
    return OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.to_container(cfg, resolve=True))


def _remote(config: DictConfig) -> bool:
    """Whether the jobs run on other machines (SLURM), whose devices this one cannot see."""
    return "Slurm" in str(OmegaConf.select(config, "hydra.launcher._target_", default=""))


def _check_bf16(cfg: Config) -> None:
    """ConfigError for bf16 pinned where the device only emulates it (bnstudy/precision.py)."""
    if cfg.trainer.precision != "bf16":  # no device to look at, nor torch to import
        return
    from .data import DataError
    from .precision import require_native
    from .run import resolve_device

    try:
        device = resolve_device(cfg.device)
    except DataError:
        return  # no such device here: the run says so (exit 3)
    require_native(cfg.trainer.precision, device, cfg.study)


def _validate(config: DictConfig, here: bool = True) -> None:
    """Exit 2 for a config the schema or the value rules refuse; `here`: the jobs train on this
    machine's device, so bf16 is checked against it too."""
    try:
        cfg = to_config(_task_config(config))
        if here:
            _check_bf16(cfg)
    except ConfigError as e:
        _fail(2, str(e))


def check_sweep_values(config: DictConfig, params: dict[str, Any], here: bool = True) -> None:
    """Validate each value of each swept key on its own, against the base config (`here`: bf16 too)."""
    parser = OverridesParser.create()
    base = _task_config(config)
    for key, spec in params.items():
        (override,) = parser.parse_overrides([f"{key}={spec}"])
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if (CONF_DIR / key).is_dir() and "." not in key:  # a config-group choice, e.g. norm=bn
                if not (CONF_DIR / key / f"{value}.yaml").exists():
                    options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
                    _fail(2, f"{key}={value} is not allowed: one of {', '.join(options)}")
                continue
            cfg = base.copy()
            try:
                (single,) = parser.parse_overrides([f"{key}={value}"])
                OmegaConf.update(cfg, key, single.value(), merge=True)
                checked = to_config(cfg)
                if here:
                    _check_bf16(checked)
            except ConfigError as e:
                _fail(2, str(e))
            except Exception as e:  # omegaconf's type and key errors
                _fail(2, f"{key}={value} is not allowed: {str(e).splitlines()[0]}")


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _validate(config)
        _check_writable(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _validate(config, here=not _remote(config))
        swept = OmegaConf.select(config, "hydra.sweeper.params")
        params = dict(OmegaConf.to_container(swept, resolve=True)) if swept is not None else {}
        for line in config.hydra.overrides.task:  # sweeps given on the command line (-m key=a,b)
            key, _, value = line.partition("=")
            if "," in value or value.startswith(("range(", "choice(", "glob(")):
                params[key.lstrip("+~")] = value
        check_sweep_values(config, params, here=not _remote(config))
        _check_writable(config.hydra.sweep.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # on the job's own machine, with its whole config (a swept group such as scale=cpu,medium
        # is checked by name only above); before run.py writes anything in the job's folder
        _validate(config)


def compose_or_fail(args: list[str]) -> None:
    """Compose the config the way `run ARGS` will, before Hydra starts, so that an unknown
    key, a wrong type or a missing option is one line (exit 2) instead of Hydra's report.
    Sweeps are checked with their first value here; Preflight checks every value later."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    overrides = []
    for arg in args:
        if arg.startswith("-") or arg.startswith("hydra.") or arg.startswith("hydra/"):
            continue
        try:
            (o,) = parser.parse_overrides([arg])
        except HydraException as e:
            _fail(2, f"cannot parse override {arg!r}: {str(e).splitlines()[0]}")
        if o.is_sweep_override():
            first = next(iter(o.sweep_string_iterator()), None)
            if first is None:
                continue
            arg = f"{arg.split('=', 1)[0]}={first}"
        overrides.append(arg)
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            to_config(compose("config", overrides=overrides))
    except ConfigError:
        return  # reported, with the key, by the run itself
    except (HydraException, OmegaConfBaseException) as e:
        cause = str(e.__cause__).splitlines()[0] if e.__cause__ is not None and str(e.__cause__) else ""
        _fail(2, _one_line(str(e), cause))


def _one_line(message: str, cause: str = "") -> str:
    """Hydra's multi-line composition errors, said in one line."""
    import re

    text = message.strip()
    m = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if m:
        group, option = m.groups()
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        return f"{group.replace('/', '.')}={option}: no such option; one of {', '.join(options)}"
    m = re.search(r"Could not override '([^']+)'", text)
    if m and ("not in" in cause or "not in struct" in text):
        near = did_you_mean(m.group(1))
        return (f"{m.group(1)}: no such key" + (f"; did you mean {near}?" if near else "")
                + f" ({cause or 'not in the schema'}; to add a new key write +{m.group(1)}=...)")
    m = re.search(r"Error merging override (\S+)", text)
    if m:
        return f"{m.group(1)}: {cause or 'wrong type'}"
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith(
        ("full_key", "object_type", "reference_type", "Config search path", "provider=", "Set the environment"))]
    return "; ".join(lines[:2])


def schema_keys(node: Any = Config, prefix: str = "") -> list[str]:
    """Every key of the config schema, dotted (optim.lr, probes.activations.every, ...)."""
    import dataclasses

    keys = []
    for f in dataclasses.fields(node):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        t = f.type if isinstance(f.type, type) else type(default)
        sub = t if dataclasses.is_dataclass(t) else (type(default) if dataclasses.is_dataclass(default) else None)
        if sub is None:
            from .config import GROUP_SCHEMAS  # a group's schema, where the root leaves it MISSING
            sub = GROUP_SCHEMAS.get(f.name) if not prefix else None
        keys += schema_keys(sub, key + ".") if sub is not None else [key]
    return keys


def did_you_mean(key: str) -> str:
    """The schema key closest to a misspelt one, or ''."""
    import difflib

    match = difflib.get_close_matches(key.lstrip("+~"), schema_keys(), n=1, cutoff=0.75)
    return match[0] if match else ""
