"""Object label -> label feature, robust to synonyms and unknown words.

The raw MiniLM embedding of an arbitrary word is out of the training distribution, so the model never
sees it directly. Instead the label is projected onto the embeddings of the categories the model was
trained on (stored in the checkpoint): ``feat = Σ_c softmax(sim_c / τ) · e_c``. A synonym ("mug") lands
on its category ("cup"); an unseen category lands on its nearest neighbours. When the best cosine
similarity is below ``known_threshold`` the label is *unknown*: the feature is the zero vector (the
"generic object" input, trained by label dropout) and ``known`` is False.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass
class LabelFeature:
    feature: np.ndarray  # [384] float32
    known: bool
    nearest: str
    similarity: float
    read_as: str = ""  # the form of the label that was embedded when not the label itself (see label_variants)


def label_variants(text: str) -> list[str]:
    """Other forms of a normalised label, tried when it is unknown: without a leading article ('the cans' → 'cans'),
    the last word singular ('cans' → 'can', 'red cans' → 'red can', boxes → box, batteries → battery, knives → knife).
    MiniLM puts a plural or an article far enough from its category to cross the known threshold ('the cans' 0.38,
    'cameras' 0.44, while 'can' 1.0 and 'camera' 0.52), so such a label lost its category."""
    text = re.sub(r"[^\w]+$", "", text)
    out: list[str] = []
    for base in (text, re.sub(r"^(a|an|the|some) ", "", text)):
        head, _, last = base.rpartition(" ")
        forms = [last]
        if last.endswith("ies") and len(last) > 4:
            forms.append(last[:-3] + "y")
        elif last.endswith(("sses", "xes", "zes", "ches", "shes")):
            forms.append(last[:-2])
        elif last.endswith("ves"):
            forms += [last[:-1], last[:-3] + "fe", last[:-3] + "f"]
        elif last.endswith("s") and not last.endswith(("ss", "us", "is")) and len(last) > 2:
            forms.append(last[:-1])  # not 'canes' → 'can' (a cane)
        for w in forms:
            cand = f"{head} {w}" if head else w
            if cand and cand != text and cand not in out:
                out.append(cand)
    return out


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
