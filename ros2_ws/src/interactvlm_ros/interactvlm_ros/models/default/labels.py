"""Object label -> label feature, robust to synonyms and unknown words.

The raw MiniLM embedding of an arbitrary word is out of the training distribution, so the model never
sees it directly. Instead the label is projected onto the embeddings of the categories the model was
trained on (stored in the checkpoint): ``feat = Σ_c softmax(sim_c / τ) · e_c``. A synonym ("mug") lands
on its category ("cup"); an unseen category lands on its nearest neighbours. When the best cosine
similarity is below ``known_threshold`` the label is *unknown*: the feature is the zero vector (the
"generic object" input, trained by label dropout) and ``known`` is False.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LabelFeature:
    feature: np.ndarray  # [384] float32
    known: bool
    nearest: str
    similarity: float


class LabelSpace:
    """Categories + their embeddings [C,384] (unit rows); ``project(embedding)`` -> LabelFeature."""

    def __init__(self, categories: list[str], embeddings: np.ndarray, temperature: float = 0.05,
                 known_threshold: float = 0.5):
        emb = np.asarray(embeddings, np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(categories):
            raise ValueError(f"label space: {len(categories)} categories but embeddings of shape {emb.shape}")
        self.categories = list(categories)
        self.embeddings = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self.temperature = float(temperature)
        self.known_threshold = float(known_threshold)

    def project(self, embedding: np.ndarray) -> LabelFeature:
        e = np.asarray(embedding, np.float32).reshape(-1)
        e = e / max(float(np.linalg.norm(e)), 1e-12)
        sims = self.embeddings @ e
        i = int(np.argmax(sims))
        best = float(sims[i])
        if best < self.known_threshold:
            return LabelFeature(np.zeros(self.embeddings.shape[1], np.float32), False, self.categories[i], best)
        w = np.exp((sims - best) / self.temperature)
        w /= w.sum()
        return LabelFeature((w @ self.embeddings).astype(np.float32), True, self.categories[i], best)

    def to_dict(self) -> dict:
        return {"categories": self.categories, "temperature": self.temperature, "known_threshold": self.known_threshold}
