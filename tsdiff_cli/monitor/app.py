"""The Textual dashboard of ``tsdiff monitor``: header, progress, loss and score charts, the
latest and best scores, the run's settings; a run picker and a help screen."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rich.syntax import Syntax
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from tsdiff_cli.monitor.chart import Chart
from tsdiff_cli.monitor.locate import summarize
from tsdiff_cli.monitor.study import study_of, trial_rows
from tsdiff_cli.monitor.model import RunState
from tsdiff_cli.monitor.summary import STATE_STYLE, best_cell, duration, number, problems, progress_line, state_text
from tsdiff_cli.runs import CONFIG_FILE, METRICS_FILE, is_run, list_runs


TRIALS_EVERY = 5.0  # seconds between looks at a study's trials


class RunPicker(ModalScreen[Path | None]):
    """The runs beside the current one: state and best score; enter opens one."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("q", "dismiss(None)", "Close", show=False)]

    def __init__(self, folder: Path, current: Path):
        super().__init__()
        self.folder, self.current = folder, current

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static(f"Runs in {self.folder} — enter opens, esc closes", id="picker-title")
            yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "state", "best score", "updated")
        runs = list_runs(self.folder)
        for path in reversed(runs):  # newest first
            s = summarize(path)
            updated = duration(self.app.run_state.clock() - s.updated) + " ago" if s.updated else "—"
            table.add_row(path.name, Text(s.state, style=STATE_STYLE.get(s.state, "")), s.score or "—", updated,
                          key=str(path))
        if self.current in runs:
            table.move_cursor(row=list(reversed(runs)).index(self.current))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(Path(event.row_key.value))


