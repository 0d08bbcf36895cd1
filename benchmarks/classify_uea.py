"""tsdiff classify on the shipped UEA / TSER sets, on their official train / test splits.

    python benchmarks/classify_uea.py [--sets BasicMotions JapaneseVowels Covid3Month]
        [--rates 0 30 50 70] [--seeds 0 1 2] [--sections curve,few,swa,balance,streams]
        [--split test|val] [--peer-python PATH] [--set key=value ...] [--threads N] [--output FILE]

Every run trains the preset `config/classify-<set>.toml` (validation carved from the training
split, stratified; the best validation epoch kept) with `[classify] seed` = each seed. Figures are
medians over the seeds with ± (max − min). Sections:

- curve: test accuracy (RMSE for Covid3Month) with `missing_rate` of the observed values removed
  at random from train and test (seeded), beside (a) the same model with gaps filled by linear
  interpolation and no mask channel (`gaps = "interpolate"`) and (b) aeon's MiniRocket on the
  same interpolated arrays (with --peer-python: an interpreter that has aeon; see
  benchmarks/minirocket_peer.py), and the wall time of one run;
- few: JapaneseVowels with 10 % of the training labels (stratified, seeded): from scratch, and
  after masked-patch pretraining on every training series (labels unused);
- swa: with and without stochastic weight averaging;
- balance: JapaneseVowels with 80 % of speakers 1 and 2 dropped from train: balanced accuracy with
  plain and with class-balanced sampling;
- streams: joint vs separate encoders for the two token kinds.

`--split val` scores the validation split instead of the test split (the test file is not read):
what presets may be chosen on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _seeds import parse_value, seed_cell  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"JapaneseVowels": "classify-japanese-vowels.toml", "BasicMotions": "classify-basic-motions.toml",
           "Covid3Month": "classify-covid3month.toml"}


def settings_for(name: str, split: str, overrides: dict, workdir: Path):
    from tsdiff_cli.settings import load_settings

    base = {"runs_dir": workdir / "runs"}
    if split == "val":
        base["test"] = None
    s = load_settings(REPO / "config" / PRESETS[name], {"classify": {**base, **overrides}})
    if split == "val":
        s.classify.test = None
    return s


def score_of(report: dict, split: str, metric: str) -> float:
    models = report[split]
    model = next(k for k in ("swa", "model", "base") if k in models)
    return models[model]["label"][metric]


def run_ours(name: str, split: str, overrides: dict, workdir: Path, metric: str) -> tuple[float, float]:
    from tsdiff_cli.jobs.classify import train_classifier

    s = settings_for(name, split, overrides, workdir)
    t = time.perf_counter()
    result = train_classifier(s, name)
    return score_of(result.report, split, metric), time.perf_counter() - t


def run_peer(python: str, name: str, rate: float, seed: int, workdir: Path) -> tuple[float, float]:
    """MiniRocket on the same gappy arrays tsdiff reads, gaps filled by linear interpolation."""
    from tsdiff_cli.data.labelled import conform, layout
    from tsdiff_cli.jobs.classify import _at_length, read_labelled
    from tsdiff_cli.metrics.imputation import fill_linear

    p = settings_for(name, "test", {"missing_rate": rate, "seed": seed}, workdir).classify
    train = _at_length(p, read_labelled(p, p.train, "train"))
    test = conform(read_labelled(p, p.test, "test"), layout(train), str(p.test))
    length = max(train.x.shape[2], test.x.shape[2])
    pad = lambda x: np.pad(x, ((0, 0), (0, 0), (0, length - x.shape[2])), constant_values=np.nan)  # noqa: E731
    fill = lambda x: np.nan_to_num(fill_linear(pad(x).swapaxes(1, 2)).swapaxes(1, 2))  # noqa: E731
    kind = train.specs[0].kind
    path = workdir / f"peer-{name}-{rate}-{seed}.npz"
    np.savez(path, x_train=fill(train.x), y_train=train.labels["label"], x_test=fill(test.x), y_test=test.labels["label"],
             kind=np.array(kind))
    out = subprocess.run([python, str(REPO / "benchmarks" / "minirocket_peer.py"), str(path), str(seed)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["score"], result["seconds"]


def imbalanced_train(workdir: Path, drop: tuple[str, ...] = ("1", "2"), share: float = 0.8, seed: int = 0) -> Path:
    """A copy of JapaneseVowels_TRAIN.ts without ``share`` of the cases of classes ``drop``."""
    from tsdiff_cli.data.labelled import resolve_labelled

    lines = resolve_labelled("JapaneseVowels_TRAIN").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    header, cases = lines[:start], [line for line in lines[start:] if line.strip()]
    rng = np.random.default_rng(seed)
    labels = np.array([c.rsplit(":", 1)[1].strip() for c in cases])
    keep = np.ones(len(cases), dtype=bool)
    for cls in drop:
        members = np.flatnonzero(labels == cls)
        keep[rng.choice(members, int(round(share * len(members))), replace=False)] = False
    path = workdir / "JapaneseVowels_IMBALANCED_TRAIN.ts"
    path.write_text("\n".join(header + [c for c, k in zip(cases, keep) if k]) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--rates", nargs="+", type=int, default=[0, 30, 50, 70], help="percent of observed values removed")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--sections", default="curve,few,swa,balance,streams")
    ap.add_argument("--split", choices=["test", "val"], default="test")
    ap.add_argument("--peer-python", help="a Python with aeon installed (MiniRocket column); omitted: no peer column")
    ap.add_argument("--no-ablation", action="store_true", help="curve: skip the interpolated no-mask-channel column")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra [classify] setting for every run")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: tsdiff's default)")
    ap.add_argument("--output", type=Path, help="write every figure as JSON here")
    args = ap.parse_args()

    from tsdiff_cli.threads import configure

    configure(args.threads or None)
    extra = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    sections = args.sections.split(",")
    where = "validation split (carved from train)" if args.split == "val" else "official test split"
    print(f"{time.strftime('%Y-%m-%d')}, torch threads {__import__('torch').get_num_threads()}, seeds {args.seeds}, "
          f"scored on the {where}; extra settings {extra or 'none'}")
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def cell(name: str, overrides: dict, metric: str) -> tuple[list[float], list[float]]:
            scores, times = [], []
            for seed in args.seeds:
                s, t = run_ours(name, args.split, {**extra, **overrides, "seed": seed}, work, metric)
                scores.append(s)
                times.append(t)
            return scores, times

        if "curve" in sections:
            print("\ncurve: accuracy (RMSE for Covid3Month) with a share of observed values removed from train and test")
            print(f"{'set':<15}{'removed':>8}  {'tsdiff':>16}  {'interp, no mask':>16}  {'MiniRocket':>16}  "
                  f"{'s/run':>7}  {'peer s':>7}")
            for name in args.sets:
                metric = "rmse" if name == "Covid3Month" else "accuracy"
                for rate in args.rates:
                    ours, t_ours = cell(name, {"missing_rate": rate / 100}, metric)
                    interp = [] if args.no_ablation else cell(name, {"missing_rate": rate / 100, "gaps": "interpolate"}, metric)[0]
                    peer, t_peer = [], []
                    if args.peer_python and args.split == "test":
                        for seed in args.seeds:
                            s, t = run_peer(args.peer_python, name, rate / 100, seed, work)
                            peer.append(s)
                            t_peer.append(t)
                    results.setdefault("curve", {})[f"{name}:{rate}"] = {
                        "tsdiff": ours, "interpolate_no_mask": interp, "minirocket": peer, "seconds": t_ours,
                        "peer_seconds": t_peer}
                    print(f"{name:<15}{rate:>7}%  {seed_cell(ours):>16}  {seed_cell(interp) if interp else '—':>16}  "
                          f"{seed_cell(peer) if peer else '—':>16}  {statistics.median(t_ours):>7.1f}  "
                          f"{statistics.median(t_peer) if t_peer else float('nan'):>7.2f}", flush=True)
        if "few" in sections:
            from tsdiff_cli.jobs.classify import pretrain_classifier

            print("\nfew labels: JapaneseVowels, 10 % of the training labels")
            scratch, _ = cell("JapaneseVowels", {"label_fraction": 0.1}, "accuracy")
            tuned = []
            for seed in args.seeds:
                s = settings_for("JapaneseVowels", args.split, {**extra, "seed": seed}, work)
                pre = pretrain_classifier(s, "JapaneseVowels-pretrain")
                tuned.append(run_ours("JapaneseVowels", args.split, {**extra, "seed": seed, "label_fraction": 0.1,
                                                                     "init": pre.run}, work, "accuracy")[0])
            results["few"] = {"scratch": scratch, "pretrained": tuned}
            print(f"  from scratch {seed_cell(scratch)}   pretrained + fine-tuned {seed_cell(tuned)}   "
                  f"gain {100 * (statistics.median(tuned) - statistics.median(scratch)):+.1f} points")
        if "swa" in sections:
            print("\nSWA: without / with (accuracy; RMSE for Covid3Month), nothing removed")
            for name in args.sets:
                metric = "rmse" if name == "Covid3Month" else "accuracy"
                plain, _ = cell(name, {"swa": False}, metric)
                swa, _ = cell(name, {"swa": True, "patience": 0}, metric)
                results.setdefault("swa", {})[name] = {"without": plain, "with": swa}
                print(f"  {name:<15} without {seed_cell(plain)}   with {seed_cell(swa)}")
        if "balance" in sections:
            print("\nbalance: JapaneseVowels without 80 % of speakers 1 and 2 in train; balanced accuracy")
            train = imbalanced_train(work)
            plain, _ = cell("JapaneseVowels", {"train": str(train)}, "balanced_accuracy")
            balanced, _ = cell("JapaneseVowels", {"train": str(train), "balance": ["label"]}, "balanced_accuracy")
            results["balance"] = {"plain": plain, "balanced": balanced}
            print(f"  plain sampling {seed_cell(plain)}   class-balanced sampling {seed_cell(balanced)}")
        if "streams" in sections:
            print("\nstreams: one joint encoder vs two separate ones (accuracy; RMSE for Covid3Month)")
            for name in args.sets:
                metric = "rmse" if name == "Covid3Month" else "accuracy"
                joint, tj = cell(name, {"streams": "joint"}, metric)
                separate, ts = cell(name, {"streams": "separate"}, metric)
                results.setdefault("streams", {})[name] = {"joint": joint, "separate": separate}
                print(f"  {name:<15} joint {seed_cell(joint)} ({statistics.median(tj):.0f} s)   separate "
                      f"{seed_cell(separate)} ({statistics.median(ts):.0f} s)")
    if args.output:
        args.output.write_text(json.dumps({"seeds": args.seeds, "split": args.split, "extra": extra, **results}, indent=1))


if __name__ == "__main__":
    main()
