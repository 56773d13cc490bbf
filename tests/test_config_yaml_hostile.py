"""Hostile config text (issue 23 items 1 and 2): an alias bomb, deep nesting and huge scalars end in
one `error:` line naming the file or the --set key, quickly and in bounded memory, for every verb's
config path; hypothesis-generated YAML never escapes as anything but a ConfigError."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vagan.cli import app
from vagan.config_schema import MAX_YAML_DEPTH, load_yaml
from vagan.errors import ConfigError

runner = CliRunner()


def alias_bomb(levels: int = 9, key: str = "seed") -> str:
    """``levels`` of 9 aliases each: 9^levels values once expanded (387 million for 9)."""
    names = "abcdefghijkl"
    text = f"{names[0]}: &{names[0]} [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
    for prev, cur in zip(names[:levels - 1], names[1:levels]):
        text += f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
    return text + f"{key}: *{names[levels - 1]}\n"


HOSTILE = {
    "alias bomb": (alias_bomb(), "aliases"),
    "deep nesting": ("seed: " + "[" * 2000 + "]" * 2000 + "\n", "nested"),
    "huge integer": ("seed: " + "9" * 6000 + "\n", "cannot read"),
}

VERBS = {  # each verb's config file option, and what else it needs to reach the config reader
    "simulate": lambda cfg, tmp: ["simulate", str(tmp / "out"), "--config", str(cfg)],
    "train": lambda cfg, tmp: ["train", "--config", str(cfg), "--out", str(tmp / "run"), "--data", str(tmp)],
    "evaluate": lambda cfg, tmp: ["evaluate", "ldct", "--config", str(cfg), "--out", str(tmp / "eval")],
    "study": lambda cfg, tmp: ["study", str(cfg), str(tmp / "study")],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_every_verb_refuses_hostile_config_files_in_one_line(verb, case, tmp_path):
    text, message = HOSTILE[case]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    start = time.perf_counter()
    result = runner.invoke(app, VERBS[verb](cfg, tmp_path))
    assert time.perf_counter() - start < 30  # no hang (the bomb used to grow past 1.3 GB until killed)
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1, result.output[-500:]
    assert message in lines[0] and "config.yaml" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # nothing created


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_set_values_are_refused_alike(case, tmp_path):
    text, message = HOSTILE[case]
    if case == "alias bomb":  # a --set value is one YAML document: the anchors go inside a flow mapping
        value = "{" + alias_bomb().strip().replace("\n", ", ") + "}"
    else:
        value = text.split("seed: ", 1)[1].strip()
    result = runner.invoke(app, ["simulate", str(tmp_path / "out"), "--set", f"seed={value}"])
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "--set seed" in lines[0], result.output[-300:]
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_ordinary_anchors_and_nesting_still_load():
    data = load_yaml("base: &b {lr: 0.001, betas: [0.5, 0.9]}\nstage: *b\n", "x.yaml")
    assert data["stage"] == {"lr": 0.001, "betas": [0.5, 0.9]}
    nested = "v: " + "[" * (MAX_YAML_DEPTH - 2) + "1" + "]" * (MAX_YAML_DEPTH - 2)
    assert load_yaml(nested, "x.yaml") is not None


yaml_scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.booleans(), st.none(),
                         st.text(max_size=20))
yaml_text = st.recursive(
    yaml_scalars.map(repr) | st.sampled_from(["*a", "&a [1, 2]", "[", "{", ": :", "!!python/object:os.system", "- -"]),
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
    | st.dictionaries(st.sampled_from(["seed", "dose", "train", "a", "b"]), inner, max_size=3).map(
        lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"),
    max_leaves=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yaml_text)
def test_generated_yaml_is_read_or_refused_with_a_config_error(text):
    try:
        load_yaml(text, "fuzz.yaml")
    except ConfigError:
        pass
    except Exception as err:  # noqa: BLE001 - only YAML's own syntax errors may pass (the callers catch them)
        import yaml

        assert isinstance(err, yaml.YAMLError), f"{type(err).__name__}: {err}"
