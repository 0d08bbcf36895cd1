"""Metrics of conditional samples: do generated windows look real *within* their condition, and
do they obey it?

* **per-condition fidelity** — the discriminative score (TimeGAN's post-hoc GRU) computed within
  each class: real windows of class k against windows generated for class k, averaged over
  classes;
* **adherence** — a classifier trained on *real* labelled windows (training split) predicts the
  class of generated windows; its accuracy against the requested class (for a numeric condition,
  a regressor: correlation and mean absolute error between requested and predicted value);
* **TSTR** — train on synthetic, test on real (Esteban et al. 2017, "Real-valued (medical) time
  series generation with recurrent conditional GANs", §4): the same classifier trained on
  generated windows labelled by their request, tested on the real held-out split, as a fraction
  of the classifier trained on real windows (TRTR) on the same split.

The judge is a small GRU classifier (one layer, mean-pooled hidden states, softmax or linear
head), trained with Adam for a fixed number of iterations: the same for every side it is
trained on, so TSTR / TRTR compares data, not recipes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class _GRUJudge(nn.Module):
    def __init__(self, features: int, outputs: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(x)
        return self.head(states.mean(1))


def fit_judge(x: np.ndarray, y: np.ndarray, classes: int, *, seed: int, iterations: int = 600,
              batch_size: int = 128, hidden: int = 32, device: str = "cpu") -> _GRUJudge:
    """A GRU classifier (``classes`` ≥ 2) or regressor (``classes`` = 0, ``y`` standardised) on
    complete windows ``x`` (N, T, F), trained on ``device`` (batch indices drawn on the CPU: a seed
    draws the same batches on any device)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _GRUJudge(x.shape[2], max(classes, 1), hidden).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs = torch.as_tensor(x, dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.long if classes else torch.float32)
    for _ in range(iterations):
        idx = torch.randint(len(xs), (min(batch_size, len(xs)),), generator=gen)
        out, want = model(xs[idx].to(device)), ys[idx].to(device)
        loss = (nn.functional.cross_entropy(out, want) if classes
                else nn.functional.mse_loss(out[:, 0], want))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.inference_mode()
def predict(model: _GRUJudge, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    xs, device = torch.as_tensor(x, dtype=torch.float32), next(model.parameters()).device
    return torch.cat([model(xs[i:i + batch_size].to(device)).cpu() for i in range(0, len(xs), batch_size)]).numpy()


def class_report(real: np.ndarray, real_codes: np.ndarray, real_train: np.ndarray, real_test: np.ndarray,
                 generated: np.ndarray, gen_codes: np.ndarray, classes: list[str], *, seed: int,
                 disc_repeats: int, disc_iterations: int, batch_size: int, judge_iterations: int = 600,
                 device: str = "cpu") -> dict:
    """Per-class fidelity, adherence and TSTR for one categorical condition. ``real`` windows
    (complete, scaled) with class codes and masks of the judge's training and test windows;
    ``generated`` windows with the codes they were asked for."""
    from tsdiff_cli.metrics.discriminative import discriminative_score

    k = len(classes)
    per_class = {}
    for c, name in enumerate(classes):
        r, g = real[real_codes == c], generated[gen_codes == c]
        if len(r) >= 4 and len(g) >= 4:
            per_class[name] = float(np.mean(discriminative_score(r, g, repeats=disc_repeats, iterations=disc_iterations,
                                                                 batch_size=batch_size, seed=seed + c, device=device)))
    known = real_codes >= 0
    train, test = real_train & known, real_test & known
    report: dict = {"per_class_discriminative": per_class,
                    "per_class_discriminative_mean": float(np.mean(list(per_class.values()))) if per_class else None}
    if train.sum() < 2 * k:
        report["note"] = "too few real labelled windows to train the judge"
        return report
    on_real = fit_judge(real[train], real_codes[train], k, seed=seed, iterations=judge_iterations, device=device)
    asked = gen_codes >= 0
    report["adherence"] = float((predict(on_real, generated[asked]).argmax(1) == gen_codes[asked]).mean())
    if test.sum() >= k:
        trtr = float((predict(on_real, real[test]).argmax(1) == real_codes[test]).mean())
        on_gen = fit_judge(generated[asked], gen_codes[asked], k, seed=seed, iterations=judge_iterations, device=device)
        tstr = float((predict(on_gen, real[test]).argmax(1) == real_codes[test]).mean())
        report.update(trtr_accuracy=trtr, tstr_accuracy=tstr, tstr_ratio=tstr / trtr if trtr > 0 else None,
                      test_windows=int(test.sum()))
    else:
        report["note"] = "no real held-out windows with a label: TSTR not computed"
    report["judge"] = {"model": "GRU(32) classifier, mean-pooled", "iterations": judge_iterations,
                       "train_windows": int(train.sum()), "seed": seed}
    return report


def numeric_report(real: np.ndarray, real_values: np.ndarray, real_train: np.ndarray, generated: np.ndarray,
                   gen_values: np.ndarray, *, seed: int, judge_iterations: int = 600, device: str = "cpu") -> dict:
    """Adherence to a numeric condition: a GRU regressor trained on real windows (standardised
    values) predicts the value of generated windows; correlation and MAE against the request
    (in the condition's units)."""
    train = real_train & np.isfinite(real_values)
    asked = np.isfinite(gen_values)
    if train.sum() < 8 or asked.sum() < 4:
        return {"note": "too few windows with a value"}
    mean, std = real_values[train].mean(), real_values[train].std() or 1.0
    model = fit_judge(real[train], (real_values[train] - mean) / std, 0, seed=seed, iterations=judge_iterations,
                      device=device)
    pred = predict(model, generated[asked])[:, 0] * std + mean
    want = gen_values[asked]
    corr = float(np.corrcoef(pred, want)[0, 1]) if want.std() > 0 and pred.std() > 0 else None
    return {"correlation": corr, "mae": float(np.abs(pred - want).mean()), "windows": int(asked.sum()),
            "judge": {"model": "GRU(32) regressor, mean-pooled", "iterations": judge_iterations, "seed": seed}}
