import pytest

from vagan.errors import ConfigError
from vagan.training.config import PRESETS, load_config


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads(name):
    cfg = load_config(name)
    assert cfg.preset == name
    assert cfg.stages


def test_paper_values_of_vagan_preset():
    cfg = load_config("vagan")
    psnr, gan = cfg.stages
    assert (psnr.lr, psnr.batch_size, psnr.epochs) == (2e-4, 32, 20)
    assert (psnr.losses.ab, psnr.losses.ms) == (1.0, 1.0)
    assert gan.init_from == "psnr" and gan.lr == 1e-4
    assert (gan.losses.gan, gan.losses.ab, gan.losses.ms, gan.losses.pcep) == (0.005, 1.0, 0.01, 0.5)
    assert gan.losses.d_attention == 0.05
    assert cfg.model.discriminator == "attentive" and cfg.model.attention_steps == 4


def test_table_one_variants_differ_as_in_the_paper():
    assert load_config("g_psnr").model.generator == "red"
    assert load_config("ga_psnr").stages[0].losses.ab == 1.0
    assert load_config("g_gan").model.discriminator == "plain"
    assert load_config("ga_gan").model.generator == "vagan" and load_config("ga_gan").model.discriminator == "plain"


def test_overrides_apply_to_nested_keys_and_all_stages():
    cfg = load_config("vagan", ["stages.*.max_steps=7", "data.patch_size=32", "stages.1.lr=0.5"])
    assert [s.max_steps for s in cfg.stages] == [7, 7]
    assert cfg.data.patch_size == 32
    assert cfg.stages[1].lr == 0.5


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.generatr'; did you mean 'generator'"):
        load_config("vagan", ["model.generatr=red"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"stages\[0\].lr: expected a number"):
        load_config("vagan", ["stages.0.lr=fast"])
    with pytest.raises(ConfigError, match="model.discriminator"):
        load_config("vagan", ["model.discriminator=huge"])


def test_attention_loss_without_attentive_generator_is_rejected():
    with pytest.raises(ConfigError, match="L_AB needs the attentive generator"):
        load_config("ga_psnr", ["model.generator=red"])


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'vagan'"):
        load_config("vagn")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_file_with_bad_syntax(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
