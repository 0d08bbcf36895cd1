"""``tsdiff evaluate``: the field's generation metrics, as a table, a JSON report and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsdiff_cli.errors import UserError


def evaluate_command(
    run: Annotated[Optional[Path], typer.Argument(metavar="RUN", help="A run directory to sample from and score against its dataset.", show_default=False)] = None,
    real: Annotated[Optional[Path], typer.Option("--real", help="Real windows: .npy, tsdiff dataset .h5, or stacked-window .csv / .parquet.", show_default=False)] = None,
    generated: Annotated[Optional[Path], typer.Option("--generated", help="Generated windows, in the same formats.", show_default=False)] = None,
    gaps: Annotated[Optional[Path], typer.Option("--gaps", help="Imputation mode: the table with gaps that was imputed (CSV / Parquet); --real is then its complete version.", show_default=False)] = None,
    imputed: Annotated[Optional[Path], typer.Option("--imputed", help="Imputation mode: the filled table (from `tsdiff impute`); scored where --gaps is missing and --real is known.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the JSON report [default: report.json, or RUN/report.json].", show_default=False)] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Folder for PNGs: PCA, t-SNE and series of real vs generated.", show_default=False)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML settings whose [eval] section to use.", show_default=False)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The reduced profile ([eval] quick_* settings, which also size training's selection score); labelled as such, not comparable with papers.")] = False,
    repeats: Annotated[Optional[int], typer.Option(help="Repeats of the discriminative and predictive scores (overrides [eval] repeats).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the metrics (overrides [eval] seed); with RUN, the seed its samples and its metrics are derived from (never those that chose the model during training).", show_default=False)] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="Conditional run: the classifier-free guidance weight to sample with (default: the run's [sample] guidance; 0 unconditional, 1 conditional).", show_default=False)] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", metavar="W,W,...", help="Conditional run: also sample at each of these guidance weights (e.g. 0,1,2,4) and report fidelity (disc., per-class disc.) against adherence for each; with --plots, guidance.png.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no table; only the report file.")] = False,
) -> None:
    """Score generated windows against real ones with the papers' metrics, or an imputation.

    Discriminative and predictive scores (TimeGAN protocol), Context-FID (TS2Vec) and the
    correlation score, each repeated and reported as mean ± std. With --real, --gaps and
    --imputed: MAE / MSE / RMSE of the filled values (z-space) beside the mean,
    last-observation and linear-interpolation baselines, and 90 % coverage where the filled
    table has _q05 / _q95 columns.
    """
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.jobs.evaluate import evaluate_files, evaluate_run
    from tsdiff_cli.settings import load_settings

    if gaps is not None or imputed is not None:
        _evaluate_imputation(run, real, generated, gaps, imputed, output, quiet)
        return
    settings = load_settings(config, {"eval": {"repeats": repeats, "seed": seed}})
    if run is not None and (real is not None or generated is not None):
        raise UserError("evaluate", "give either RUN or --real with --generated, not both", "choose one")
    if run is None and (real is None or generated is None):
        missing = "--generated" if real is not None else "--real" if generated is not None else "RUN or --real/--generated"
        raise UserError("evaluate", f"nothing to compare: {missing} is missing",
                        "run `tsdiff evaluate RUN` or `tsdiff evaluate --real A --generated B`")
    if run is None and (guidance is not None or sweep is not None):
        raise UserError("--guidance" if guidance is not None else "--sweep", "applies to a conditional RUN, not to files",
                        "give RUN, or drop it")
    weights = _weights(sweep) if sweep is not None else None
    with Reporter(quiet) as rep:
        if run is None:
            result = evaluate_files(real, generated, settings, quick=quick, plots=plots, output=output, update=rep.update)
        else:
            result = evaluate_run(run, settings, quick=quick, plots=plots, output=output, update=rep.update,
                                  guidance=guidance, sweep=weights)
    if not quiet:
        _print_report(result.report, result.output)


def _weights(text: str) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise UserError(f"--sweep {text}", "is not a list of numbers", "give weights separated by commas, e.g. 0,1,2,4") from None
    if not weights:
        raise UserError("--sweep", "names no weight", "give weights separated by commas, e.g. 0,1,2,4")
    return weights


def _evaluate_imputation(run, real, generated, gaps, imputed, output, quiet) -> None:
    from tsdiff_cli.jobs.evaluate import evaluate_imputation
    from tsdiff_cli.metrics.imputation import format_imputation_report

    if run is not None or generated is not None:
        raise UserError("evaluate", "imputation mode takes --real, --gaps and --imputed only", "drop RUN / --generated")
    if real is None or gaps is None or imputed is None:
        missing = [n for n, v in (("--real", real), ("--gaps", gaps), ("--imputed", imputed)) if v is None]
        raise UserError("evaluate", f"imputation mode needs {', '.join(missing)} as well",
                        "give the complete table (--real), the table with gaps (--gaps) and the filled one (--imputed)")
    result = evaluate_imputation(real, gaps, imputed, output=output)
    if not quiet:
        report = result.report
        print(format_imputation_report(report))
        if "coverage90" in report["method"]:
            print(f"90 % interval coverage (_q05 … _q95): {report['method']['coverage90']:.3f}")
        print(f"report: {result.output}")


def _print_report(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from tsdiff_cli.metrics.evaluate import FULL_NOTE, LABELS

    sizes = report["sizes"]
    title = (f"tsdiff evaluate — {report['profile']} profile: {sizes['real']} real vs {sizes['generated']} generated, "
             f"{sizes['seq_len']} steps × {sizes['features']} features")
    table = Table(title=title, title_justify="left")
    for col, justify in (("metric", "left"), ("mean ± std", "right"), ("repeats", "right"), ("iterations", "right"), ("seconds", "right")):
        table.add_column(col, justify=justify)
    for name, m in report["metrics"].items():
        table.add_row(LABELS[name], f"{m['mean']:.4f} ± {m['std']:.4f}", str(m["repeats"]),
                      str(m.get("iterations", "—")), f"{m['seconds']:.1f}")
    console = Console()
    console.print(table)
    if "conditional" in report:
        console.print(_conditional_table(report["conditional"]))
    if "guidance_sweep" in report:
        console.print(_sweep_table(report["guidance_sweep"]))
    console.print(report["protocol"], style="dim" if report["protocol"] == FULL_NOTE else "bold yellow")
    if "seeds" in report:
        sd = report["seeds"]
        console.print(f"seed {sd['base']}: samples drawn with {sd['sample']}, metrics with {sd['metric']} "
                      "(selection during training used others)", style="dim")
    if report.get("inputs", {}).get("real", {}).get("mode"):
        console.print(report["inputs"]["real"]["mode"], style="dim")
    if report.get("inputs", {}).get("scaling", "as given") != "as given":
        console.print(f"scaling: {report['inputs']['scaling']}", style="dim")
    console.print(f"report: {out}" + (f"; plots: {', '.join(report['plots'])}" if report.get("plots") else ""))


def _conditional_table(c: dict):
    from rich.table import Table

    def f(v) -> str:
        return "—" if v is None else f"{v:.4f}"

    table = Table(title=f"conditional samples (guidance {c['guidance']:g})", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if "condition" in c:
        for name, v in c.get("per_class_discriminative", {}).items():
            table.add_row(f"disc. within {c['condition']} = {name}", f(v))
        table.add_row("per-class disc. (mean)", f(c.get("per_class_discriminative_mean")))
        table.add_row(f"adherence (real-trained judge's accuracy on {c['condition']})", f(c.get("adherence")))
        if "tstr_accuracy" in c:
            table.add_row(f"TSTR accuracy ({c['held_out_split']} split)", f(c["tstr_accuracy"]))
            table.add_row("TRTR accuracy (same judge trained on real)", f(c["trtr_accuracy"]))
            table.add_row("TSTR / TRTR", f(c["tstr_ratio"]))
    for name, m in c.get("numeric", {}).items():
        table.add_row(f"{name}: corr(requested, judged)", f(m.get("correlation")))
        table.add_row(f"{name}: MAE", f(m.get("mae")))
    return table


def _sweep_table(rows: list[dict]):
    from rich.table import Table

    from tsdiff_cli.metrics.plots import sweep_axes

    def f(v) -> str:
        return "—" if v is None else f"{v:.4f}"

    table = Table(title="guidance sweep (the same samples' seeds at every weight)", title_justify="left")
    for col in ("w", "disc.", "per-class disc. (mean)", sweep_axes(rows[0])[1], "TSTR / TRTR"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['guidance']:g}", f(r.get("discriminative")), f(r.get("per_class_discriminative_mean")),
                      f(sweep_axes(r)[0]), f(r.get("tstr_ratio")))
    return table
