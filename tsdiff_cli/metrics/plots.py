"""Pictures of real against generated windows, as the TimeGAN and ImagenTime papers show them:
PCA and t-SNE of the windows (each window reduced to its per-step mean over features, 1000
windows of each set at most), and a grid of real and generated series per feature."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tsdiff_cli.atomic import atomic_output

REAL_COLOR, GEN_COLOR = "tab:red", "tab:blue"


def _sample(x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return x[rng.permutation(len(x))[:count]]


def _save(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def write_plots(real: np.ndarray, generated: np.ndarray, out_dir: Path, columns: list[str] | None = None,
                seed: int = 0, title: str = "") -> list[Path]:
    """Write ``pca.png``, ``tsne.png`` and ``series.png`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = min(1000, len(real), len(generated))
    r = _sample(real, n, rng).mean(axis=2)  # TimeGAN: mean over features → one curve per window
    g = _sample(generated, n, rng).mean(axis=2)
    written = []

    pca = PCA(n_components=2).fit(r)
    pr, pg = pca.transform(r), pca.transform(g)
    emb = TSNE(n_components=2, perplexity=min(40, 2 * n // 3 - 1), max_iter=300, init="pca",
               random_state=seed).fit_transform(np.concatenate([r, g]))
    for name, (a, b), label in (("pca", (pr, pg), "PCA"), ("tsne", (emb[:n], emb[n:]), "t-SNE")):
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(a[:, 0], a[:, 1], s=6, alpha=0.25, c=REAL_COLOR, label="real")
        ax.scatter(b[:, 0], b[:, 1], s=6, alpha=0.25, c=GEN_COLOR, label="generated")
        ax.set_title(f"{label}: real vs generated{(' — ' + title) if title else ''}")
        ax.legend(loc="best")
        _save(fig, out_dir / f"{name}.png")
        plt.close(fig)
        written.append(out_dir / f"{name}.png")

    features = min(real.shape[2], 12)
    cols = min(features, 3)
    rows = -(-features // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False)
    pick_r, pick_g = _sample(real, 5, rng), _sample(generated, 5, rng)
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= features:
            ax.axis("off")
            continue
        ax.plot(pick_r[:, :, j].T, color=REAL_COLOR, alpha=0.6, lw=1)
        ax.plot(pick_g[:, :, j].T, color=GEN_COLOR, alpha=0.6, lw=1)
        ax.set_title(columns[j] if columns and j < len(columns) else f"feature {j}", fontsize=9)
    axes[0][0].legend([plt.Line2D([], [], color=REAL_COLOR), plt.Line2D([], [], color=GEN_COLOR)],
                      ["real", "generated"], fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, out_dir / "series.png")
    plt.close(fig)
    written.append(out_dir / "series.png")
    return written


def sweep_axes(row: dict) -> tuple[float | None, str]:
    """A guidance sweep row's faithfulness: adherence for a class condition, else the correlation
    between requested and judged value of the first numeric condition; with its axis label."""
    if row.get("adherence") is not None:
        return row["adherence"], f"adherence (real-trained judge's accuracy on {row.get('condition', 'the class')})"
    numeric = row.get("numeric") or {}
    if numeric:
        name, m = next(iter(numeric.items()))
        return m.get("correlation"), f"corr(requested, judged {name})"
    return None, "faithfulness"


def write_guidance_plot(rows: list[dict], path: Path, title: str = "") -> Path:
    """Fidelity against faithfulness over a guidance sweep (rows as :func:`tsdiff_cli.jobs.evaluate.
    guidance_sweep` returns them, or medians in that shape): discriminative score (overall and,
    for classes, the mean within each class; lower is more realistic) against adherence (or the
    numeric correlation), each point labelled with its weight w."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [sweep_axes(r)[0] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    series = [("discriminative", "disc. (all windows)", "tab:gray")]
    if any(r.get("per_class_discriminative_mean") is not None for r in rows):
        series.append(("per_class_discriminative_mean", "disc. within each class (mean)", GEN_COLOR))
    for key, label, color in series:
        pts = [(a, r.get(key), r["guidance"]) for a, r in zip(x, rows) if a is not None and r.get(key) is not None]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=label)
        for a, b, w in pts:
            ax.annotate(f"w={w:g}", (a, b), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(sweep_axes(rows[0])[1] if rows else "faithfulness")
    ax.set_ylabel("discriminative score (lower: more realistic)")
    ax.set_title(f"guidance sweep{(' — ' + title) if title else ''}", fontsize=9)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    plt.close(fig)
    return path
