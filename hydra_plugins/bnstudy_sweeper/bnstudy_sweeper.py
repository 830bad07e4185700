"""A sweep over named arms, in two phases: select each arm's rate on selection seeds, then
measure every arm at its chosen rate on fresh seeds.

Hydra's basic sweeper runs the cross product of its params. A study that compares arms which
are not a product (ghost BN over 2, 4, 16 and 128 images, and GroupNorm, which has no ghost
batch) names them in `arms`, each a set of overrides, and every arm runs over the product of
the params the arm does not name. With `phase: measure`, the params of `measure` replace
those of the selection phase (the seeds, say) and each arm runs at its rate in `chosen` only:
a rate chosen from the selection runs and committed before the measuring runs. Without
`arms`, this is Hydra's basic sweeper.

On the command line, an override of a key that arms name picks the arms that name it with one
of its values (`norm=gn` runs the GroupNorm arm only, `norm.ghost_batch_size=2,4` the two ghost
arms); any other override replaces the param of that key (`seed=5,6`).
"""
import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

PHASES = ("select", "measure")


@dataclass
class BnstudySweeperConf:
    _target_: str = "hydra_plugins.bnstudy_sweeper.bnstudy_sweeper.BnstudySweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    # untyped, so that a study can give them per scale through an interpolation (${by_scale:...})
    arms: Any = None  # arm name -> its overrides
    phase: str = "select"  # select | measure
    measure: Any = field(default_factory=dict)  # params that replace `params` when measuring
    chosen: Any = field(default_factory=dict)  # arm name -> its rate when measuring
    rate_key: str = "optim.lr"


ConfigStore.instance().store(group="hydra/sweeper", name="bnstudy", node=BnstudySweeperConf, provider="bnstudy")


def _key(o: Override) -> str:
    return o.get_key_element().lstrip("+~")


def _values(o: Override) -> List[str]:
    return list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def arm_jobs(arms: Dict[str, Dict[str, Any]], params: List[Override], cli: List[Override], phase: str,
             chosen: Dict[str, Optional[float]], rate_key: str) -> List[List[str]]:
    """Each job's overrides: for every arm (in order) the arm's own overrides, then the product of
    the params and command-line overrides it does not name."""
    if phase not in PHASES:
        raise HydraException(f"hydra.sweeper.phase={phase}: one of {', '.join(PHASES)}")
    arms = {name: {str(k): v for k, v in arm.items()} for name, arm in arms.items()}
    arm_keys = {k for arm in arms.values() for k in arm}
    if phase == "measure" and any(_key(o) == rate_key for o in cli):
        raise HydraException(f"phase=measure runs each arm at its chosen rate: {rate_key} cannot be set on the "
                             "command line")
    # a command-line key that arms name picks arms (those that name it with a value given); any
    # other key replaces the param of that key
    picks = {_key(o): _values(o) for o in cli if _key(o) in arm_keys}
    given = {_key(o): o for o in params}
    given.update({_key(o): o for o in cli if _key(o) not in arm_keys})
    picked = {name: arm for name, arm in arms.items()
              if all(k in arm and any(_same(arm[k], v) for v in values) for k, values in picks.items())}
    if phase == "measure":
        unset = [name for name in picked if chosen.get(name) is None]
        if unset:
            raise HydraException(f"phase=measure: no chosen rate for arm(s) {', '.join(unset)} (hydra.sweeper.chosen); "
                                 "run the selection phase and commit each arm's chosen rate first")
        picked = {name: {**arm, rate_key: chosen[name]} for name, arm in picked.items()}
    jobs: List[List[str]] = []
    for arm in picked.values():
        lists = [[f"{k}={v}"] for k, v in arm.items()]
        lists += [[f"{o.get_key_element()}={v}" for v in _values(o)] for k, o in given.items() if k not in arm]
        jobs += [list(x) for x in itertools.product(*lists)]
    if not jobs:
        raise HydraException(f"no arm matches the command line (arms: {', '.join(arms)})")
    return jobs


class BnstudySweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 arms: Optional[Dict[str, Dict[str, Any]]] = None, phase: str = "select",
                 measure: Optional[Dict[str, str]] = None, chosen: Optional[Dict[str, Optional[float]]] = None,
                 rate_key: str = "optim.lr") -> None:
        if arms and phase == "measure":
            params = {**(params or {}), **(measure or {})}
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.arms, self.phase, self.chosen, self.rate_key = arms or None, phase, dict(chosen or {}), rate_key
        self._cli: List[Override] = []

    def sweep(self, arguments: List[str]) -> Any:
        self._cli = OverridesParser.create().parse_overrides(arguments) if self.arms else []
        return super().sweep(arguments)

    def split_arguments(self, overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        # an instance method in place of BasicSweeper's static one: BasicSweeper.sweep calls it
        # with the params and the command line, parsed and merged
        if not self.arms:
            return BasicSweeper.split_arguments(overrides, max_batch_size)
        cli_keys = {_key(o) for o in self._cli}
        params = [o for o in overrides if _key(o) not in cli_keys]
        jobs = arm_jobs(self.arms, params, self._cli, self.phase, self.chosen, self.rate_key)
        if max_batch_size is None:
            return [jobs]
        return [jobs[i:i + max_batch_size] for i in range(0, len(jobs), max_batch_size)]
