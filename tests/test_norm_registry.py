"""One entry in the norm registry (bnstudy/nets/norms.py: NORMS) is all a built-in norm needs:
config validation, both nets and the figures read it."""
import dataclasses

import pandas as pd
import pytest
from torch import nn

from bnstudy.analysis import style
from bnstudy.config import CONF_DIR
from bnstudy.nets.norms import NORMS, NormSpec
from bnstudy.nets.resnet import build_model
from bnstudy.validation import ConfigError, validate
from conftest import compose_config

SPEC = NormSpec(build=lambda c, n, i: nn.GroupNorm(1, n), conv_bias=False,
                build_1d=lambda c, n, i: nn.LayerNorm(n), label="a test norm", color="C9")


def _with_norm(model: str, name: str):
    cfg = compose_config([f"model={model}"])
    cfg.norm.name = name
    return cfg


def test_one_registry_entry_feeds_validation_both_nets_and_the_figures(monkeypatch):
    monkeypatch.setitem(NORMS, "testnorm", SPEC)
    for model, layer in (("resnet20", nn.GroupNorm), ("mlp", nn.LayerNorm)):
        cfg = validate(_with_norm(model, "testnorm"))
        assert any(isinstance(m, layer) for m in build_model(cfg.model, cfg.norm).modules()), model
    assert style.label("testnorm") == "a test norm" and style.color("testnorm") == "C9"
    assert style.norms_of(pd.DataFrame({"norm.name": ["testnorm", "gn", "bn"]})) == ["bn", "gn", "testnorm"]
    # without a builder for (N, C) features, the mlp refuses it in one line naming those that have one
    monkeypatch.setitem(NORMS, "testnorm", dataclasses.replace(SPEC, build_1d=None))
    with pytest.raises(ConfigError, match=r"model=mlp has a 1-d norm: bn, none, noisy_bn, noisy_bn_example, custom"):
        validate(_with_norm("mlp", "testnorm"))
    validate(_with_norm("resnet20", "testnorm"))
    # and a name the registry does not hold is refused, naming those it does
    with pytest.raises(ConfigError, match="norm.name='nope' is not allowed: one of bn, none, gn"):
        validate(_with_norm("resnet20", "nope"))


def test_every_norm_option_is_a_registry_entry():
    """conf/norm/ holds one option per registry entry, plus skipinit (the unnormalized net with
    SkipInit: norm none and model.skipinit)."""
    options = {p.stem for p in (CONF_DIR / "norm").glob("*.yaml")}
    assert options - {"skipinit"} == set(NORMS)
    assert compose_config(["norm=skipinit"]).norm.name in NORMS
