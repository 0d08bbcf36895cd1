"""Settings resolve defaults < TOML < environment < CLI, and every mistake names its origin."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tsdiff_cli.errors import UserError
from tsdiff_cli.settings import load_settings, to_toml
from conftest import REPO, write_toml


def test_precedence_cli_over_env_over_toml_over_defaults(tmp_path):
    cfg = write_toml(tmp_path / "s.toml", "[data]\nseq_len = 30\nseed = 3\nmissing_rate = 0.2\n")
    env = {"TSDIFF_DATA__SEED": "7", "TSDIFF_DATA__MISSING_RATE": "0.4"}
    s = load_settings(cfg, {"data": {"missing_rate": 0.6, "seq_len": None}}, environ=env)
    assert s.data.seq_len == 30  # TOML over default (24); a None option is "not given"
    assert s.data.seed == 7  # environment over TOML
    assert s.data.missing_rate == 0.6  # CLI over environment
    assert s.data.scaler == "minmax"  # default


def test_environment_is_case_insensitive_and_decodes_lists(tmp_path):
    s = load_settings(None, environ={"tsdiff_data__columns": '["Open", "Close"]', "TSDIFF_DATA__REVERSE_ROWS": "true"})
    assert s.data.columns == ["Open", "Close"] and s.data.reverse_rows is True


def test_output_defaults_to_source_name():
    assert load_settings(None, environ={"TSDIFF_DATA__SOURCE": "/x/my_series.csv"}).data.output == Path("data/my_series.h5")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[data]\nseq_lenn = 3\n", ["bad.toml", "seq_lenn", "did you mean seq_len"]),
        ("[dat]\nseq_len = 3\n", ["bad.toml", "[dat]", "did you mean [data]"]),
        ("seq_len = 3\n", ["bad.toml", "seq_len", "put it under [data]"]),
        ('[data]\nseq_len = "long"\n', ["bad.toml", "seq_len", '"long"', "not a whole number"]),
        # a value of the wrong type is refused, not converted ("24" would be read as 24, true as 1)
        ('[data]\nseq_len = "24"\n', ["bad.toml", "[data] seq_len", '"24"', "without quotes"]),
        ("[data]\nseq_len = true\n", ["bad.toml", "[data] seq_len = true", "not a whole number"]),
        ('[data]\nmissing_rate = "0.2"\n', ["bad.toml", "missing_rate", "not a number"]),
        ('[data]\nreverse_rows = "yes"\n', ["bad.toml", "reverse_rows", "true or false"]),
        ("[train]\nmax_minutes = inf\n", ["bad.toml", "max_minutes", "finite"]),  # not "no limit" (that is 0)
        ('[data]\nscaler = "robust"\n', ["bad.toml", "scaler", "'robust'"]),
        ("[data]\nmissing_rate = 1.0\n", ["bad.toml", "missing_rate", "less than 1"]),
        ("[data]\nval_fraction = 0.5\ntest_fraction = 0.5\n", ["bad.toml", "no training windows"]),
        ('[data]\nfreq = "1h"\n', ["bad.toml", "time_column"]),
        ("[data\nseq_len = 3\n", ["bad.toml", "not valid TOML"]),
    ],
)
def test_toml_errors_name_the_file_and_key(tmp_path, text, expected):
    cfg = write_toml(tmp_path / "bad.toml", text)
    with pytest.raises(UserError) as info:
        load_settings(cfg, environ={})
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_environment_errors_name_the_variable():
    with pytest.raises(UserError, match="TSDIFF_DATA__SEQ_LEN.*seq_len"):
        load_settings(None, environ={"TSDIFF_DATA__SEQ_LEN": "twelve"})
    with pytest.raises(UserError, match="TSDIFF_DATA__NOPE.*unknown setting"):
        load_settings(None, environ={"TSDIFF_DATA__NOPE": "1"})
    with pytest.raises(UserError, match="TSDIFF_DTA__SEED.*no settings section"):
        load_settings(None, environ={"TSDIFF_DTA__SEED": "1"})


def test_cli_errors_name_the_option():
    with pytest.raises(UserError, match="option --missing-rate"):
        load_settings(None, {"data": {"missing_rate": -0.1}}, environ={})


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="no such settings file"):
        load_settings(tmp_path / "absent.toml", environ={})


@pytest.mark.parametrize("preset", sorted(str(p.relative_to(REPO / "config")) for p in (REPO / "config").rglob("*.toml")))
def test_presets_load_and_show_round_trips(cli, preset, tmp_path):
    path = REPO / "config" / preset
    result = cli("config", "show", path, env={"TSDIFF_DATA__SEED": "11"})
    assert result.exit_code == 0, result.output
    shown = result.stdout
    assert tomllib.loads(shown)["data"]["seed"] == 11
    again = write_toml(tmp_path / "shown.toml", shown)
    resolved = load_settings(again, environ={})
    assert resolved == load_settings(path, environ={"TSDIFF_DATA__SEED": "11"})
    assert to_toml(resolved) == shown


def test_config_show_error_exits_2(cli, tmp_path):
    cfg = write_toml(tmp_path / "bad.toml", "[data]\nbatch = 3\n")
    result = cli("config", "show", cfg)
    assert result.exit_code == 2
    assert "bad.toml" in result.stderr and "batch" in result.stderr
