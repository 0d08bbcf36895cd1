"""tsdiff classify: readers, the dual-patch model, losses, SWA, pretraining, splits, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_toml
from tsdiff_cli.data.labelled import read_long, read_ts, resolve_labelled, stratified_split
from tsdiff_cli.errors import UserError
from tsdiff_cli.models.dualpatch import DualPatchConfig, DualPatchTransformer, HeadConfig
from tsdiff_cli.settings import load_settings
from tsdiff_cli.training.classify import task_losses

TINY = """
[classify]
train = "{train}"
{extra}
d_model = 16
heads = 2
layers = 1
ff = 32
patch_len = 4
patch_stride = 2
epochs = {epochs}
batch_size = 16
"""


def _config(**kw) -> DualPatchConfig:
    base = dict(channels=2, length=10, patch_len=4, patch_stride=2, d_model=16, heads=2, layers=1, ff=32, dropout=0.0,
                streams="joint", categories=[], tasks=[HeadConfig("y", "class", 3)])
    return DualPatchConfig(**{**base, **kw})


def _ts(path, lines, header="@problemName t\n@classLabel true a b\n@data\n"):
    path.write_text(header + "\n".join(lines) + "\n")
    return path


def _long_table(path, series=24, steps=12, seed=0, per_step=False):
    """Two channels, a categorical 'state', a per-series class 'kind' (which channel 0's level
    tells), a numeric 'age'; optionally a per-step class 'phase'."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(series):
        kind = i % 2
        for t in range(steps):
            rows.append({"id": f"s{i}", "t": t, "a": kind * 2.0 + rng.normal(0, 0.3), "b": rng.normal(),
                         "state": "on" if (t + i) % 3 else "off", "kind": "up" if kind else "down", "age": 30.0 + i,
                         **({"phase": "early" if t < steps // 2 else "late"} if per_step else {})})
    pd.DataFrame(rows).sample(frac=1.0, random_state=seed).to_csv(path, index=False)  # rows out of order
    return path


# --- readers -------------------------------------------------------------------------------------


def test_ts_reader_pads_short_cases_with_missing_values(tmp_path):
    path = _ts(tmp_path / "v.ts", ["1,2,3:4,5,6:a", "7,?:8,9:b", "1,2,3,4:5,6,7,8:a"])
    data = read_ts(path)
    assert data.x.shape == (3, 2, 4)
    assert data.lengths.tolist() == [3, 2, 4]
    assert np.isnan(data.x[0, :, 3]).all() and np.isnan(data.x[1, :, 2:]).all()  # padding is missing, not 0
    assert np.isnan(data.x[1, 0, 1]) and data.x[1, 1, 1] == 9  # '?' is missing
    assert data.labels["label"].tolist() == [0, 1, 0] and data.specs[0].classes == ["a", "b"]


def test_ts_reader_reads_a_regression_target_and_the_shipped_sets():
    covid = read_ts(resolve_labelled("Covid3Month_TRAIN"))
    assert covid.specs[0].kind == "numeric" and covid.x.shape == (140, 1, 84)
    assert np.isfinite(covid.labels["label"]).all()
    vowels = read_ts(resolve_labelled("JapaneseVowels_TRAIN"))
    assert vowels.x.shape[:2] == (270, 12) and vowels.lengths.min() < vowels.lengths.max() == vowels.x.shape[2]


def test_ts_reader_rejects_inconsistent_dimensions(tmp_path):
    path = _ts(tmp_path / "bad.ts", ["1,2:3,4:a", "1,2:b"])
    with pytest.raises(UserError, match="line 5 has 1 dimensions where the first case has 2"):
        read_ts(path)


def test_long_table_orders_rows_and_reads_labels_per_series_and_per_step(tmp_path):
    path = _long_table(tmp_path / "long.csv", series=4, steps=6, per_step=True)
    data = read_long(path, "id", "t", ["a", "b"], ["state"], {"kind": "class", "age": "numeric", "phase": "class"}, ["phase"])
    assert data.x.shape == (4, 2, 6) and data.cat.shape == (4, 1, 6)
    frame = pd.read_csv(path).sort_values(["id", "t"])
    assert np.allclose(data.x[0, 0], frame[frame.id == "s0"].a.to_numpy())
    assert data.labels["phase"].shape == (4, 6) and data.labels["kind"].shape == (4,)
    assert data.spec("phase").classes == ["early", "late"]
    assert data.labels["phase"][0].tolist() == [0, 0, 0, 1, 1, 1]
    assert data.vocab["state"] == ["off", "on"] and set(np.unique(data.cat)) == {1, 2}


def test_long_table_errors_name_the_column(tmp_path):
    path = _long_table(tmp_path / "long.csv", series=4, steps=3)
    with pytest.raises(UserError, match="has no column 'species'"):
        read_long(path, "id", "t", None, [], {"species": "class"}, [])
    frame = pd.read_csv(path)
    frame.loc[frame.index[0], "age"] = 99.0
    frame.to_csv(tmp_path / "varies.csv", index=False)
    with pytest.raises(UserError, match="label 'age' changes within series"):
        read_long(tmp_path / "varies.csv", "id", "t", ["a", "b"], [], {"age": "numeric"}, [])


def test_label_fraction_split_is_stratified_and_seeded():
    codes = np.repeat(np.arange(4), [50, 30, 15, 5])
    _, a = stratified_split(codes, len(codes), 0.1, seed=3)
    _, b = stratified_split(codes, len(codes), 0.1, seed=3)
    _, c = stratified_split(codes, len(codes), 0.1, seed=4)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert np.bincount(codes[a]).tolist() == [5, 3, 2, 1]  # every class, in proportion (at least one each)


# --- the model -------------------------------------------------------------------------------------


def test_missing_values_become_zero_values_and_a_mask_channel():
    model = DualPatchTransformer(_config()).eval()
    seen = {}
    model.temporal.register_forward_hook(lambda m, inp, out: seen.update(patches=inp[0]))
    model.variate.register_forward_hook(lambda m, inp, out: seen.update(variates=inp[0]))
    x = torch.randn(1, 2, 10)
    x[0, 0, 3] = float("nan")
    out = model(x)["y"]
    assert torch.isfinite(out).all()
    v = seen["variates"][0]  # (C, 2·Tp): the channel's values, then its missing mask
    padded = _config().padded
    assert v.shape == (2, 2 * padded)
    assert v[0, 3] == 0 and v[0, padded + 3] == 1 and v[1, padded + 3] == 0
    assert torch.equal(v[0, :3], x[0, 0, :3]) and (v[:, padded + 10:] == 1).all()  # padding after the series: missing
    p = seen["patches"][0, 0].reshape(4, 4)  # first patch: rows = value ch0, ch1, mask ch0, ch1
    assert p[0, 3] == 0 and p[2, 3] == 1 and p[2, :3].sum() == 0


def test_a_padded_series_reads_as_the_short_one_with_a_gap_at_the_end():
    torch.manual_seed(0)
    model = DualPatchTransformer(_config(length=12)).eval()
    x = torch.randn(1, 2, 12)
    x[..., 9:] = float("nan")
    short = x[..., :9]
    with torch.no_grad():
        assert torch.allclose(model(x)["y"], model(short)["y"], atol=1e-6)  # the model pads short inputs as missing


def test_categorical_embeddings_change_the_output():
    torch.manual_seed(0)
    model = DualPatchTransformer(_config(categories=[3])).eval()
    x = torch.randn(1, 2, 10)
    a, b = torch.ones(1, 1, 10, dtype=torch.long), torch.full((1, 1, 10), 2, dtype=torch.long)
    with torch.no_grad():
        assert not torch.allclose(model(x, a)["y"], model(x, b)["y"])


@pytest.mark.parametrize("streams", ["joint", "separate"])
def test_per_step_heads_give_one_output_per_step(streams):
    cfg = _config(streams=streams, tasks=[HeadConfig("s", "class", 3, per_step=True), HeadConfig("v", "numeric", 1)])
    out = DualPatchTransformer(cfg)(torch.randn(5, 2, 10))
    assert out["s"].shape == (5, 3, 10) and out["v"].shape == (5,)


def test_multi_task_loss_leaves_out_missing_targets():
    heads = [HeadConfig("c", "class", 3), HeadConfig("n", "numeric", 1)]
    logits = torch.randn(4, 3, requires_grad=True)
    values = torch.randn(4, requires_grad=True)
    targets = {"c": torch.tensor([0, -1, 2, -1]), "n": torch.tensor([0.5, float("nan"), float("nan"), -1.0])}
    losses = task_losses({"c": logits, "n": values}, targets, heads, {}, 0.0, "mse")
    assert torch.isclose(losses["c"], torch.nn.functional.cross_entropy(logits[[0, 2]], targets["c"][[0, 2]]))
    assert torch.isclose(losses["n"], ((values[[0, 3]] - targets["n"][[0, 3]]) ** 2).mean())
    none = task_losses({"c": logits, "n": values}, {"c": torch.full((4,), -1), "n": torch.full((4,), float("nan"))},
                       heads, {}, 0.0, "mse")
    total = none["c"] + none["n"]
    total.backward()
    assert total.item() == 0 and torch.isfinite(logits.grad).all()


# --- training through the shared loop --------------------------------------------------------------


def _train(tmp_path, epochs=3, extra="", train=None):
    from tsdiff_cli.jobs.classify import train_classifier

    train = train or _long_table(tmp_path / "long.csv")
    text = TINY.format(train=train, epochs=epochs, extra=extra + f'\nruns_dir = "{tmp_path / "runs"}"\n'
                       'time_column = "t"\nvalue_columns = ["a", "b"]\n')
    settings = load_settings(write_toml(tmp_path / "c.toml", text))
    return train_classifier(settings, "c")


def test_swa_saves_the_average_not_the_last_weights(tmp_path):
    result = _train(tmp_path, epochs=3, extra='labels = {kind = "class"}\nswa = true\nswa_extra_ratio = 1.0\n')
    saved = load_file(str(result.run / "model.safetensors"))
    ckpt = max((result.run / "checkpoints").glob("ckpt-*.safetensors"))
    state = load_file(str(ckpt))
    last = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    average = {k[len("swa.module."):]: v for k, v in state.items() if k.startswith("swa.module.")}
    assert int(state["swa.n_averaged"]) == 3  # one average per SWA epoch (3 = ratio 1.0 × 3 epochs)
    assert any(not torch.equal(saved[k], last[k]) for k in saved)
    assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert set(result.report["val"]) == {"swa", "base"}  # the report compares the two


def test_pretrained_encoder_is_loaded_and_kept_while_heads_train(tmp_path):
    from tsdiff_cli.jobs.classify import pretrain_classifier, train_classifier

    train = _long_table(tmp_path / "long.csv")
    base = TINY.format(train=train, epochs=2, extra=f'runs_dir = "{tmp_path / "runs"}"\ntime_column = "t"\n'
                       'value_columns = ["a", "b"]\nlabels = {kind = "class"}\n')
    pre = pretrain_classifier(load_settings(write_toml(tmp_path / "p.toml", base + "pretrain_epochs = 2\n")), "p")
    encoder = load_file(str(pre.run / "model.safetensors"))
    assert "reconstruct.weight" in encoder and not any(k.startswith("heads.") for k in encoder)
    # two head-only epochs (2 steps each), then stop: the encoder must be the pretrained one
    settings = load_settings(write_toml(tmp_path / "f.toml", base + f'init = "{pre.run}"\nhead_epochs = 2\nmax_steps = 4\n'))
    tuned = load_file(str(train_classifier(settings, "f").run / "model.safetensors"))
    assert all(torch.equal(tuned[k], v) for k, v in encoder.items())
    assert any(k.startswith("heads.") for k in tuned)


def _tiny_text(tmp_path, extra, epochs=3):
    (tmp_path).mkdir(exist_ok=True)
    return TINY.format(train=_long_table(tmp_path / "long.csv"), epochs=epochs,
                       extra=extra + f'runs_dir = "{tmp_path / "runs"}"\ntime_column = "t"\nvalue_columns = ["a", "b"]\n')


@pytest.mark.parametrize("stop", [5, 9])  # in the base schedule; in the second SWA epoch
def test_training_resumed_after_a_stop_gives_the_same_weights(tmp_path, stop):
    from tsdiff_cli.jobs.classify import train_classifier

    extra = 'labels = {kind = "class"}\nswa = true\nswa_extra_ratio = 1.0\n'  # 20 training series: 2 steps an epoch
    text = _tiny_text(tmp_path / "a", extra)
    straight = train_classifier(load_settings(write_toml(tmp_path / "a" / "c.toml", text)), "c")
    text = _tiny_text(tmp_path / "b", extra)
    config = write_toml(tmp_path / "b" / "c.toml", text)
    stopped = train_classifier(load_settings(config, {"classify": {"max_steps": stop}}), "c")
    resumed = train_classifier(load_settings(config), "c", resume=stopped.run)
    a = load_file(str(straight.run / "model.safetensors"))
    b = load_file(str(resumed.run / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_run_stopped_before_anything_was_averaged_keeps_the_best_base_epoch(tmp_path):
    from tsdiff_cli.jobs.classify import train_classifier

    text = _tiny_text(tmp_path, 'labels = {kind = "class"}\nswa = true\n')
    result = train_classifier(load_settings(write_toml(tmp_path / "c.toml", text), {"classify": {"max_steps": 7}}), "c")
    model, base = load_file(str(result.run / "model.safetensors")), load_file(str(result.run / "base.safetensors"))
    assert all(torch.equal(model[k], base[k]) for k in model)  # 6 base steps + 1 SWA step: no average yet
    assert set(result.report["val"]) == {"base"}


def test_balanced_sampler_writes_its_weights(tmp_path):
    train = tmp_path / "imb.csv"
    frame = pd.read_csv(_long_table(tmp_path / "long.csv", series=24))
    frame = frame[~frame.id.isin([f"s{i}" for i in range(1, 20, 2)])]  # drop most 'up' series: 2 up, 12 down
    frame.to_csv(train, index=False)
    result = _train(tmp_path, epochs=2, extra='labels = {kind = "class"}\nbalance = ["kind"]\nval_fraction = 0.25\n',
                    train=train)
    weights = pd.read_csv(result.run / "sampling_weights.csv")
    per_class = weights.groupby("kind").probability.sum()
    assert np.allclose(per_class.to_numpy(), 0.5)  # each class drawn half the time, whatever its count


def test_the_balanced_sampler_draws_by_its_weights():
    from tsdiff_cli.training.classify import ClassifyTask

    task = ClassifyTask.__new__(ClassifyTask)  # only the draw is exercised
    task.sample_weights = torch.tensor([1.0] * 8 + [4.0] * 2, dtype=torch.float64)  # 8 of one class, 2 of the other
    task.gen = torch.Generator().manual_seed(0)
    drawn = torch.cat([task._draw(torch.arange(10)) for _ in range(400)])
    assert abs((drawn >= 8).float().mean().item() - 0.5) < 0.03


# --- the CLI ---------------------------------------------------------------------------------------


def test_cli_train_evaluate_predict_with_per_step_labels(cli, workdir):
    train = _long_table(workdir / "train.csv", per_step=True)
    test = _long_table(workdir / "test.csv", seed=1, per_step=True)
    frame = pd.read_csv(test)
    frame.loc[frame.index[:5], "state"] = "standby"  # a category never seen in training
    frame.to_csv(test, index=False)
    text = TINY.format(train=train, epochs=2, extra='time_column = "t"\nvalue_columns = ["a", "b"]\n'
                       'categorical_columns = ["state"]\nlabels = {kind = "class", age = "numeric", phase = "class"}\n'
                       'step_labels = ["phase"]\n')
    write_toml(workdir / "c.toml", text)
    r = cli("classify", "train", "c.toml", "-q")
    assert r.exit_code == 0, r.output
    r = cli("classify", "evaluate", "runs/latest", "--input", test, "--no-plot")
    assert r.exit_code == 0, r.output
    assert "5 categorical values were never seen" in r.output
    report = json.loads((workdir / "runs" / "latest" / "report.json").read_text())
    scores = report["evaluations"][str(test)]["scores"]
    assert set(scores) == {"kind", "age", "phase"} and scores["phase"]["labelled"] == 24 * 12
    r = cli("classify", "predict", "runs/latest", "--input", test, "-o", "pred.csv")
    assert r.exit_code == 0, r.output
    pred = pd.read_csv(workdir / "pred.csv")
    assert len(pred) == 24 * 12 and {"id", "step", "kind", "p(kind=up)", "age", "phase", "p(phase=late)"} <= set(pred.columns)
    pd.read_csv(test).drop(columns=["kind", "age", "phase"]).to_csv(workdir / "unlabelled.csv", index=False)
    r = cli("classify", "predict", "runs/latest", "--input", "unlabelled.csv", "-o", "pred2.csv")
    assert r.exit_code == 0, r.output
    assert pd.read_csv(workdir / "pred2.csv")[["kind", "phase"]].equals(pred[["kind", "phase"]])


def test_cli_bad_inputs_exit_2_with_one_line(cli, workdir, tmp_path):
    train = _long_table(workdir / "train.csv")
    write_toml(workdir / "c.toml", TINY.format(train=train, epochs=1, extra='time_column = "t"\nvalue_columns = ["a", "b"]\n'
                                                'labels = {kind = "class"}\n'))
    r = cli("classify", "train", "c.toml", "-q")
    assert r.exit_code == 0, r.output
    frame = pd.read_csv(train)
    frame["kind"] = np.where(frame.kind == "up", "sideways", frame.kind)
    frame.to_csv(workdir / "new_class.csv", index=False)
    frame.rename(columns={"b": "c"}).to_csv(workdir / "other_channels.csv", index=False)
    for args, message in ((("classify", "evaluate", "runs/latest", "--input", "new_class.csv"), "never saw: sideways"),
                          (("classify", "predict", "runs/latest", "--input", "other_channels.csv", "-o", "p.csv"), "no column 'b'")):
        r = cli(*args)
        assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (workdir / "p.csv").exists()
    write_toml(workdir / "bad.toml", TINY.format(train=train, epochs=1, extra='labels = {species = "class"}\n'))
    r = cli("classify", "train", "bad.toml")
    assert r.exit_code == 2 and "has no column 'species'" in r.stderr
    frame = pd.read_csv(train)
    frame["kind"] = "up"
    frame.to_csv(workdir / "one.csv", index=False)
    write_toml(workdir / "one.toml", TINY.format(train="one.csv", epochs=1, extra='labels = {kind = "class"}\nvalue_columns = ["a"]\n'))
    r = cli("classify", "train", "one.toml")
    assert r.exit_code == 2 and "label 'kind' has 1 class" in r.stderr
    (workdir / "nodims.ts").write_text("@problemName x\n@classLabel true a b\n@data\na\n")
    write_toml(workdir / "nodims.toml", TINY.format(train="nodims.ts", epochs=1, extra=""))
    r = cli("classify", "train", "nodims.toml")
    assert r.exit_code == 2 and "line 4 has no dimensions" in r.stderr


def test_linear_fill_interpolates_the_value_channel_and_keeps_the_mask():
    model = DualPatchTransformer(_config(fill="linear", instance_norm=True)).eval()
    seen = {}
    model.variate.register_forward_hook(lambda m, inp, out: seen.update(variates=inp[0]))
    x = torch.tensor([[[0.0, float("nan"), 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]] * 2])
    model(x)
    v = seen["variates"][0, 0]
    padded = _config().padded
    assert torch.isclose(v[1], (v[0] + v[2]) / 2) and v[padded + 1] == 1 and v[padded + 2] == 0
    assert abs(v[:10][torch.arange(10) != 1].mean().item()) < 1e-5  # instance-normalised on observed values
