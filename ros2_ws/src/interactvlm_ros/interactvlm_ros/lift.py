"""2D → 3D lifting: per-view contact masks → per-vertex contact (spec 4.2, 4.3; FIXTURE.md §7).

The official predictors scatter-add every pixel of every view into per-vertex sums. Here the
pixel→vertex relation of one view is a precomputed sparse matrix ``W_v`` float32 [N, P_v] (entry =
barycentric weight of vertex j at foreground pixel i; repeated vertex ids of a pixel are summed,
exactly like ``scatter_add``), so lifting a view is one sparse product ``W_v @ X`` with
``X = [p·sel, sel]``. torch sparse CSR runs the same code on CPU and CUDA. Masks whose size differs
from the maps are resampled only at the foreground pixels through a second precomputed sparse
operator that reproduces ``F.interpolate(mode="bilinear", align_corners=False)`` exactly (4 taps per
pixel), instead of interpolating the full image.

Modes
-----
* ``human`` (``HumanContact3DPredictor`` at HEAD 79b4bf2): ``p = sigmoid(clamp(l, ±20))`` on pixels whose 3
  ids are in ``[0, N)``; ``s_v[j] = Σ w·p / Σ w``; a vertex is seen in a view iff ``Σ w > 0``;
  ``c = mean of s_v over seen views``, unseen 0, clamp [0, 1].
* ``object`` (``ObjectMeshContact3DPredictor``): ``p = sigmoid(l)`` (no clamp), only pixels with ``p > 0.3``
  contribute to both sums; the same per-view mean; no clamp; values are 0 or > 0.3.
* ``legacy_binary`` (HEAD~1 human predictor): pixels with raw logit > 0.3; ``acc[j] += w``,
  ``cnt[j] += 1`` over all views; output ``acc/cnt > 0.3`` as 0/1.

Optional, not official: ``fill_unseen_from=(vertices, faces)`` gives every vertex that no view sees at all
(no pixel of any view; 25 % of Anny's vertices at 512²: palms, armpits, inner thighs, soles) the value of its
nearest visible vertex along the mesh edges (scipy Dijkstra, computed once), instead of 0. The default model
uses it (``DefaultLocalizer.fill_unseen_vertices``); official checkpoints keep the official 0.

Optional, not official: :func:`merge_direct_contact` combines the lifted contact with a model's *direct*
per-vertex contact (the default model's vertex head, ``LocalizerOutput.human_vertex_contact``) by the model's rule:
a per-vertex maximum (v7: the masks are precise where the views see a patch, the head covers what they cannot draw —
hidden soles and palms, foot-sized patches a few mask pixels wide) or the direct contact alone (v8).

Hand-written because no library implements InteractVLM's aggregation rules; the heavy lifting is
torch's sparse matmul.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)

MODES = ("human", "object", "legacy_binary")
OBJECT_PROB_THRESHOLD = 0.3
LEGACY_LOGIT_THRESHOLD = 0.3


class LiftError(ValueError):
    """Bad lifting input (shape/view count/mode)."""


@dataclass
class CompactMaps:
    """Foreground-only pixel→(face, vertex ids, barycentrics) maps of V views of size H×W.

    ``offsets`` int64 [V+1] (view v owns rows ``offsets[v]:offsets[v+1]``), ``pix`` int64 [P] flat pixel
    index ``row·W + col`` inside its view (sorted), ``vid`` int32 [P,3], ``bary`` float32 [P,3],
    ``fid`` int32 [P] or None (face id). Background pixels (ids −1, bary −1) are not stored.
    """

    size: tuple[int, int]
    offsets: np.ndarray
    pix: np.ndarray
    vid: np.ndarray
    bary: np.ndarray
    fid: np.ndarray | None = None

    @property
    def num_views(self) -> int:
        return len(self.offsets) - 1

    def view(self, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = int(self.offsets[v]), int(self.offsets[v + 1])
        return self.pix[a:b], self.vid[a:b], self.bary[a:b]

    @classmethod
    def from_dense(cls, vertex_ids: np.ndarray, bary: np.ndarray, face_ids: np.ndarray | None = None) -> "CompactMaps":
        """vertex_ids int [V,H,W,3] (−1 bg), bary float [V,H,W,3] (−1 bg), face_ids int [V,H,W] (−1 bg) or None."""
        vertex_ids = np.asarray(vertex_ids)
        bary = np.asarray(bary)
        if vertex_ids.ndim != 4 or vertex_ids.shape[-1] != 3 or bary.shape != vertex_ids.shape:
            raise LiftError(f"maps must be vertex_ids/bary [V,H,W,3] of equal shape; got {vertex_ids.shape} / {bary.shape}")
        V, H, W, _ = vertex_ids.shape
        offsets, pix, vid, bc, fid = [0], [], [], [], []
        for v in range(V):
            ids_v = vertex_ids[v].reshape(-1, 3)
            b_v = bary[v].reshape(-1, 3)
            fg = np.flatnonzero((ids_v != -1).any(1) | (b_v != -1).any(1))
            pix.append(fg.astype(np.int64))
            vid.append(ids_v[fg].astype(np.int32))
            bc.append(b_v[fg].astype(np.float32))
            if face_ids is not None:
                fid.append(np.asarray(face_ids[v]).reshape(-1)[fg].astype(np.int32))
            offsets.append(offsets[-1] + len(fg))
        return cls((H, W), np.asarray(offsets, np.int64), np.concatenate(pix), np.concatenate(vid),
                   np.concatenate(bc), np.concatenate(fid) if face_ids is not None else None)

    def scatter_dense(self, values: np.ndarray, fill, dtype) -> np.ndarray:
        """Foreground rows ``values [P,...]`` (this map's pixel order) → dense ``[V,H,W,...]``, ``fill`` elsewhere."""
        H, W = self.size
        values = np.asarray(values)
        out = np.full((self.num_views, H * W) + values.shape[1:], fill, dtype)
        for v in range(self.num_views):
            a, b = int(self.offsets[v]), int(self.offsets[v + 1])
            out[v, self.pix[a:b]] = values[a:b]
        return out.reshape((self.num_views, H, W) + values.shape[1:])

    def paint(self, values: np.ndarray) -> np.ndarray:
        """Per-vertex ``values [N]`` drawn on the views: float32 ``[V,H,W]``, each foreground pixel the barycentric
        interpolation ``Σ bary·values[vid]`` over its triangle, background (and pixels naming a vertex outside
        ``[0, N)``) 0. The inverse direction of lifting: it shows on the renders what a per-vertex result says."""
        values = np.asarray(values, np.float32).reshape(-1)
        vid, bary = self.vid, self.bary
        if len(vid) and (vid.min() < 0 or vid.max() >= len(values)):  # rare: maps of another mesh / partial ids
            ok = ((vid >= 0) & (vid < len(values))).all(1, keepdims=True)
            vid, bary = np.where(ok, vid, 0), np.where(ok, bary, 0.0).astype(np.float32)
        return self.scatter_dense(np.einsum("ij,ij->i", values[vid], bary), 0.0, np.float32)

    def dense_vertex_ids(self) -> np.ndarray:
        """int64 [V,H,W,3], −1 background."""
        return self.scatter_dense(self.vid, -1, np.int64)

    def dense_bary(self) -> np.ndarray:
        """float32 [V,H,W,3], −1 background."""
        return self.scatter_dense(self.bary, -1.0, np.float32)

    def dense_face_ids(self) -> np.ndarray | None:
        """int64 [V,H,W], −1 background (None when face ids were not recorded)."""
        return None if self.fid is None else self.scatter_dense(self.fid, -1, np.int64)


def compact_maps_of(assets) -> tuple[CompactMaps, int]:
    """(CompactMaps, num_vertices) from a ``ViewAssets``, any object with ``vertex_ids``/``bary``/``num_vertices``
    (e.g. official loaders), a ``(vertex_ids, bary, num_vertices)`` tuple or a dict with those keys."""
    if isinstance(assets, tuple) and len(assets) == 3:
        vids, bary, n = assets
        return CompactMaps.from_dense(vids, bary), int(n)
    if isinstance(assets, dict):
        return CompactMaps.from_dense(assets["vertex_ids"], assets["bary"]), int(assets["num_vertices"])
    compact = getattr(assets, "compact", None)
    if isinstance(compact, CompactMaps):
        return compact, int(assets.num_vertices)
    for attr in ("vertex_ids", "bary", "num_vertices"):
        if not hasattr(assets, attr):
            raise LiftError(f"lifting needs view assets with vertex_ids, bary and num_vertices; "
                            f"{type(assets).__name__} has no '{attr}'")
    return CompactMaps.from_dense(assets.vertex_ids, assets.bary), int(assets.num_vertices)


def nearest_visible_index(visible: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """int64 [N]: each vertex's nearest ``visible`` vertex along the mesh edges (edge length = Euclidean); a
    visible vertex maps to itself, a vertex with no visible vertex in its connected component too."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    visible = np.asarray(visible, bool)
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    n = len(visible)
    if len(v) != n or (len(f) and (f.min() < 0 or f.max() >= n)):
        raise LiftError(f"fill_unseen_from: mesh with {len(v)} vertices / face ids up to {f.max() if len(f) else -1} "
                        f"does not match the {n} lifted vertices")
    idx = np.arange(n, dtype=np.int64)
    if visible.all() or not visible.any() or not len(f):
        return idx
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    w = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1) + 1e-12  # 0-length edges would read as "no edge"
    graph = coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    _, _, src = dijkstra(graph, directed=False, indices=np.flatnonzero(visible), min_only=True,
                         return_predecessors=True)
    reach = (src >= 0) & ~visible
    idx[reach] = src[reach]
    return idx


MERGE_RULES = ("max", "direct")


def merge_direct_contact(lifted, direct, rule: str = "max"):
    """Combine lifted contact [N] and direct per-vertex contact [N] (both in [0,1]) -> [N] float32.

    ``rule`` (the model's, ``LocalizerOutput.human_vertex_merge``): ``max`` = per-vertex max — v7, whose vertex head
    shared the masks' [SEG] token and each missed a different part of the body (head alone 0.463, max 0.462, mean
    0.423 on val); ``direct`` = the direct contact alone — v8, whose separately trained head beats the max of both
    (test F1 0.559 alone vs 0.527 with the masks' false positives, docs/default_model.md "v8"). The object side
    (``object_vertex_merge``, v9+) uses the same rules.
    Raises LiftError on a size mismatch or an unknown rule."""
    if rule not in MERGE_RULES:
        raise LiftError(f"unknown merge rule '{rule}'; use one of {MERGE_RULES}")
    a = np.asarray(lifted, np.float32)  # numpy or a CPU tensor
    b = np.asarray(direct, np.float32)
    if a.shape != b.shape:
        raise LiftError(f"direct per-vertex contact has shape {b.shape}, the lifted contact {a.shape}: "
                        "the model's template (or object mesh) and the assets' mesh differ")
    return np.maximum(a, b) if rule == "max" else b.copy()


def _bilinear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch bilinear, align_corners=False: per output index → (i0, i1, λ) with value = (1−λ)·x[i0] + λ·x[i1]."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    src = np.maximum(src, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    return i0, i1, lam


def _to_csr(indices: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """COO (duplicates summed) → CSR; torch's 'CSR is beta' notice is silenced (the API is stable enough here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(indices, values, shape, check_invariants=False).coalesce()
        return coo.to_sparse_csr()


class Lifter:
    """``Lifter(assets, mode="human"|"object"|"legacy_binary", device="cpu", fill_unseen_from=None)``;
    ``lifter(logits)`` with logits ``[V,H,W]`` (or batched ``[B,V,H,W]``), numpy or torch → contact ``[N]``
    (``[B,N]``) float32 of the same type (a torch result lives on the input's device).
    ``fill_unseen_from=(vertices [N,3], faces [F,3])``: vertices no view sees take their nearest visible
    vertex's value (module docstring; not official)."""

    def __init__(self, assets_or_maps, mode: str = "human", device: str | torch.device = "cpu",
                 fill_unseen_from: tuple | None = None):
        if mode not in MODES:
            raise LiftError(f"lifting mode {mode!r}: use one of {MODES}")
        self.mode = mode
        self.device = torch.device(device)
        maps, n = compact_maps_of(assets_or_maps)
        if n <= 0:
            raise LiftError(f"num_vertices must be positive, got {n}")
        self.num_vertices = n
        self.num_views = maps.num_views
        self.size = maps.size
        self._ops: list[torch.Tensor] = []  # W_v, sparse CSR [N, P_v]
        self._ones_ops: list[torch.Tensor] | None = None
        self._gather: list[torch.Tensor] = []  # flat pixel index of each operator column
        self._pix_np: list[np.ndarray] = []
        self._den: list[torch.Tensor] = []  # human: Σw per vertex per view
        self._resize_ops: dict[tuple[int, int], list[torch.Tensor]] = {}
        for v in range(maps.num_views):
            pix, vid, bary = maps.view(v)
            ok = ((vid >= 0) & (vid < n)).all(1)
            pix, vid, bary = pix[ok], vid[ok].astype(np.int64), bary[ok].astype(np.float32)
            self._pix_np.append(pix)
            self._ops.append(self._csr(vid, bary, len(pix)))
            self._gather.append(torch.as_tensor(pix, dtype=torch.int64, device=self.device))
        if mode == "human":
            for v in range(self.num_views):
                ones = torch.ones(self._ops[v].shape[1], 1, device=self.device)
                self._den.append((self._ops[v] @ ones)[:, 0])
        if mode == "legacy_binary":
            self._ones_ops = []
            for v in range(maps.num_views):
                pix, vid, _ = maps.view(v)
                ok = ((vid >= 0) & (vid < n)).all(1)
                vid = vid[ok].astype(np.int64)
                self._ones_ops.append(self._csr(vid, np.ones_like(vid, np.float32), len(vid)))
        self._fill_index = None  # [N] int64 gather index (None = official: unseen vertices stay 0)
        self.unseen_filled = 0
        if fill_unseen_from is not None:
            visible = self.views_per_vertex() > 0
            idx = nearest_visible_index(visible, *fill_unseen_from)
            self.unseen_filled = int((idx != np.arange(n)).sum())
            self._fill_index = torch.as_tensor(idx, device=self.device)

    # ------------------------------------------------------------------------------------------- set-up
    def _csr(self, vid: np.ndarray, weights: np.ndarray, num_pixels: int) -> torch.Tensor:
        rows = torch.as_tensor(vid.reshape(-1))
        cols = torch.arange(num_pixels, dtype=torch.int64).repeat_interleave(3)
        vals = torch.as_tensor(np.ascontiguousarray(weights.reshape(-1), np.float32))
        return _to_csr(torch.stack([rows, cols]), vals, (self.num_vertices, num_pixels)).to(self.device)

    def _resize_op(self, v: int, h: int, w: int) -> torch.Tensor:
        """Sparse [P_v, h·w]: bilinear (align_corners=False) samples of an h×w mask at view v's pixels."""
        key = (h, w)
        if key not in self._resize_ops:
            H, W = self.size
            ri0, ri1, rl = _bilinear_taps(H, h)
            ci0, ci1, cl = _bilinear_taps(W, w)
            ops = []
            for u in range(self.num_views):
                pix = self._pix_np[u]
                r, c = pix // W, pix % W
                rows, cols, vals = [], [], []
                for rr, wr in ((ri0[r], 1 - rl[r]), (ri1[r], rl[r])):
                    for cc, wc in ((ci0[c], 1 - cl[c]), (ci1[c], cl[c])):
                        rows.append(np.arange(len(pix)))
                        cols.append(rr * w + cc)
                        vals.append(wr * wc)
                idx = torch.as_tensor(np.stack([np.concatenate(rows), np.concatenate(cols)]))
                val = torch.as_tensor(np.concatenate(vals).astype(np.float32))
                ops.append(_to_csr(idx, val, (len(pix), h * w)).to(self.device))
            self._resize_ops[key] = ops
        return self._resize_ops[key][v]

    # ------------------------------------------------------------------------------------------- lifting
    def __call__(self, logits):
        """Lift; on CPU the work (≈0.3M foreground pixels, a few sparse mat-vecs: ~3.5 ms) runs on ONE intra-op
        thread: splitting such small kernels over threads costs far more in hand-off/spin than it saves, badly so
        on a loaded 2-core machine (measured 31–120 ms at 2 threads vs 3.5 ms at 1). Results are identical (the
        kernels are element-wise or per-row sequential)."""
        if self.device.type != "cpu" or torch.get_num_threads() == 1:
            return self._lift(logits)
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._lift(logits)
        finally:
            torch.set_num_threads(n)

    def _lift(self, logits):
        is_numpy = not isinstance(logits, torch.Tensor)
        if (np.asarray(logits).dtype == bool) if is_numpy else logits.dtype == torch.bool:
            raise LiftError("logits must be real-valued; got a bool mask (False would read as logit 0, p = 0.5 — "
                            "contact everywhere): lift a binary mask as np.where(mask, 20.0, -20.0)")
        x = torch.as_tensor(np.asarray(logits, np.float32)) if is_numpy else logits
        out_device = x.device
        if x.ndim == 3:
            x, batched = x[None], False
        elif x.ndim == 4:
            batched = True
        else:
            raise LiftError(f"logits must be [V,H,W] or [B,V,H,W]; got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_views:
            raise LiftError(f"logits have {x.shape[1]} views but the assets have {self.num_views} "
                            f"(order must be the view set's order)")
        x = x.to(device=self.device, dtype=torch.float32)
        B, V, h, w = x.shape
        if h < 1 or w < 1:  # the resize operator would index pixel −1 (heap corruption, the process aborts)
            raise LiftError(f"logits have an empty mask size {h}x{w}; masks must be at least 1x1")
        flat = x.reshape(B, V, h * w)
        need_resize = (h, w) != tuple(self.size)
        total = torch.zeros(self.num_vertices, B, device=self.device)
        count = torch.zeros(self.num_vertices, B, device=self.device)
        for v in range(V):
            if need_resize:
                lv = (self._resize_op(v, h, w) @ flat[:, v].T.contiguous())  # [P_v, B]
            else:
                lv = flat[:, v].index_select(1, self._gather[v]).T  # [P_v, B]
            if self.mode == "human":
                p = torch.sigmoid(lv.clamp(-20.0, 20.0))
                num = self._ops[v] @ p.contiguous()
                den = self._den[v][:, None]
                seen = (den > 0).expand_as(num)
                total += torch.where(seen, num / den.clamp_min(1e-30), torch.zeros_like(num))
                count += seen.float()
            elif self.mode == "object":
                p = torch.sigmoid(lv)
                sel = p > OBJECT_PROB_THRESHOLD
                x2 = torch.empty(p.shape[0], 2 * B, device=self.device)  # [p·sel, sel] without cat (2x faster)
                x2[:, :B] = p
                x2[:, :B].masked_fill_(~sel, 0.0)
                x2[:, B:] = sel
                nd = self._ops[v] @ x2
                num, den = nd[:, :B], nd[:, B:]
                seen = den > 0
                total += torch.where(seen, num / den.clamp_min(1e-30), torch.zeros_like(num))
                count += seen.float()
            else:  # legacy_binary: acc (Σw) and cnt over all views
                sel = (lv > LEGACY_LOGIT_THRESHOLD).float().contiguous()
                total += self._ops[v] @ sel
                count += self._ones_ops[v] @ sel
        if self.mode == "legacy_binary":
            out = torch.where(count > 0, total / count.clamp_min(1.0), torch.zeros_like(total))
            out = (out > LEGACY_LOGIT_THRESHOLD).float()
        else:
            out = torch.where(count > 0, total / count.clamp_min(1.0), torch.zeros_like(total))
            if self.mode == "human":
                out = out.clamp(0.0, 1.0)
        out = out.T  # [B, N]
        if self._fill_index is not None:
            out = out.index_select(1, self._fill_index)
        if not batched:
            out = out[0]
        if is_numpy:
            return out.cpu().numpy().astype(np.float32)
        return out.to(out_device)

    def views_per_vertex(self, logits=None) -> np.ndarray:
        """int [N]: number of views that give a vertex barycentric weight — with ``logits`` (object mode) only
        the selected (p > 0.3) pixels count, as in the official bookkeeping ``lift_views_per_vertex``."""
        counts = np.zeros(self.num_vertices, np.int64)
        for v in range(self.num_views):
            if logits is None:
                sel = torch.ones(self._ops[v].shape[1], 1, device=self.device)
            else:
                sel = (torch.sigmoid(self._pixel_logits(logits, v)) > OBJECT_PROB_THRESHOLD).float()[:, None]
            counts += ((self._ops[v] @ sel)[:, 0] > 0).cpu().numpy()
        return counts

    def selected_pixels_per_view(self, logits) -> np.ndarray:
        """int [V]: valid foreground pixels with sigmoid(logit) > 0.3 per view (official ``lift_selected_pixels_per_view``)."""
        out = []
        for v in range(self.num_views):
            out.append(int((torch.sigmoid(self._pixel_logits(logits, v)) > OBJECT_PROB_THRESHOLD).sum()))
        return np.asarray(out, np.int64)

    def _pixel_logits(self, logits, v: int) -> torch.Tensor:
        """View ``v`` of ``logits [V,h,w]`` at the view's foreground pixels [P_v] (on ``self.device``); a mask of
        another size than the maps is resampled like in ``__call__`` (bilinear, align_corners=False) — indexing it
        with the maps' pixel numbers raised IndexError (smaller) or read the wrong pixels (larger)."""
        if len(logits) != self.num_views:
            raise LiftError(f"logits have {len(logits)} views but the assets have {self.num_views}")
        x = logits[v].detach().float() if isinstance(logits[v], torch.Tensor) else torch.as_tensor(
            np.asarray(logits[v], np.float32))
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
            raise LiftError(f"logits must be [V,H,W] with H, W >= 1; got view {v} of shape {tuple(x.shape)}")
        x = x.to(self.device)
        h, w = x.shape
        if (h, w) == tuple(self.size):
            return x.reshape(-1).index_select(0, self._gather[v])
        return (self._resize_op(v, h, w) @ x.reshape(-1, 1))[:, 0]


def lift(logits, assets, mode: str = "human"):
    """One-shot convenience: ``Lifter(assets, mode)(logits)`` (build a ``Lifter`` once for repeated use)."""
    return Lifter(assets, mode=mode)(logits)
