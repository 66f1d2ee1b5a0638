"""Configuration: presets, YAML precedence, validation messages and exit codes."""

from __future__ import annotations

import pytest

from conftest import run_main
from mimax.cli import main
from mimax.config import Config, ConfigError, config_from_args

REFERENCE_FLAGS = ["--model_name", "JMI", "--dataset", "Gaussian", "--architecture", "MLP", "--num_classes", "5",
                   "--epochs", "800", "--warmup_epochs", "10", "--batch_size", "64", "--initial_lr", "0.05",
                   "--weight_decay", "0.0001", "--temperature", "0.1", "--num_runs", "3", "--augmentation",
                   "--feature_dim", "512", "--projection_dim", "256", "--projection_layer", "3",
                   "--model_save_interval", "50", "--model_evaluation_interval", "1000", "--num_workers", "16"]


def test_reference_flags_parse_unchanged():
    cfg = config_from_args(REFERENCE_FLAGS)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.batch_size, cfg.initial_lr) == (800, 10, 64, 0.05)
    assert (cfg.num_runs, cfg.augmentation, cfg.feature_dim, cfg.projection_dim) == (3, True, 512, 256)
    assert (cfg.projection_layer, cfg.model_save_interval, cfg.model_evaluation_interval) == (3, 50, 1000)
    assert cfg.num_workers == 16 and cfg.weight_decay == 0.0001 and cfg.temperature == 0.1


def test_dataset_preset_fills_unset_fields():
    cfg = config_from_args(["--dataset", "Gaussian"])
    assert cfg.architecture == "MLP" and cfg.optimizer == "adam" and cfg.projection_dim == 3


def test_yaml_file_is_overridden_by_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nbatch_size: 32\ninitial_lr: 0.01\n")
    cfg = config_from_args(["--config", str(f), "--batch_size", "16"])
    assert (cfg.epochs, cfg.batch_size, cfg.initial_lr) == (7, 16, 0.01)


