"""Every mistake a user can make with preprocess: exit 2, one clear line, nothing left behind."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from tsdiff_cli.data import store
from tsdiff_cli.data.preprocess import preprocess
from tsdiff_cli.errors import UserError
from tsdiff_cli.settings import DataSettings
from conftest import write_toml


def _csv(path, frame):
    frame.to_csv(path, index=False)
    return path.name


def _table(n=60):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})


def _case(name, workdir):
    """(toml text, extra env, words the message must contain) for each error case."""
    if name == "missing input file":
        return '[data]\nsource = "absent.csv"\n', {}, ["absent.csv", "no such file"]
    if name == "empty file":
        (workdir / "empty.csv").write_text("")
        return '[data]\nsource = "empty.csv"\n', {}, ["empty.csv", "empty"]
    if name == "header only":
        (workdir / "head.csv").write_text("a,b\n")
        return '[data]\nsource = "head.csv"\n', {}, ["head.csv", "no data rows"]
    if name == "non-numeric column":
        frame = _table()
        frame["site"] = "north"
        return f'[data]\nsource = "{_csv(workdir / "t.csv", frame)}"\n', {}, ["t.csv", "'site'", "not numeric", "columns"]
    if name == "all-NaN column":
        frame = _table()
        frame["c"] = np.nan
        return f'[data]\nsource = "{_csv(workdir / "t.csv", frame)}"\n', {}, ["t.csv", "'c'", "all NaN", "columns"]
    if name == "constant column":
        frame = _table()
        frame["c"] = 3.5
        return f'[data]\nsource = "{_csv(workdir / "t.csv", frame)}"\n', {}, ["t.csv", "'c'", "constant", "columns"]
    if name == "seq_len longer than the data":
        return f'[data]\nsource = "{_csv(workdir / "t.csv", _table(20))}"\nseq_len = 24\n', {}, ["t.csv", "seq_len 24", "20 time steps"]
    if name == "missing_rate above range":
        return '[data]\nmissing_rate = 1.0\n', {}, ["s.toml", "missing_rate"]
    if name == "missing_rate below range (env)":
        return "[data]\n", {"TSDIFF_DATA__MISSING_RATE": "-0.1"}, ["TSDIFF_DATA__MISSING_RATE", "missing_rate"]
    if name == "unknown setting":
        return "[data]\nmissing = 0.3\n", {}, ["s.toml", "missing"]
    if name == "wrong type":
        return '[data]\nseq_len = "24h"\n', {}, ["s.toml", "seq_len", "not a whole number"]
    if name == "unwritable output path":
        (workdir / "blocker").write_text("a file, not a folder")
        return '[data]\noutput = "blocker/out.h5"\n', {}, ["blocker/out.h5", "cannot write", "is a file"]
    if name == "output is a directory":
        (workdir / "out.h5").mkdir()
        return '[data]\noutput = "out.h5"\n', {}, ["out.h5", "directory"]
    if name == "missing time column":
        return f'[data]\nsource = "{_csv(workdir / "t.csv", _table())}"\ntime_column = "when"\n', {}, ["t.csv", "'when'"]
    if name == "bad timestamp":
        frame = _table(30)
        frame.insert(0, "when", pd.date_range("2024-01-01", periods=30, freq="h").astype(str))
        frame.loc[7, "when"] = "soon"
        return f'[data]\nsource = "{_csv(workdir / "t.csv", frame)}"\ntime_column = "when"\nseq_len = 5\n', {}, ["t.csv", "'soon'", "line 9"]
    raise AssertionError(name)


CASES = [
    "missing input file", "empty file", "header only", "non-numeric column", "all-NaN column",
    "constant column", "seq_len longer than the data", "missing_rate above range",
    "missing_rate below range (env)", "unknown setting", "wrong type", "unwritable output path",
    "output is a directory", "missing time column", "bad timestamp",
]


@pytest.mark.parametrize("name", CASES)
def test_error_exits_2_with_one_line_and_leaves_nothing(cli, workdir, name):
    text, env, words = _case(name, workdir)
    if "output" not in text:
        text += 'output = "result/out.h5"\n'
    cfg = write_toml(workdir / "s.toml", text)
    before = set(os.listdir(workdir))
    result = cli("preprocess", cfg, env=env)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tsdiff: error: ") and "Traceback" not in result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "; " in lines[0]  # what is wrong; what to do
    assert not (workdir / "result" / "out.h5").exists()
    assert set(os.listdir(workdir)) == before  # no file, no temp file, no empty folder


def test_failure_while_writing_keeps_the_old_file_and_no_temp(workdir, monkeypatch):
    cfg = DataSettings(source="stock", output="d.h5")
    preprocess(cfg)
    old = (workdir / "d.h5").read_bytes()

    def broken(path, ds):
        import h5py

        with store.atomic_output(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("observed", data=ds.observed)
            raise KeyboardInterrupt  # Ctrl-C half-way through the write

    monkeypatch.setattr("tsdiff_cli.data.preprocess.write_dataset", broken)
    with pytest.raises(KeyboardInterrupt):
        preprocess(cfg.model_copy(update={"seed": 9}))
    assert (workdir / "d.h5").read_bytes() == old
    assert sorted(p.name for p in workdir.iterdir()) == ["d.h5"]


def test_user_error_message_has_where_problem_fix():
    err = UserError("x.csv", "is empty", "add rows")
    assert str(err) == "x.csv: is empty; add rows"
