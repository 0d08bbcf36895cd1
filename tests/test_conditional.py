"""Conditional generation: the condition encoder, classifier-free dropout and guidance."""

from __future__ import annotations

import pytest
import torch

from tsdiff_cli.models.condition import (ConditionConfig, ConditionEncoder, ConditionalNet, Conditions, Guided,
                                         drop_conditions)
from tsdiff_cli.models.edm import Denoiser
from tsdiff_cli.models.unet import UNet, UNetConfig


def _denoiser(seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    unet = UNet(UNetConfig(8, 3, 32, [1, 2], 1, [4], 0.0, context_dim=16))
    enc = ConditionEncoder(ConditionConfig(dim=unet.emb_dim, categories=[4], numerics=1, vocab=10, text_dim=16,
                                           text_layers=1))
    net = ConditionalNet(unet, enc)
    with torch.no_grad():  # zero-initialised output layers would hide every condition at step 0
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return Denoiser(net).eval()


def _conditions(n: int = 4) -> Conditions:
    return Conditions(torch.arange(n)[:, None] % 4, torch.linspace(-1, 1, n)[:, None],
                      torch.tensor([[2, 3, 0], [4, 0, 0], [5, 6, 7], [0, 0, 0]])[:n])


def test_null_condition_dropout_rate_matches_cfg_dropout():
    n = 20000
    c = Conditions(torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, 1), torch.full((n, 3), 2))
    joint = drop_conditions(c, 0.1, torch.Generator().manual_seed(0))
    dropped = joint.cats[:, 0] == -1
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.equal(dropped, joint.nums[:, 0].isnan()) and torch.equal(dropped, (joint.tokens == 0).all(1))
    apart = drop_conditions(c, 0.1, torch.Generator().manual_seed(0), joint=False)
    a, b = apart.cats[:, 0] == -1, apart.nums[:, 0].isnan()
    assert abs(a.float().mean().item() - 0.1) < 0.01 and abs(b.float().mean().item() - 0.1) < 0.01
    assert abs((a & b).float().mean().item() - 0.01) < 0.005  # independent draws


def test_guidance_one_is_the_conditional_denoiser_and_zero_the_unconditional():
    d, c = _denoiser(), _conditions()
    x, s = torch.randn(4, 3, 8, 8), torch.full((4,), 0.7)
    with torch.no_grad():
        cond, uncond = d(x, s, c), d(x, s, c.null())
        assert torch.allclose(Guided(d, c, 1.0)(x, s), cond)
        assert torch.allclose(Guided(d, c, 0.0)(x, s), uncond)
        assert torch.allclose(Guided(d, c, 2.5)(x, s), uncond + 2.5 * (cond - uncond), atol=1e-5)
    with pytest.raises(ValueError):
        Guided(d, c, -1.0)


@pytest.mark.parametrize("part", ["cats", "nums", "tokens"])
def test_each_condition_changes_the_denoiser(part):
    d, c = _denoiser(), _conditions()
    x, s = torch.randn(4, 3, 8, 8), torch.full((4,), 0.7)
    other = Conditions(c.cats, c.nums, c.tokens)
    setattr(other, part, {"cats": (c.cats + 1) % 4, "nums": c.nums + 1.5, "tokens": (c.tokens + 1) % 10}[part])
    with torch.no_grad():
        assert not torch.allclose(d(x, s, c), d(x, s, other), atol=1e-4)


def test_a_null_caption_is_a_learnt_token_not_nan():
    enc = ConditionEncoder(ConditionConfig(dim=32, vocab=10, text_dim=16, text_layers=2))
    emb, context, pad = enc(Conditions(tokens=torch.zeros(2, 5, dtype=torch.long)))
    assert torch.isfinite(emb).all() and torch.isfinite(context).all() and not pad[:, 0].any()


