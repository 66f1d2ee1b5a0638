"""Method options belong to the method: each method reads only the fields of its own frozen options
dataclass; a method-specific flag it does not read is refused (one line, exit 2), a reference-repository
flag it does not read is accepted with a warning and recorded as unused in config.json."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import TINY_GAUSSIAN, run_main
from mimax.cli import main
from mimax.config import REFERENCE_FLAGS, ConfigError, config_from_args
from mimax.config.schema import METHOD_OPTION_FIELDS
from mimax.methods import METHODS, build_method, option_names


def test_options_are_frozen_dataclasses_built_from_the_config_fields_they_name():
    cfg = config_from_args(["--model_name", "BarlowTwins", "--barlow_lambda", "0.01"])
    method = build_method(cfg, (cfg.gm_dim,))
    assert method.options == METHODS["BarlowTwins"].Options(barlow_lambda=0.01, barlow_scale=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.options.barlow_lambda = 1.0
    assert not hasattr(method, "cfg")  # constructed from its options, not from the whole config


def test_every_method_option_is_a_config_field_and_the_reverse():
    assert option_names() == METHOD_OPTION_FIELDS
    for cls in METHODS.values():
        for f in dataclasses.fields(cls.Options):
            assert f.metadata["help"] and f.metadata["source"], (cls.name, f.name)


@pytest.mark.parametrize("method,flags,flag", [
    ("SimCLR", ["--barlow_lambda", "0.01"], "--barlow_lambda"),
    ("SimCLR", ["--no_marginal"], "--no_marginal"),
    ("BYOL", ["--target_update", "ema"], "--target_update"),
    ("VICReg", ["--predictor_dim", "64"], "--predictor_dim"),
    ("BarlowTwins", ["--vicreg_sim_coeff", "1"], "--vicreg_sim_coeff"),
    ("SDMI", ["--ema_momentum", "0.9"], "--ema_momentum"),  # read only with --target_update ema
    ("SDMI", ["--ema_min_time_constants", "10"], "--ema_min_time_constants"),
    ("SDMI", ["--predictor_dim", "8"], "--predictor_dim"),  # read only with --predictor
    ("SDMI", ["--target_update", "copy", "--target_init", "copy"], "--target_init"),
])
def test_a_method_specific_flag_the_method_does_not_read_is_refused(method, flags, flag):
    with pytest.raises(ConfigError) as err:
        config_from_args(["--model_name", method, *flags])
    assert err.value.flag == flag and method in str(err.value)


def test_refusal_is_one_line_with_exit_code_2_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", *TINY_GAUSSIAN, "--model_name", "SimCLR", "--barlow_lambda", "0.01",
                 "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mimax: error: --barlow_lambda: SimCLR does not read it (an option of BarlowTwins; see "
                   "`mimax methods`)"]
    assert not out.exists()


def test_options_read_under_the_chosen_values_are_accepted():
    cfg = config_from_args(["--model_name", "SDMI", "--target_update", "ema", "--ema_momentum", "0.5",
                            "--predictor", "--predictor_dim", "8"])
    method = build_method(cfg, (cfg.gm_dim,))
    assert (method.options.ema_momentum, method.options.predictor_dim, method.rule) == (0.5, 8, "ema")


def test_reference_flag_not_read_warns_and_is_recorded_as_unused(tmp_path):
    assert "temperature" in REFERENCE_FLAGS
    out = tmp_path / "byol"
    proc = run_main([*TINY_GAUSSIAN, "--model_name", "BYOL", "--temperature", "0.3", "--epochs", "1",
                     "--mi_interval", "0", "--output_dir", str(out)])
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("mimax: warning")]
    assert warnings == ["mimax: warning: --temperature is not read by BYOL (accepted for the reference command "
                        "line; listed as unused in config.json)"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["unused"] == ["temperature"] and saved["temperature"] == 0.3


def test_methods_that_read_a_reference_flag_take_it_without_warning():
    cfg = config_from_args(["--model_name", "SimCLR", "--temperature", "0.3"])
    assert cfg.unused == [] and build_method(cfg, (cfg.gm_dim,)).options.temperature == 0.3


def test_other_methods_options_stay_unset_in_the_resolved_config():
    cfg = config_from_args(["--model_name", "SimCLR"])
    others = METHOD_OPTION_FIELDS - set(METHODS["SimCLR"].Options.names())
    assert all(getattr(cfg, name) is None for name in others)
    assert cfg.temperature == 0.2  # SimCLR's preset on the Gaussian mixture


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_methods_options_validate_their_values(method):
    cls = METHODS[method]
    numeric = [f.name for f in dataclasses.fields(cls.Options) if f.type in ("float", "int")]
    for name in numeric:
        with pytest.raises(ConfigError) as err:
            config_from_args(["--model_name", method, f"--{name}", "-1"])
        assert err.value.flag == f"--{name}"