HELP = """\
[b]tsdiff monitor[/b] — keys

  [b]q[/b]  quit
  [b]r[/b]  pick another run from the runs folder
  [b]l[/b]  switch the charts between log and linear axes
  [b]?[/b]  this help (esc closes)

Losses: every numeric field ending in "loss" of the run's train rows, against step.
Scores: every numeric field of its eval rows, against epoch; ● marks the best
(lowest; coverage fields: closest to their level). Started on a link such as
runs/latest, the monitor moves to each newer run the link points to.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("question_mark", "dismiss", "Close", show=False),
                Binding("q", "dismiss", "Close", show=False)]

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")


@dataclass
class Widgets:
    header: Static
    progress: Static
    bar: ProgressBar
    losses_line: Static
    losses: Chart
    scores: Chart
    table: DataTable
    config: Static
    notice: Static


class MonitorApp(App):
    TITLE = "tsdiff monitor"
    CSS = """
    #header { height: 1; padding: 0 1; background: $panel; }
    #progress-text { height: 1; padding: 0 1; }
    #progress-row { height: 1; padding: 0 1; }
    #bar { width: 50; margin-right: 2; }
    #losses-line { width: 1fr; color: $text-muted; }
    #body { height: 1fr; }
    #charts { width: 2fr; }
    #side { width: 1fr; min-width: 36; }
    #scores-table { height: auto; max-height: 12; border: round $primary; }
    #trials { height: auto; max-height: 14; border: round $primary; }
    #config-box { height: 1fr; border: round $primary; }
    #notice { height: auto; padding: 0 1; }
    #picker { width: 90%; height: auto; max-height: 80%; border: round $primary; background: $surface; }
    #runs { height: auto; max-height: 30; }
    #picker-title { padding: 0 1; }
    #help { width: 80; height: auto; border: round $primary; background: $surface; padding: 1 2; }
    RunPicker, HelpScreen { align: center middle; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("r", "pick_run", "Runs"),
        Binding("l", "toggle_log", "Log/linear"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, target: Path, interval: float = 1.0, log_scale: bool = True):
        super().__init__()
        self.target = Path(target)
        self.follow = self.target.is_symlink()  # runs/latest: move on to each newer run
        self.interval, self.log_scale = interval, log_scale
        self.run_state = RunState(self.target)
        self.study = study_of(self.target)  # a tune study: its trials beside the newest trial's run
        self._trials_at = -math.inf
        self._drawn = -1  # run_state.version the charts and table show
        self._catching_up = False  # a quick follow-up poll is scheduled

    def compose(self) -> ComposeResult:
        # kept as attributes: a timer may still fire while the app closes, when queries find nothing
        ui = self.ui = Widgets(
            header=Static(id="header"), progress=Static(id="progress-text"),
            bar=ProgressBar(id="bar", total=100, show_eta=False), losses_line=Static(id="losses-line"),
            losses=Chart("training losses", "step", id="losses"), scores=Chart("evaluation scores", "epoch", id="scores"),
            table=DataTable(id="scores-table", cursor_type="none"), config=Static(id="config"), notice=Static(id="notice"))
        yield ui.header
        yield ui.progress
        with Horizontal(id="progress-row"):
            yield ui.bar
            yield ui.losses_line
        with Horizontal(id="body"):
            with Vertical(id="charts"):
                yield ui.losses
                yield ui.scores
            with Vertical(id="side"):
                if self.study is not None:
                    yield DataTable(id="trials", cursor_type="none")
                yield ui.table
                with VerticalScroll(id="config-box"):
                    yield ui.config
        yield ui.notice
        yield Footer()

    def on_mount(self) -> None:
        self.ui.table.add_columns("score", "latest", "best")
        if self.study is not None:
            self.query_one("#trials", DataTable).add_columns("trial", "state", "value", "settings")
        self.query_one("#config-box").border_title = CONFIG_FILE
        self.set_interval(self.interval, self.poll)
        self.poll()

    # --- updating ----------------------------------------------------------------------------

    def poll(self) -> None:
        self._follow_link()
        if self.study is not None and self.run_state.clock() - self._trials_at > TRIALS_EVERY:
            self._show_trials()
        self.run_state.refresh(budget=0.15)
        self._show_status()
        if self.run_state.version != self._drawn:
            self._drawn = self.run_state.version
            self._show_data()
        if self.run_state.loading and not self._catching_up:  # a large file: read on between frames
            self._catching_up = True
            self.set_timer(0.01, self._catch_up)

    def _catch_up(self) -> None:
        self._catching_up = False
        self.poll()

    def _follow_link(self) -> None:
        if not self.follow:
            return
        newest = self.target.resolve()
        if newest != self.run_state.path and is_run(newest):
            self._open(newest, follow=True)
            self.notify(f"{self.target} now points to {newest.name}", title="new run")

    def _show_trials(self) -> None:
        self._trials_at = self.run_state.clock()
        try:
            table = self.query_one("#trials", DataTable)
        except Exception:  # the app is closing
            return
        study, rows = trial_rows(self.study)
        table.clear()
        table.border_title = f"trials — {study['metric']} ({study['direction']})"
        for r in rows:
            table.add_row(str(r.number), Text(r.state, style=STATE_STYLE.get(r.state, "")), number(r.value),
                          " ".join(f"{k.split('.')[-1]}={number(v) if isinstance(v, float) else v}"
                                   for k, v in r.params.items()))

    def _open(self, path: Path, follow: bool) -> None:
        self.follow = follow
        self.run_state = RunState(path)
        self._drawn = -1

    def _show_status(self) -> None:
        run = self.run_state
        header = Text(run.name, style="bold")
        header.append(f"   command {run.command or '—'} · config {run.config_name or '—'}   ")
        header.append_text(state_text(run))
        self.ui.header.update(header)
        p = run.progress()
        self.ui.progress.update(progress_line(p))
        bar = self.ui.bar
        bar.display = p.fraction is not None
        if p.fraction is not None:
            bar.update(progress=round(100 * p.fraction, 1))
        losses = run.latest_losses()
        self.ui.losses_line.update(
            "latest losses: " + "  ".join(f"{k} {number(v)}" for k, v in losses.items()) if losses else "")
        parts = [(problems(run), "yellow")]
        if not run.tail.exists:
            parts.append((f"waiting for {run.tail.path} to appear", "yellow"))
        if run.loading:
            parts.append((f"reading {METRICS_FILE}… {run.tail.offset / 1e6:.0f} MB", "yellow"))
        if self.follow:
            parts.append((f"following {self.target} to each newer run", "dim"))
        notice = Text("  ·  ").join(Text(text, style=style) for text, style in parts if text)
        self.ui.notice.update(notice)

    def _show_data(self) -> None:
        run = self.run_state
        self.ui.losses.show(run.losses, self.log_scale)
        scores = self.ui.scores
        scores.x_label = run.score_axis
        scores.show(run.scores, self.log_scale, best=True)
        table = self.ui.table
        table.clear()
        for row in run.score_rows():
            at_best = row.best is not None and row.best_at == row.latest_at
            table.add_row(row.name, Text(f"{number(row.latest)} @ {row.latest_at:g}", style="bold green" if at_best else ""),
                          Text(best_cell(row), style="bold"), key=row.name)
        notes = ", ".join(f"{k} {v}" for k, v in run.score_notes.items())
        table.border_title = f"scores (@ {run.score_axis})" + (f" — {notes}" if notes else "")
        table.border_subtitle = "best: lowest" + (", coverage: nearest its level" if any(
            r.goal is not None and r.goal.kind == "target" for r in run.score_rows()) else "")
        self.ui.config.update(self._config_view())

    def _config_view(self):
        run = self.run_state
        if run.config_text is None:
            return Text(f"no {CONFIG_FILE} in this run", style="dim")
        if not run.config_text.strip():
            return Text(f"{CONFIG_FILE} is empty", style="dim")
        if run.config_error:
            return Text(f"not valid TOML: {run.config_error}\n", style="yellow") + Text(run.config_text)
        return Syntax(run.config_text, "toml", background_color="default", word_wrap=True)

    # --- keys --------------------------------------------------------------------------------

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._show_data()

    def action_pick_run(self) -> None:
        if isinstance(self.screen, RunPicker):
            return
        folder = self.run_state.path.parent
        if not list_runs(folder):
            self.notify(f"no runs in {folder}", severity="warning")
            return
        self.push_screen(RunPicker(folder, self.run_state.path), self._picked)

    def _picked(self, path: Path | None) -> None:
        if path is not None and path != self.run_state.path:
            self._open(path, follow=False)
            self.poll()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def save_screenshot(target: Path, output: Path, size: tuple[int, int] = (140, 42), log_scale: bool = True) -> None:
    """Draw the dashboard of ``target`` off-screen once its log is read; write it as SVG."""
    from tsdiff_cli.atomic import write_text

    app = MonitorApp(target, interval=3600.0, log_scale=log_scale)
    pictures: list[str] = []

    async def shoot(pilot) -> None:
        while app.run_state.loading:
            await pilot.pause(0.05)
        await pilot.pause(0.3)  # the charts draw on the next frames
        pictures.append(app.export_screenshot(title=f"tsdiff monitor {app.run_state.name}"))
        app.exit()

    app.run(headless=True, size=size, auto_pilot=shoot)
    write_text(output, pictures[0])