def test_condition_spec_encodes_and_refuses_unknown_categories():
    import numpy as np

    from tsdiff_cli.data.conditions import encode, fill_template, fit_spec
    from tsdiff_cli.errors import UserError

    cats = {"activity": np.array(["Running", "Walking", "Running", None], dtype=object)}
    nums = {"age": np.array([30.0, 50.0, np.nan, 70.0])}
    captions = fill_template("a {activity} recording of a {age} year old", {**cats, **nums})
    assert captions[0] == "a Running recording of a 30 year old"
    spec = fit_spec(cats, nums, captions)
    assert spec.categorical["activity"] == ["Running", "Walking"] and spec.numeric["age"] == (50.0, np.std([30, 50, 70]), 30.0, 70.0)
    out = encode(spec, cats, nums, captions, "data")
    assert out["cats"][:, 0].tolist() == [0, 1, 0, -1] and np.isnan(out["nums"][2, 0])
    assert (out["tokens"][0][:8] > 1).all()  # every word of the first caption is in the vocabulary
    with pytest.raises(UserError, match="Swimming' was never seen in training; use one of: Running, Walking"):
        encode(spec, {"activity": np.array(["Swimming"])}, {"age": np.array([40.0])}, None, "--condition")
    with pytest.raises(UserError, match=r"age = 99 is far outside the training range \[30, 70\]"):
        encode(spec, {"activity": np.array(["Running"])}, {"age": np.array([99.0])}, None, "--condition")
    assert encode(spec, {"activity": np.array(["Running"])}, {"age": np.array([80.0])}, None, "--condition")["nums"][0, 0] > 1
    loose = encode(spec, {"activity": np.array(["Swimming"])}, {"age": np.array([40.0])}, np.array(["a new words"]),
                   "data", strict=False)
    assert loose["cats"][0, 0] == -1 and 1 in loose["tokens"][0]  # unknown word id


def test_labelled_windows_stay_inside_their_series():
    import numpy as np

    from tsdiff_cli.data.conditions import labelled_windows

    x = np.full((2, 1, 6), np.nan)
    x[0, 0, :6] = np.arange(6)
    x[1, 0, :3] = 100 + np.arange(3)  # a short series, padded
    windows, series = labelled_windows(x, np.array([6, 3]), seq_len=4, stride=1)
    assert series.tolist() == [0, 0, 0, 1]
    assert windows[2, :, 0].tolist() == [2, 3, 4, 5]
    assert windows[3, :3, 0].tolist() == [100, 101, 102] and np.isnan(windows[3, 3, 0])


def test_conditions_round_trip_through_the_dataset_file(tmp_path):
    import numpy as np

    from tsdiff_cli.data.conditions import encode, fit_spec
    from tsdiff_cli.data.scaling import fit_scaler
    from tsdiff_cli.data.store import WindowDataset, read_dataset, write_dataset

    x = np.random.default_rng(0).random((3, 4, 2)).astype(np.float32)
    cats = {"activity": np.array(["Running", "Walking", "Running"], dtype=object)}
    captions = np.array(["fast running", "slow walk", "running é"], dtype=object)
    spec = fit_spec(cats, {}, captions)
    enc = encode(spec, cats, {}, captions, "data")
    ds = WindowDataset(x, x, np.zeros(3, np.uint8), np.arange(3), ["a", "b"], fit_scaler("none", x.reshape(-1, 2)),
                       conditions={**enc, "captions": list(captions), "spec": spec.to_dict()})
    write_dataset(tmp_path / "d.h5", ds)
    back = read_dataset(tmp_path / "d.h5").conditions
    assert back["spec"] == spec.to_dict() and back["captions"] == list(captions)
    assert np.array_equal(back["cats"], enc["cats"]) and np.array_equal(back["tokens"], enc["tokens"])


# --- data, sampling and evaluation through the CLI ---------------------------------------------

from conftest import TINY  # noqa: E402  (the tiny network and sampler of every generator test)

