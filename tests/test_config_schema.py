"""The one schema mechanism: sections built in Python are converted and checked as YAML's are,
and every message names the full key path."""

from __future__ import annotations

import pytest

from vagan.demo import load_demo_config
from vagan.errors import ConfigError
from vagan.evaluation.eval_config import EvaluationConfig, MethodSpec
from vagan.io.mayo import DataSplit
from vagan.training.config import DataConfig, StageConfig


def test_a_section_built_in_python_converts_values_like_yaml() -> None:
    assert DataConfig(split={"train": 0.8, "val": 0.1, "test": 0.1}).split == DataSplit(0.8, 0.1, 0.1)
    stage = StageConfig(betas=[0.9, 0.99], lr=1)
    assert stage.betas == (0.9, 0.99) and isinstance(stage.lr, float)
    cfg = EvaluationConfig(methods=["ldct", "B=bm3d:25"], split={"train": ["a"], "test": ["b"]})
    assert cfg.methods == (MethodSpec("", "ldct"), MethodSpec("B", "bm3d:25"))
    assert cfg.to_dict()["split"] == {"train": ["a"], "val": [], "test": ["b"]}
    hash(stage)  # frozen and hashable after the conversion


def test_a_section_built_in_python_refuses_what_yaml_would() -> None:
    with pytest.raises(ConfigError, match="lr: expected a number, got 'x'"):
        StageConfig(lr="x")
    with pytest.raises(ConfigError, match=r"lr: must be > 0"):
        StageConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="did you mean 'bm3d'"):
        EvaluationConfig(methods=["bm4d"])


def test_nested_messages_name_the_whole_key_path() -> None:
    with pytest.raises(ConfigError, match=r"^evaluation\.methods\[0\]\.spec: unknown method spec 'bm4d'"):
        load_demo_config(None, ["evaluation.methods=[bm4d]"])
    with pytest.raises(ConfigError, match=r"^evaluation\.methods: expected a list"):
        load_demo_config(None, ["evaluation.methods=3"])
    with pytest.raises(ConfigError, match=r"^dataset\.simulation\.n_views: must be >= 1"):
        load_demo_config(None, ["dataset.simulation.n_views=0"])
    with pytest.raises(ConfigError, match=r"^model\.discriminator: 'nome' is not one of .*'none'.*did you mean 'none'"):
        from vagan.training.config import load_config

        load_config("vagan", ["model.discriminator=nome"])


def test_a_model_path_holding_an_equals_sign_is_a_path(tmp_path) -> None:
    run = tmp_path / "lr=1e-3"
    run.mkdir()
    assert MethodSpec.from_value(str(run), "m") == MethodSpec("", str(run))
    assert MethodSpec.from_value("mine=bm3d", "m") == MethodSpec("mine", "bm3d")
