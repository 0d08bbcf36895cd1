"""Generation metrics, each a plain function on (real, generated) arrays of shape (N, T, F).

- :func:`discriminative_score` and :func:`predictive_score`: the TimeGAN post-hoc protocol
  (Yoon et al. 2019), as used by ImagenTime and ImagenI2R.
- :func:`context_fid`: Fréchet distance of TS2Vec encodings (Jeha et al. 2022, PSA-GAN).
- :func:`correlation_score`: difference of lag-0 cross-correlation matrices (Diffusion-TS).

Every function returns one value per repeat; :mod:`tsdiff_cli.metrics.evaluate` aggregates.
"""

from tsdiff_cli.metrics.correlation import correlation_score
from tsdiff_cli.metrics.context_fid import context_fid
from tsdiff_cli.metrics.discriminative import discriminative_score
from tsdiff_cli.metrics.predictive import predictive_score

__all__ = ["context_fid", "correlation_score", "discriminative_score", "predictive_score"]
