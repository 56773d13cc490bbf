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


@pytest.mark.parametrize(("override", "message"), [
    ("train.checkpoint_every=0", r"train.checkpoint_every: must be >= 1, got 0"),
    ("train.log_every=0", r"train.log_every: must be >= 1"),
    ("model.generator_features=0", r"model.generator_features: must be >= 1"),
    ("model.generator_features=-8", r"model.generator_features: must be >= 1, got -8"),
    ("model.attention_steps=0", r"model.attention_steps: must be >= 1"),
    ("data.patches_per_slice=0", r"data.patches_per_slice: must be >= 1"),
    ("train.num_workers=-1", r"train.num_workers: must be >= 0"),
    ("stages.1.critic_steps=0", r"stages\[1\].critic_steps: must be >= 1"),
    ("stages.0.batch_size=0", r"stages\[0\].batch_size: must be >= 1"),
    ("stages.0.lr=0", r"stages\[0\].lr: must be > 0"),
    ("stages.0.betas=[0.9, 1.0]", r"stages\[0\].betas\[1\]: must be >= 0 and < 1"),
    ("stages.1.losses.gan=-0.1", r"stages\[1\].losses.gan: must be >= 0"),
    ("stages.0.lr=.nan", r"stages\[0\].lr: expected a finite number"),
    ("data.hu_max=.inf", r"data.hu_max: expected a finite number"),
    ("data.patch_size=8", r"data.patch_size: must be >= 16"),
])
def test_values_out_of_their_declared_range_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("vagan", [override])


def test_every_range_admits_its_default():
    """The declared ranges describe the defaults too (a range too tight would refuse the presets)."""
    for name in PRESETS:
        load_config(name, ["train.num_workers=0", "data.val_slices=0", "stages.*.max_steps=1"])


def test_a_config_file_in_another_encoding_is_one_error(tmp_path):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("preset: vagan\n# r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text .*0xe9"):
        load_config(latin)


def test_a_value_for_one_stage_wins_over_the_one_for_every_stage():
    for order in (["stages.0.max_steps=3", "stages.*.max_steps=7"], ["stages.*.max_steps=7", "stages.0.max_steps=3"]):
        cfg = load_config("vagan", order)
        assert [s.max_steps for s in cfg.stages] == [3, 7]


def test_a_stage_wildcard_without_stages_is_one_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: g_psnr\nstages: 5\n")
    with pytest.raises(ConfigError, match=r"stages\.\*: the config has no list of stages"):
        load_config(bad, ["stages.*.max_steps=2"])


def test_a_malformed_set_value_is_one_error():
    for item in ["data.split={train: 0.67", "train.seed=[1", "train.seed=!!python/object:os.system x"]:
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config("vagan", [item])


def test_demo_steps_name_stages_of_its_presets():
    from vagan.demo import load_demo_config

    assert load_demo_config(None, ["steps.vagan.gan=3"]).steps["vagan.gan"] == 3
    with pytest.raises(ConfigError, match=r"steps.nosuch: not a stage"):
        load_demo_config(None, ["steps.nosuch=2"])
    with pytest.raises(ConfigError, match=r"steps.psnr: must be an integer >= 1"):
        load_demo_config(None, ["steps.psnr=0"])
    assert load_demo_config(None, ["minutes.vagan.gan=0.25"]).minutes["vagan.gan"] == 0.25
    with pytest.raises(ConfigError, match=r"minutes.psnr: must be a number of minutes > 0"):
        load_demo_config(None, ["minutes.psnr=-1"])
    with pytest.raises(ConfigError, match=r"minutes.gna: not a stage"):
        load_demo_config(None, ["minutes.gna=1"])


def test_typed_values_are_never_parsed_as_yaml():
    """--data and --vgg-weights go into the config as the strings they are: no YAML integer, no comment."""
    from vagan.training.config import with_values

    cfg = with_values(load_config("vagan"), {"data.root": "scans/2016", "train.vgg_weights": "w/my #1 vgg.pth",
                                             "stages.1.max_steps": 5})
    assert cfg.data.root == "scans/2016" and cfg.train.vgg_weights == "w/my #1 vgg.pth"
    assert cfg.stages[1].max_steps == 5 and cfg.stages[0].max_steps is None
    assert with_values(load_config("vagan"), {"data.root": "2016"}).data.root == "2016"
    with pytest.raises(ConfigError, match="train.precision"):
        with_values(load_config("vagan"), {"train.precision": "fp64"})