COND_TINY = """
[data]
source = "{source}"
seq_len = 24
{data}
val_fraction = 0.2
test_fraction = 0.2
output = "data/cond.h5"
""" + TINY[TINY.index("[tst]"):].replace("{", "{{").replace("}", "}}") + """
[eval]
quick_repeats = 1
quick_disc_iterations = 10
"""


def _long_table(path, series: int = 12, steps: int = 40):
    """Labelled series in a long table: two shapes (class), an age (numeric), a caption."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for i in range(series):
        kind = "wave" if i % 2 else "ramp"
        t = np.arange(steps)
        base = np.sin(t / 3) if kind == "wave" else t / steps
        for j in t:
            rows.append({"id": f"s{i}", "t": j, "a": base[j] + 0.05 * rng.normal(), "b": -base[j] + 0.05 * rng.normal(),
                         "shape": kind, "age": 20 + 5 * i, "note": f"a {kind} from a {20 + 5 * i} year old"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _write(workdir, source, data):
    from conftest import write_toml

    return write_toml(workdir / "cond.toml", COND_TINY.format(source=source, data=data))


def test_labelled_series_become_windows_that_inherit_their_series_conditions(workdir):
    import numpy as np

    from tsdiff_cli.data.preprocess import preprocess
    from tsdiff_cli.data.store import SPLITS
    from tsdiff_cli.settings import load_settings

    _long_table(workdir / "long.csv")
    cfg = _write(workdir, "long.csv", 'id_column = "id"\ntime_column = "t"\ncolumns = ["a", "b"]\n'
                 'condition_columns = ["shape", "age"]\ncaption_column = "note"')
    ds = preprocess(load_settings(cfg).data).dataset
    assert ds.observed.shape == (12 * 17, 24, 2) and ds.columns == ["a", "b"]
    spec = ds.conditions["spec"]
    assert spec["categorical"] == {"shape": ["ramp", "wave"]} and list(spec["numeric"]) == ["age"]
    series = ds.index // 40
    for s in np.unique(series):  # one split and one set of conditions per series: no window leaks across
        rows = series == s
        assert len(np.unique(ds.split[rows])) == 1 and len(np.unique(ds.conditions["cats"][rows, 0])) == 1
        assert len({ds.conditions["captions"][i] for i in np.flatnonzero(rows)}) == 1
    ramp = ds.conditions["cats"][:, 0] == 0  # a ramp rises, a wave oscillates: the windows carry their label
    assert (np.diff(ds.target[ramp], axis=1)[..., 0] > -0.2).all()
    assert {SPLITS["train"], SPLITS["val"], SPLITS["test"]} == set(np.unique(ds.split))


def test_a_ts_file_label_is_the_one_condition(workdir):
    import numpy as np

    from tsdiff_cli.data.preprocess import preprocess
    from tsdiff_cli.errors import UserError
    from tsdiff_cli.settings import load_settings

    cfg = _write(workdir, "BasicMotions_TRAIN", 'condition_columns = ["activity"]\nmissing_rate = 0.3')
    ds = preprocess(load_settings(cfg).data).dataset
    assert ds.conditions["spec"]["categorical"]["activity"] == ["Badminton", "Running", "Standing", "Walking"]
    assert ds.observed.shape == (40 * 77, 24, 6) and 0.25 < np.isnan(ds.observed).mean() < 0.35
    assert not np.isnan(ds.target).any()
    cfg = _write(workdir, "BasicMotions_TRAIN", 'condition_columns = ["activity", "age"]')
    with pytest.raises(UserError, match="a .ts file has one label"):
        preprocess(load_settings(cfg).data)
    # @classLabel declares classes even when they are numbers (JapaneseVowels' speakers 1–9): categorical
    cfg = _write(workdir, "JapaneseVowels_TRAIN", 'condition_columns = ["speaker"]').read_text()
    (workdir / "jv.toml").write_text(cfg.replace("seq_len = 24", "seq_len = 12"))
    spec = preprocess(load_settings(workdir / "jv.toml").data).dataset.conditions["spec"]
    assert spec["categorical"] == {"speaker": [str(k) for k in range(1, 10)]} and spec["numeric"] == {}


def test_one_regular_series_takes_each_windows_first_row(workdir):
    import numpy as np
    import pandas as pd

    from tsdiff_cli.data.preprocess import preprocess
    from tsdiff_cli.settings import load_settings

    t = np.arange(300)
    pd.DataFrame({"x": np.sin(t / 5), "y": np.cos(t / 7), "hour": t % 24}).to_csv(workdir / "wide.csv", index=False)
    cfg = _write(workdir, "wide.csv", 'condition_columns = ["hour"]')
    ds = preprocess(load_settings(cfg).data).dataset
    assert ds.columns == ["x", "y"]  # the condition column is not a value column
    mean, std, lo, hi = ds.conditions["spec"]["numeric"]["hour"]
    hours = ds.conditions["nums"][:, 0] * std + mean
    assert np.allclose(hours, ds.index % 24, atol=1e-4)


def test_conditional_run_samples_obeys_and_refuses(cli, workdir):
    import numpy as np
    import pandas as pd

    _long_table(workdir / "long.csv")
    cfg = _write(workdir, "long.csv", 'id_column = "id"\ntime_column = "t"\ncolumns = ["a", "b"]\n'
                 'condition_columns = ["shape", "age"]')
    assert cli("train", cfg, "-q").exit_code == 0
    run = workdir / "runs" / "latest"
    ok = cli("sample", run, "-n", "6", "--condition", "shape=wave", "--condition", "age=40", "--guidance", "2",
             "-o", "wave.csv", "-q")
    assert ok.exit_code == 0, ok.output
    frame = pd.read_csv(workdir / "wave.csv")
    assert list(frame.columns) == ["window", "step", "shape", "age", "a", "b"] and set(frame["shape"]) == {"wave"}
    assert cli("sample", run, "-n", "6", "--condition", "shape=ramp", "--condition", "age=40", "--guidance", "2",
               "-o", "ramp.csv", "-q").exit_code == 0
    assert not np.allclose(frame[["a", "b"]], pd.read_csv(workdir / "ramp.csv")[["a", "b"]])  # same seed, other class
    for args, message in (
            (["--condition", "shape=circle"], "shape = 'circle' was never seen in training; use one of: ramp, wave"),
            (["--condition", "age=500"], "age = 500 is far outside the training range [20, 75]"),
            (["--caption", "a wave"], "--caption: this run was trained without captions"),
            (["--condition", "colour=red"], "'colour' is not a condition of this run; use one of: shape, age"),
            (["--guidance", "-1"], "guidance")):
        bad = cli("sample", run, "-n", "2", *args, "-o", "bad.csv")
        assert bad.exit_code == 2 and message in bad.output, (args, bad.output)
        assert not (workdir / "bad.csv").exists()
    pd.DataFrame({"shape": ["ramp", "wave", "wave"]}).to_csv(workdir / "want.csv", index=False)
    mixed = cli("sample", run, "--conditions", "want.csv", "-o", "mixed.parquet", "-q")
    assert mixed.exit_code == 0, mixed.output
    got = pd.read_parquet(workdir / "mixed.parquet")
    assert got.groupby("window")["shape"].first().tolist() == ["ramp", "wave", "wave"]


def test_conditional_evaluation_reports_per_class_fidelity_adherence_and_tstr(cli, workdir):
    import json

    _long_table(workdir / "long.csv")
    cfg = _write(workdir, "long.csv", 'id_column = "id"\ntime_column = "t"\ncolumns = ["a", "b"]\n'
                 'condition_columns = ["shape"]\ncaption_template = "a {shape}"')
    assert cli("train", cfg, "-q").exit_code == 0
    out = cli("evaluate", workdir / "runs" / "latest", "--quick")
    assert out.exit_code == 0, out.output
    assert "adherence" in out.output and "TSTR" in out.output
    c = json.loads((workdir / "runs" / "latest" / "report.json").read_text())["conditional"]
    assert set(c["per_class_discriminative"]) == {"ramp", "wave"} and 0 <= c["adherence"] <= 1
    assert c["trtr_accuracy"] > 0.9  # the judge tells a ramp from a wave on real windows
    caption = cli("sample", workdir / "runs" / "latest", "-n", "2", "--caption", "a wave", "-o", "c.csv", "-q")
    assert caption.exit_code == 0, caption.output

    # the guidance sweep: fidelity against adherence per weight, printed, in the report and plotted
    swept = cli("evaluate", "runs/latest", "--quick", "--guidance", "1", "--sweep", "0,1", "--plots", "p",
                "-o", "sweep.json")
    assert swept.exit_code == 0, swept.output
    assert "guidance sweep" in swept.output
    report = json.loads((workdir / "sweep.json").read_text())
    rows = report["guidance_sweep"]
    assert [r["guidance"] for r in rows] == [0, 1] and report["inputs"]["generated"]["sampler"]["guidance"] == 1
    for key in ("adherence", "per_class_discriminative", "tstr_accuracy"):  # w = 1 in the sweep is the report's w = 1:
        assert rows[1][key] == report["conditional"][key]  # the same evaluation seeds, the same samples and judges
    assert rows[0]["adherence"] != rows[1]["adherence"] or rows[0]["per_class_discriminative"] != \
        rows[1]["per_class_discriminative"]  # the weight changes the samples
    assert (workdir / "p" / "guidance.png").stat().st_size > 0
    for args, words in ((["--sweep", "0,x"], "not a list of numbers"), (["--sweep", "-1"], "below 0"),
                        (["--guidance", "-1"], "below 0")):
        bad = cli("evaluate", "runs/latest", "--quick", *args, "-o", "bad.json")
        assert bad.exit_code == 2 and words in bad.stderr, (args, bad.output)
        assert not (workdir / "bad.json").exists()


def test_the_condition_changes_the_samples():
    import numpy as np

    from tsdiff_cli.models.generator import Generator, sample_windows
    from tsdiff_cli.jobs.architectures import generator_config
    from tsdiff_cli.settings import Settings

    s = Settings(model={"channels": 8, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4]},
                 tst={"d_model": 8, "heads": 2, "layers": 1, "ff": 16, "decoder_hidden": 8})
    spec = {"categorical": {"k": ["a", "b"]}, "numeric": {}, "vocabulary": [], "caption_len": 0}
    torch.manual_seed(0)
    model = Generator(generator_config(s, 24, 2, spec))
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    a = sample_windows(model, 4, steps=3, seed=1, cond=Conditions(cats=torch.zeros(4, 1, dtype=torch.long)))
    b = sample_windows(model, 4, steps=3, seed=1, cond=Conditions(cats=torch.ones(4, 1, dtype=torch.long)))
    again = sample_windows(model, 4, steps=3, seed=1, cond=Conditions(cats=torch.zeros(4, 1, dtype=torch.long)))
    assert np.array_equal(a, again) and not np.allclose(a, b, atol=1e-4)


def test_a_condition_that_changes_within_a_series_or_is_missing_is_refused(cli, workdir):
    import pandas as pd

    _long_table(workdir / "long.csv", series=4)
    frame = pd.read_csv(workdir / "long.csv")
    frame.loc[3, "shape"] = "wave"  # series s0 is a ramp but for one step
    frame.to_csv(workdir / "mixed.csv", index=False)
    cfg = _write(workdir, "mixed.csv", 'id_column = "id"\ncolumns = ["a", "b"]\ncondition_columns = ["shape"]')
    bad = cli("preprocess", cfg)
    assert bad.exit_code == 2 and "condition 'shape' changes within series id = 's0'" in bad.output
    cfg = _write(workdir, "long.csv", 'id_column = "id"\ncolumns = ["a", "b"]\ncondition_columns = ["colour"]')
    bad = cli("preprocess", cfg)
    assert bad.exit_code == 2 and "has no column 'colour'" in bad.output and "[data]" in bad.output


# --- a local sentence-embedding model as the caption encoder ([model] caption_encoder) ------------

def _sentence_model(folder, seed: int = 0):
    """A tiny BERT saved as a sentence-transformers model would be (config, tokenizer, safetensors):
    the stand-in for a user's local model, since none can be downloaded."""
    transformers = pytest.importorskip("transformers")
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "wave", "ramp", "from", "year", "old", "slow", "fast"]
    transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_a_local_sentence_encoder_embeds_each_caption_once_and_null_as_zero(tmp_path):
    import numpy as np

    from tsdiff_cli.data.sentences import SentenceEncoder
    from tsdiff_cli.errors import UserError

    encoder = SentenceEncoder(_sentence_model(tmp_path / "minilm"))
    out = encoder(np.array(["a wave", None, "a ramp", "a wave", "", float("nan")], dtype=object))
    assert out.shape == (6, 16) and encoder.width == 16
    assert np.array_equal(out[0], out[3]) and not np.allclose(out[0], out[2])  # the caption, not its row, decides
    assert (out[[1, 4, 5]] == 0).all() and (np.abs(out[[0, 2]]).sum(1) > 0).all()  # missing / empty: null
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    for folder, message in ((tmp_path / "nowhere", "holds no config.json"),
                            (tmp_path / "pickled", "holds no *.safetensors weights")):
        with pytest.raises(UserError, match=message.replace("*", r"\*")):
            SentenceEncoder(folder)


