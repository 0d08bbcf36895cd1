"""Captions → sentence embeddings by a frozen sentence-embedding model read from a local folder
(``[model] caption_encoder``); nothing is downloaded. The folder is in the Hugging Face layout
(config.json, tokenizer files, weights in ``*.safetensors``), e.g. a sentence-transformers model
saved on a machine with internet. A caption's embedding is the mean of the model's last hidden
states over its tokens (Reimers & Gurevych 2019, "Sentence-BERT", §3: MEAN pooling, the pooling
most sentence-transformers models ship with). A missing or empty caption is the null caption: an
all-zero row (:class:`tsdiff_cli.models.condition.ConditionEncoder` reads it so).

Needs the optional extra ``pip install "tsdiff[text]"`` (the transformers library).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsdiff_cli.errors import UserError

SETTING = "[model] caption_encoder"
MAX_TOKENS = 256  # captions are cut here when the tokenizer names no limit of its own


def fingerprint(folder: Path) -> str:
    """sha256 over the folder's config and weights: a run refuses a folder whose model changed."""
    digest = hashlib.sha256()
    for path in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


class SentenceEncoder:
    """A frozen local sentence-embedding model: ``encoder(captions)`` → (N, width) float32."""

    def __init__(self, folder: str | Path, where: str = SETTING):
        folder = Path(folder).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(where, f"{folder} holds no config.json",
                            "point it at a local folder with a Hugging Face sentence-embedding model "
                            "(config.json, tokenizer files, *.safetensors)")
        if not any(folder.glob("*.safetensors")):
            raise UserError(where, f"{folder} holds no *.safetensors weights",
                            "save the model with safetensors (tsdiff loads no pickled weights)")
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise UserError(where, "needs the transformers library",
                            'pip install -c constraints.txt "tsdiff[text]"') from None
        hf_logging.set_verbosity_error()  # tsdiff's own progress and errors speak for it
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).eval()
        except (OSError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(where, f"{folder} could not be loaded ({first})",
                            "give a folder saved by transformers or sentence-transformers") from None
        self.folder = folder.resolve()
        self.width = int(self.model.get_input_embeddings().embedding_dim)
        limit = getattr(self.tokenizer, "model_max_length", MAX_TOKENS) or MAX_TOKENS
        self.max_tokens = int(min(limit, MAX_TOKENS))

    def record(self) -> str:
        """What a run keeps to find (and check) this model again, as JSON."""
        return json.dumps({"folder": str(self.folder), "sha256": fingerprint(self.folder), "width": self.width})

    @classmethod
    def from_record(cls, record: str) -> SentenceEncoder:
        """The model a run was trained with, refused when its folder is gone or its weights changed."""
        r = json.loads(record)
        where = f"this run's {SETTING}"
        encoder = cls(r["folder"], where)
        if fingerprint(encoder.folder) != r["sha256"]:
            raise UserError(where, f"{r['folder']} now holds another model than the one the run was trained with",
                            "restore that model there (its captions would mean something else to this run)")
        return encoder

    @torch.inference_mode()
    def __call__(self, captions, batch_size: int = 64) -> np.ndarray:
        """One row per caption; each distinct caption is embedded once."""
        texts = pd.Series(list(captions), dtype=object)
        texts = texts.where(texts.notna(), None).map(lambda c: None if c is None or not str(c).strip() else str(c))
        codes, unique = pd.factorize(texts)  # None → −1: the null caption
        table = np.zeros((len(unique) + 1, self.width), dtype=np.float32)  # row 0: the null caption
        for start in range(0, len(unique), batch_size):
            chunk = list(unique[start:start + batch_size])
            enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state.float()
            keep = enc["attention_mask"][..., None].to(hidden.dtype)
            table[1 + start:1 + start + len(chunk)] = ((hidden * keep).sum(1) / keep.sum(1).clamp_min(1)).numpy()
        return table[codes + 1]
