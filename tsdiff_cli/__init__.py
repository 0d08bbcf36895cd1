"""tsdiff: diffusion models for time series with gaps."""

import time as _time

__version__ = "0.1.0"

#: when this process imported tsdiff (monotonic clock): a command's ``--max-minutes`` counts from
#: here, so start-up (imports, preparing the data) is inside the budget the user gave
STARTED = _time.monotonic()