def test_a_run_with_a_local_caption_encoder_samples_by_caption_and_refuses_another_model(cli, workdir):
    import numpy as np
    import pandas as pd

    folder = _sentence_model(workdir / "minilm")
    _long_table(workdir / "long.csv")
    text = COND_TINY.format(source="long.csv", data='id_column = "id"\ntime_column = "t"\ncolumns = ["a", "b"]\n'
                            'caption_column = "note"')
    (workdir / "cond.toml").write_text(text.replace("[model]\n", f'[model]\ncaption_encoder = "{folder}"\n'))
    trained = cli("train", "cond.toml", "-q")
    assert trained.exit_code == 0, trained.output
    run = workdir / "runs" / "latest"
    for caption, name in (("a wave from a 25 year old", "wave.csv"), ("a ramp from a 30 year old", "ramp.csv")):
        ok = cli("sample", run, "-n", "4", "--caption", caption, "--guidance", "2", "-o", name, "-q")
        assert ok.exit_code == 0, ok.output
    wave, ramp = pd.read_csv(workdir / "wave.csv"), pd.read_csv(workdir / "ramp.csv")
    assert set(wave["caption"]) == {"a wave from a 25 year old"}
    assert not np.allclose(wave[["a", "b"]], ramp[["a", "b"]])  # same seed, another caption
    _sentence_model(folder, seed=1)  # the folder now holds another model: its embeddings mean something else
    bad = cli("sample", run, "-n", "2", "--caption", "a wave", "-o", "bad.csv")
    assert bad.exit_code == 2 and "now holds another model than the one the run was trained with" in bad.output
    assert not (workdir / "bad.csv").exists()
    no_captions = text.replace('caption_column = "note"', 'condition_columns = ["shape"]')
    (workdir / "plain.toml").write_text(no_captions.replace("[model]\n", f'[model]\ncaption_encoder = "{folder}"\n'))
    refused = cli("train", "plain.toml")
    assert refused.exit_code == 2 and "[model] caption_encoder: is set but the data has no captions" in refused.output
