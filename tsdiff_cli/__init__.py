"""tsdiff: diffusion models for time series with gaps."""

__version__ = "0.1.0"
