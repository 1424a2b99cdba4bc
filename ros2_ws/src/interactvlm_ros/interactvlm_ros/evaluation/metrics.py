"""DAMON-style contact metrics (spec 6.3), in their *intended* form (the official argument swap of the
geodesic metric and the soft-prediction precision quirk are not reproduced; see docs/default_model.md).

- human / object per-sample: P̂ = pred ≥ 0.5, G = gt > 0; precision = TP/(|P̂|+1e-10), recall = TP/(|G|+1e-10),
  F1 = 2PR/(P+R+1e-10).
- geodesic (human): mean over predicted contact vertices of the geodesic distance to the nearest GT
  contact vertex (the official FP error); if no vertex is predicted, all vertices are used; if the GT is
  empty, the error is 0. Distances along mesh edges (scipy multi-source Dijkstra), so no N×N matrix; each extra
  connected component (Anny's mouth interior, eyes) is joined to the largest by its nearest vertex pair.
- object: SIM = Σ min(g/Σg, p/Σp); AUC = ROC-AUC(GT ≥ 0.5, pred) (samples with one GT class skipped).
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np

from ..paths import cache_dir

log = logging.getLogger(__name__)
EPS = 1e-10


def prf(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float]:
    """(precision, recall, F1) for one sample. pred, gt [N]."""
    p = np.asarray(pred) >= threshold
    g = np.asarray(gt) > 0
    tp = float((p & g).sum())
    prec = tp / (p.sum() + EPS)
    rec = tp / (g.sum() + EPS)
    return prec, rec, 2 * prec * rec / (prec + rec + EPS)


def sim(pred: np.ndarray, gt: np.ndarray) -> float:
    p = np.asarray(pred, np.float64)
    g = np.asarray(gt, np.float64)
    return float(np.minimum(g / (g.sum() + 1e-12), p / (p.sum() + 1e-12)).sum())


def auc(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """ROC-AUC of ``pred`` for binary GT (≥ 0.5), via the Mann-Whitney U statistic with average ranks for ties
    (equal to sklearn's ``roc_auc_score``; scipy instead of a scikit-learn dependency). None if GT is one class."""
    from scipy.stats import rankdata

    g = np.asarray(gt) >= 0.5
    n_pos, n_neg = int(g.sum()), int((~g).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(pred, np.float64))
    return float((ranks[g].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class GeodesicMesh:
    """Edge graph of a mesh (sparse, edge lengths in metres), cached on disk by mesh hash.

    ``distance_to(sources)`` -> [N] geodesic (edge-path) distance of every vertex to the nearest source."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, cache: bool = True):
        import scipy.sparse as sp

        v = np.asarray(vertices, np.float64)
        f = np.asarray(faces, np.int64)
        key = hashlib.sha1(v.astype(np.float32).tobytes() + f.tobytes()).hexdigest()[:16]
        path = None
        if cache:  # cache=False never needs a cache folder; an unusable one (read-only home) is a named fallback
            try:
                path = cache_dir("geodesic") / f"graph_bridged_{key}.npz"  # not graph_*: those lacked the bridges
            except OSError as exc:
                log.warning("fallback: geodesic graph cache unavailable (%s); building the graph without it", exc)
        if path is not None and path.is_file():
            self.graph = sp.load_npz(path).tocsr()
        else:
            e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
            e = np.unique(np.sort(e, axis=1), axis=0)
            w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
            n = len(v)
            e, w = _bridge_components(v, e, w)
            g = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([e[:, 0], e[:, 1]]),
                                                         np.concatenate([e[:, 1], e[:, 0]]))), shape=(n, n))
            self.graph = g.tocsr()
            if path is not None:
                try:
                    sp.save_npz(path, self.graph)
                except OSError as exc:  # a read-only cache folder, disk full: the graph is built, only not kept
                    log.warning("fallback: geodesic graph not cached (%s); set INTERACTVLM_CACHE_DIR to a writable "
                                "folder", exc)
        self.num_vertices = self.graph.shape[0]

    def distance_to(self, sources: np.ndarray) -> np.ndarray:
        from scipy.sparse.csgraph import dijkstra

        src = np.nonzero(np.asarray(sources))[0] if np.asarray(sources).dtype == bool else np.asarray(sources)
        if len(src) == 0:
            return np.zeros(self.num_vertices)
        d = dijkstra(self.graph, directed=False, indices=src, min_only=True)
        # unreachable (only for a graph given from outside: the built one is bridged) -> the largest finite distance
        finite = np.isfinite(d)
        if not finite.all():
            d[~finite] = d[finite].max() if finite.any() else 0.0
        return d

    def error_cm(self, pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> float:
        """Mean geodesic distance (cm) from predicted contact vertices to the nearest GT contact vertex."""
        g = np.asarray(gt) > 0
        if not g.any():
            return 0.0
        p = np.asarray(pred) >= threshold
        rows = p if p.any() else np.ones_like(p)
        return float(self.distance_to(g)[rows].mean() * 100.0)


def _bridge_components(v: np.ndarray, e: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``e`` [E,2] / lengths ``w`` [E] plus one bridge per extra connected component: the shortest
    (Euclidean) vertex pair between that component and the largest one. Anny's mouth interior and eyes are separate
    components; unbridged, a contact vertex there was unreachable and read as the farthest body vertex (~2 m)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(v)
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    k, lab = connected_components(adj, directed=False)
    if k < 2:
        return e, w
    main = int(np.argmax(np.bincount(lab)))
    main_idx = np.nonzero(lab == main)[0]
    tree = cKDTree(v[main_idx])
    bridges = []
    for c in range(k):
        if c == main:
            continue
        idx = np.nonzero(lab == c)[0]
        d, j = tree.query(v[idx])
        i = int(np.argmin(d))
        bridges.append((idx[i], main_idx[j[i]], d[i]))
    b = np.asarray(bridges)
    return np.concatenate([e, b[:, :2].astype(np.int64)]), np.concatenate([w, b[:, 2]])


def bootstrap_ci(values, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` [n] (``scipy.stats.bootstrap``, resampling samples
    with replacement; seeded, so the same values give the same interval). None for fewer than two values."""
    from scipy.stats import bootstrap

    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return None
    ci = bootstrap((v,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                   random_state=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def summarize(rows: list[dict], keys: list[str], ci_keys: tuple[str, ...] = ()) -> dict:
    """Mean of each key over rows (ignoring None); for each of ``ci_keys`` also ``<key>_ci95`` = [lo, hi], the
    95 % bootstrap interval of that mean over samples (how much a split of this size can move it)."""
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
        if k in ci_keys:
            ci = bootstrap_ci(vals)
            out[f"{k}_ci95"] = None if ci is None else list(ci)
    out["n"] = len(rows)
    return out
