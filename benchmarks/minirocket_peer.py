"""The benchmark's peer: aeon's MiniRocket (Dempster et al. 2021) on arrays classify_uea.py wrote.

Runs in its own environment (aeon pins pandas below the version tsdiff uses), so it is an
optional benchmark dependency, never a runtime one:

    python3 -m venv ~/aeon-env && ~/aeon-env/bin/pip install aeon==1.6.0
    python benchmarks/classify_uea.py --peer-python ~/aeon-env/bin/python

    python minirocket_peer.py ARRAYS.npz SEED   →   prints {"score": …, "seconds": …} as JSON

ARRAYS.npz holds x_train, y_train, x_test, y_test (gaps already filled by linear interpolation)
and kind ("class" or "numeric"); the score is test accuracy or RMSE; seconds are fit + predict
of a second fit (the first one pays for numba's compilation).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    arrays = np.load(sys.argv[1], allow_pickle=False)
    seed = int(sys.argv[2])
    kind = str(arrays["kind"])
    if kind == "class":
        from aeon.classification.convolution_based import MiniRocketClassifier as Model
    else:
        from aeon.regression.convolution_based import MiniRocketRegressor as Model
    Model(random_state=seed).fit(arrays["x_train"], arrays["y_train"]).predict(arrays["x_test"])  # numba compiles here
    started = time.perf_counter()
    model = Model(random_state=seed)
    model.fit(arrays["x_train"], arrays["y_train"])
    pred = model.predict(arrays["x_test"])
    seconds = time.perf_counter() - started
    y = arrays["y_test"]
    score = float(np.mean(pred == y)) if kind == "class" else float(np.sqrt(np.mean((pred.astype(float) - y) ** 2)))
    print(json.dumps({"score": score, "seconds": seconds}))


if __name__ == "__main__":
    main()