def test_yaml_exponent_floats_are_floats(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-3` as the string '1e-3': "--initial_lr: expected float, got '1e-3'"
    f = tmp_path / "c.yaml"
    f.write_text("initial_lr: 1e-3\nweight_decay: 5E-4\ntemperature: .5e-1\n")
    cfg = config_from_args(["--config", str(f)])
    assert (cfg.initial_lr, cfg.weight_decay, cfg.temperature) == (1e-3, 5e-4, 0.05)
    f.write_text("epochs: 1e3\n")  # an int field stays strict
    with pytest.raises(ConfigError, match="--epochs: expected int, got 1000.0"):
        config_from_args(["--config", str(f)])
    # a quoted number is a string, as "0.5" is (a quoted "1e-3" was accepted as a number, in YAML and the API)
    f.write_text('initial_lr: "1e-3"\n')
    with pytest.raises(ConfigError, match="--initial_lr: expected float, got '1e-3'"):
        config_from_args(["--config", str(f)])
    from mimax.config import config_from_dict

    for text in ("1e-3", "0.5"):
        with pytest.raises(ConfigError, match=f"--initial_lr: expected float, got '{text}'"):
            config_from_dict({"initial_lr": text})


def test_tilde_in_paths_is_the_home_folder_from_yaml_flags_and_the_api(tmp_path, monkeypatch):
    # `data_dir: ~/ds` in YAML and `--data_dir=~/ds` (no shell expands ~ after "=") read a folder named "~";
    # `output_dir: ~/runs/x` wrote the run into ./~/runs/x
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home" / "fm").mkdir(parents=True)
    from image_fixtures import write_idx_set

    write_idx_set(tmp_path / "home" / "fm")
    f = tmp_path / "c.yaml"
    f.write_text("dataset: FashionMNIST\ndata_dir: ~/fm\noutput_dir: ~/runs/x\n")
    cfg = config_from_args(["--config", str(f)])
    assert cfg.data_dir == str(tmp_path / "home" / "fm") and cfg.output_dir == str(tmp_path / "home" / "runs" / "x")
    cfg = config_from_args(["--dataset", "FashionMNIST", "--data_dir=~/fm"])
    assert cfg.data_dir == str(tmp_path / "home" / "fm")
    from mimax.api import resolved_config

    cfg, _, _ = resolved_config({"dataset": "FashionMNIST", "data_dir": "~/fm", "output_dir": "~/runs/y"})
    assert cfg.output_dir == str(tmp_path / "home" / "runs" / "y")
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("yaml_text,flag", [("epochs: ten\n", "--epochs"), ("bogus: 1\n", "--config"),
                                            ("- 1\n", "--config"), ("epochs: [\n", "--config")])
def test_bad_yaml_is_refused(tmp_path, yaml_text, flag):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        config_from_args(["--config", str(f)])
    assert err.value.flag == flag


@pytest.mark.parametrize("args,flag", [
    (["--model_name", "Nope"], "--model_name"),
    (["--dataset", "Nope"], "--dataset"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "5", "--warmup_epochs", "5"], "--warmup_epochs"),
    (["--batch_size", "1"], "--batch_size"),
    (["--initial_lr", "0"], "--initial_lr"),
    (["--initial_lr", "-1"], "--initial_lr"),
    (["--num_runs", "0"], "--num_runs"),
    (["--projection_layer", "4"], "--projection_layer"),
    (["--projection_layer", "0"], "--projection_layer"),
    (["--temperature", "0"], "--temperature"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--momentum", "1.5"], "--momentum"),
    (["--architecture", "ResNet18"], "--architecture"),
    (["--architecture", "VGG"], "--architecture"),
    (["--num_classes", "3"], "--num_classes"),
    (["--gm_train_size", "100", "--batch_size", "256"], "--gm_train_size"),
    (["--device", "tpu"], "--device"),
    (["--model_save_interval", "0"], "--model_save_interval"),
    (["--model_name", "SimCLR", "--no_marginal"], "--no_marginal"),
    (["--config", "/nonexistent/c.yaml"], "--config"),
])
def test_validation_names_the_flag(args, flag):
    with pytest.raises(ConfigError) as err:
        config_from_args(args)
    assert err.value.flag == flag


def test_cli_reports_one_line_and_exit_code_2(capsys):
    assert main(["train", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "mimax: error: --epochs: must be >= 1 (got 0)"
    assert main(["train", "--epochs", "abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs" in err[0] and "invalid int" in err[0]
    assert main(["train", "--no_such_flag"]) == 2
    assert "unrecognized arguments: --no_such_flag" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["train", "--dataset", "Gaussian", "--projector_bn", "maybe"], "--projector_bn"),  # store_true
    (["train", "--dataset", "Gaussian", "--no_marginal", "yes", "--epochs", "2"], "--no_marginal"),
    (["demo", "--quick", "1"], "--quick"),
])
def test_a_value_given_to_a_switch_is_refused_naming_the_switch(tmp_path, capsys, argv, flag):
    """argparse would report 'unrecognized arguments: maybe', naming no flag."""
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mimax: error: {flag}: a switch takes no value (got '"), err
    assert not (tmp_path / "out").exists()
    assert main(["train", "--dataset", "Gaussian", "--epochs", "2", "stray", "--output_dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "mimax: error: unrecognized arguments: stray"


def test_main_py_bad_flag_in_subprocess_has_no_traceback():
    proc = run_main(["--batch_size", "1"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["mimax: error: --batch_size: must be >= 2: every objective needs a "
                                                "pair (got 1)"]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name, f in Config.__dataclass_fields__.items():
        assert (f"--{name}" in out) == f.metadata.get("flag", True)


def test_version_and_methods(capsys):
    from mimax import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mimax {__version__}"
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "JMI" in out and "SimCLR" in out and "joint" in out


def test_a_gaussian_run_config_given_back_is_accepted_and_a_foreign_recipe_refused():
    """A Gaussian run records its method's view_recipe (config.json); given back (--config from it) it was
    refused as an image flag. Another recipe than the method's is still refused: the mixture reads none."""
    from mimax.config import config_from_dict

    assert config_from_dict({"model_name": "BYOL", "dataset": "Gaussian", "view_recipe": "byol"}).view_recipe == "byol"
    assert config_from_dict({"model_name": "SDMI", "dataset": "Gaussian", "view_recipe": "simclr"})
    with pytest.raises(ConfigError, match="--view_recipe: --dataset Gaussian does not read it"):
        config_from_dict({"model_name": "SDMI", "dataset": "Gaussian", "view_recipe": "byol"})


def test_a_yaml_null_is_a_field_left_to_the_presets(tmp_path, monkeypatch):
    """`key: null` in a --config file means what Config(key=None) means: the preset's value. It counted as given:
    the preset warmup was not fitted to 3 epochs (refused: got 5), a null option of another method was refused
    as "not read", and a requeued `--resume auto` job was refused as a change of warmup_epochs."""
    from mimax.config import explicit_values, resolve_with_notes

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "job.yaml").write_text("model_name: SDMI\ndataset: Digits\nepochs: 3\nwarmup_epochs: null\n"
                                       "barlow_lambda: null\ntemperature: null\n")
    with_nulls = explicit_values(["--config=~/job.yaml"])  # `~` after `=`: no shell expands it
    assert "warmup_epochs" not in with_nulls and "barlow_lambda" not in with_nulls
    cfg, fitted = resolve_with_notes(with_nulls)
    (tmp_path / "plain.yaml").write_text("model_name: SDMI\ndataset: Digits\nepochs: 3\n")
    plain, plain_fitted = resolve_with_notes(explicit_values(["--config", str(tmp_path / "plain.yaml")]))
    assert cfg == plain and fitted == plain_fitted and cfg.warmup_epochs < 3 and not cfg.unused
