"""ContactEstimator: the one object the CLI, the ROS node, the benchmarks and the evaluation use.

One frame::

    image (uint8 RGB HxWx3) ──> HumanPerception.observe (optional, mediapipe)   -> HumanObservation
                             ──> Localizer.predict(image, label, human_assets, object_assets, observation)
                                                                                 -> logits [V,H,W] per mesh
                             ──> Lifter (human: soft barycentric, object: votes) -> contact [N] per vertex
                             ──> Reconstructor.fit (optional)                    -> meshes in the camera frame

Static work (view renders + lifting maps of the body and of each object mesh, the lifters) is done
once and cached in memory (and on disk by ``assets``); ``estimate`` only runs the per-frame part.
The module imports no ROS and imports the other parts lazily, so a missing optional part raises a
clear error naming it instead of breaking ``import interactvlm_ros.pipeline``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .perception.text import names_nothing

LOG = logging.getLogger("interactvlm_ros.pipeline")

#: official overlay colour (run_demo.py): (255, 38, 25)
CONTACT_RGB = np.array([255, 38, 25], dtype=np.float32)


class PipelineError(RuntimeError):
    """The estimator cannot be built (missing part, bad model path, mismatched assets)."""


class Fallbacks(list):
    """The named fallbacks a part took, each once, in order: a list of strings (``fallbacks`` of the estimator, its
    localizer and its reconstructor). Bounded for a node fed many object labels over hours: of the fallbacks about one
    label (``note(..., label=True)``: unknown to the library or the model, its size) only the ``LABEL_KEPT`` most recent
    stay listed, the earlier ones are counted in one last entry ("… N earlier label fallbacks not listed"). The other
    fallbacks (intrinsics, perception, backend, assets ...) are of a few kinds and all stay."""

    LABEL_KEPT = 8

    def __init__(self, *args):
        super().__init__(*args)
        self._label_texts: list[str] = []  # the listed per-label entries, oldest first
        self._dropped = 0

    def note(self, text: str, label: bool = False) -> bool:
        """Add ``text`` unless it is listed; True when it was added (the caller logs it then)."""
        if text in self:
            return False
        if self._dropped:
            self.pop()  # the count entry, last
        self.append(text)
        if label:
            self._label_texts.append(text)
            if len(self._label_texts) > self.LABEL_KEPT:
                self.remove(self._label_texts.pop(0))
                self._dropped += 1
        if self._dropped:
            self.append(f"… {self._dropped} earlier label fallbacks not listed (each was logged when taken)")
        return True

    def clear(self) -> None:
        super().clear()
        self._label_texts.clear()
        self._dropped = 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float32), -20.0, 20.0)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _to_numpy(x):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


@dataclass
class ContactResult:
    """Per-frame result. Vertex arrays are canonical (template body, normalised object) — the object's of the mesh the
    pipeline used: a mesh of more than ``objects.PIPELINE_MAX_FACES`` faces is decimated (new vertices, new order; a
    named fallback), so object_contact is per vertex of ``object_vertices``, not of the file.

    human_contact [Nh] / object_contact [No]: per-vertex contact probability in [0, 1] (None when the
    model does not predict that side or the frame was not processed). human_masks / object_masks:
    per-view contact probabilities [V,h,w] (the localizer's masks). human_view_maps / object_view_maps: the renders'
    pixel→triangle maps (``lift.CompactMaps``, shared with the static assets) the overlay paints the per-vertex contact
    through. label_known: whether the label is known — the model's own judgement when it gives one
    (``extras["label_known"]``), else the object library's; library_known: whether the object library knows it (its
    own mesh, not the generic stand-in; True for a given mesh); object_source: ``library:<category>`` or the mesh
    path. The three are set for ``no_person`` results too. timings: milliseconds per stage. reconstruction: this frame's
    ``recon.Reconstruction`` (``reconstruct=True``); late_reconstruction: ``(frame_tag, Reconstruction)`` of an earlier
    frame whose background cold fit finished since the previous frame (``reconstruct_cold_start="background"``).
    cues: the inputs the localizer read besides the image, e.g. ``pose+hands+label+box+depth`` (the default model;
    "" when the localizer does not say). object_normalization: 4x4 similarity, ``object_vertices`` ← the object mesh
    file's own coordinates (``objects.normalize_mesh``: centred on the vertex mean of the mesh used, divided by its
    longest side), so that a reconstruction can give the pose of the file itself (``object_pose_mesh_file``).
    """

    status: str
    message: str = ""
    human_contact: np.ndarray | None = None
    object_contact: np.ndarray | None = None
    human_vertices: np.ndarray | None = None
    human_faces: np.ndarray | None = None
    object_vertices: np.ndarray | None = None
    object_faces: np.ndarray | None = None
    part_ids: np.ndarray | None = None
    part_names: list[str] | None = None
    human_masks: np.ndarray | None = None
    object_masks: np.ndarray | None = None
    human_renders: np.ndarray | None = None
    object_renders: np.ndarray | None = None
    human_view_maps: Any = None
    object_view_maps: Any = None
    object_label: str = ""
    label_known: bool = False
    library_known: bool = False
    object_source: str = ""
    model: str = ""
    backend: str = ""
    text: str | None = None
    observation: Any = None
    cues: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    reconstruction: Any = None
    late_reconstruction: Any = None
    object_normalization: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def contact_parts(self, threshold: float = 0.5) -> list[str]:
        """Names of body parts with at least one vertex at or above ``threshold``."""
        if self.human_contact is None or self.part_ids is None or not self.part_names:
            return []
        ids = np.unique(self.part_ids[self.human_contact >= threshold])
        return [self.part_names[int(i)] for i in ids if 0 <= int(i) < len(self.part_names)]

    def part_summary(self) -> dict[str, dict]:
        """{part: {"max", "mean", "vertices"}} of the human contact per body part, highest maximum first ({} without
        human contact or part ids)."""
        if self.human_contact is None or self.part_ids is None or not self.part_names:
            return {}
        n = len(self.part_names)
        ids = np.asarray(self.part_ids, np.int64)
        ok = (ids >= 0) & (ids < n)
        ids, c = ids[ok], np.asarray(self.human_contact, np.float64)[ok]
        # one pass over the vertices (the node calls this every frame), not one mask per part
        count = np.bincount(ids, minlength=n)
        total = np.bincount(ids, weights=c, minlength=n)
        best = np.full(n, -np.inf)
        np.maximum.at(best, ids, c)
        out = {self.part_names[i]: {"max": float(best[i]), "mean": float(total[i] / count[i]), "vertices": int(count[i])}
               for i in np.nonzero(count)[0]}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["max"]))

    def overlay(self, tile: int = 256, source: str = "contact") -> np.ndarray:
        """uint8 RGB image: row 1 = human views, row 2 = object views (when present), each render blended with the
        contact colour (255, 38, 25) with weight 0.6 * probability.

        ``source="contact"`` (default) paints the per-vertex contact this result publishes (``human_contact`` /
        ``object_contact``, interpolated over each render's triangles through its pixel→triangle maps), so the picture
        agrees with the markers, clouds and ``contacts.json`` — also for models whose per-vertex contact does not come
        from their masks (the default model's vertex heads). A side without per-vertex contact or maps falls back to
        its masks. ``source="masks"`` draws the localizer's raw per-view masks (the official demo's picture).
        Views without a render are drawn on white. Returns an [rows*tile, V*tile, 3] image.
        """
        import cv2

        if source not in ("contact", "masks"):
            raise ValueError(f"overlay source {source!r}: use 'contact' or 'masks'")
        rows = []
        for masks, renders, contact, maps in (
                (self.human_masks, self.human_renders, self.human_contact, self.human_view_maps),
                (self.object_masks, self.object_renders, self.object_contact, self.object_view_maps)):
            if source == "contact" and contact is not None and maps is not None and \
                    (renders is None or tuple(renders.shape[1:3]) == tuple(maps.size)):
                masks = maps.paint(contact)
            if masks is None:
                continue
            tiles = []
            for v in range(masks.shape[0]):
                base = (
                    cv2.resize(renders[v], (tile, tile), interpolation=cv2.INTER_AREA).astype(np.float32)
                    if renders is not None
                    else np.full((tile, tile, 3), 255.0, np.float32)
                )
                p = cv2.resize(masks[v].astype(np.float32), (tile, tile), interpolation=cv2.INTER_LINEAR)
                w = (0.6 * np.clip(p, 0.0, 1.0))[:, :, None]
                tiles.append((base * (1 - w) + CONTACT_RGB * w).astype(np.uint8))
            rows.append(np.concatenate(tiles, axis=1))
        if not rows:
            return np.full((tile, tile, 3), 255, np.uint8)
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        return np.concatenate(rows, axis=0)


@dataclass
class _ObjectState:
    key: tuple
    label: str
    known: bool
    source: str
    vertices: np.ndarray  # normalised
    faces: np.ndarray
    assets: Any
    lifter: Any
    normalization: np.ndarray | None = None  # 4x4: vertices ← the mesh file's own coordinates


class ContactEstimator:
    """Estimate human and object contact from one RGB image.

    Args:
        model: ``"default"`` (embedded model) or a path to a model (official InteractVLM HF folder, exported ONNX ...);
            passed to ``models.registry.load_localizer``.
        backend: ``auto|tensorrt|onnxruntime|torch``; device: ``cpu|cuda[:i]``.
        body: body model spec for the template mesh (``anny``, ``smplh:/path``, ``smplx:/path``).
        reconstruct: run the reconstructor (meshes in the camera frame) after contact. With
            ``perception_mode="video"`` a ``recon.Tracker`` warm-starts each frame from the previous frame's fit
            (cold again when the object, the image size or K change, or a fit degrades); ``reset_tracking()``.
        reconstruct_cold_start: ``inline`` (a cold fit runs inside ``estimate``, seconds on a CPU) or ``background``
            (video mode: it runs in a thread of its own while ``estimate`` goes on returning contact, with
            ``reconstruction.status == "cold_start_pending"``, until the next frame can warm-start from it; the node's
            default — contact keeps flowing while the person is first found). Photo mode fits every frame inline.
        assets: an official assets folder (``data/hcontact_vitruvian`` layout: pixel_to_vertex_map_1024.npz,
            bary_coords_map_1024.npz, body_render_norm_*.png) used instead of rendering ``body`` — needed by
            official checkpoints, which were trained on SMPL-H renders.
        asset_size: render/map resolution; default = the localizer's ``asset_size`` attribute, else 256.
        perception: ``auto`` (use mediapipe perception when importable and the localizer needs or accepts it),
            ``none``, or ``required``.
        perception_mode: ``photo`` (every image independent: CLI, tests) or ``video`` (a camera stream: mediapipe
            tracks the person and the hands between frames — faster; see ``perception.human``).
        hand_model: ``full`` or ``lite`` mediapipe hand landmarker (lite ≈ 3× faster, a little less precise).
        person_search_every: when Pose finds nobody in the full frame, look again in zoomed crops (a person who fills
            less of the frame; ``perception.human``): video mode at most every N frames while nobody is found, photo
            mode every frame; 0 = never.
        localizer: an already-built Localizer (then model/backend/device only label the result).

    ``estimate`` is thread-safe (one frame at a time). ``observe`` (human perception alone) may run in another
    thread while ``estimate`` works on the previous frame with that frame's observation (the node's
    perception/inference pipelining).
    """

    def __init__(
        self,
        model: str = "default",
        backend: str = "auto",
        device: str = "cpu",
        body: str = "anny",
        reconstruct: bool = False,
        assets: str | os.PathLike | None = None,
        asset_size: int | None = None,
        perception: str = "auto",
        localizer: Any = None,
        perception_mode: str = "photo",
        hand_model: str = "full",
        reconstruct_cold_start: str = "inline",
        person_search_every: int = 10,
    ):
        self.model_spec = str(model)
        self.device = device
        self.body_spec = body
        self.reconstruct = bool(reconstruct)
        if reconstruct_cold_start not in ("inline", "background"):
            raise PipelineError(f"reconstruct_cold_start='{reconstruct_cold_start}': use inline or background")
        self.fallbacks = Fallbacks()
        self._lock = threading.Lock()
        self._closed = False
        self._objects: dict[tuple, _ObjectState] = {}
        t0 = time.perf_counter()

        self._owns_localizer = localizer is None  # close() releases what the estimator built, not a given localizer
        if localizer is None:
            registry = _import("interactvlm_ros.models.registry", "the localizer registry")
            try:
                localizer = registry.load_localizer(self.model_spec, backend=backend, device=device)
            except PipelineError:
                raise
            except (OSError, ValueError, RuntimeError, ImportError) as exc:
                # a missing/unreadable model (LocalizerError, DefaultModelError), an unknown backend or device name
                # (ValueError), a backend/device that cannot run here (BackendUnavailableError): one named error
                what = str(exc) if self.model_spec in str(exc) else f"model '{model}': {exc}"
                raise PipelineError(f"{what} (backend '{backend}', device '{device}')") from exc
        self.localizer = localizer
        self.model_name = str(getattr(localizer, "name", self.model_spec))
        self.backend = str(getattr(localizer, "backend", backend))
        tasks = _tasks_of(localizer)
        self.predicts_object = bool(getattr(localizer, "predicts_object", tasks is None or bool(tasks & {"ocontact", "oafford"})))
        self.predicts_human = bool(getattr(localizer, "predicts_human", tasks is None or "hcontact" in tasks))
        size = asset_size or getattr(localizer, "asset_size", None) or (1024 if tasks is not None else None)
        if size is None:
            size = 256
            self._fallback(f"asset size: localizer '{self.model_name}' does not state asset_size; rendering at {size}")
        self.asset_size = int(size)

        # human side: official assets folder, or renders of the body model's template
        self.body = None
        self.human_vertices = self.human_faces = self.part_ids = None
        self.part_names: list[str] | None = None
        self.human_assets = self.human_lifter = None
        self.human_assets_source = None  # an object-only model (official oafford checkpoint) has no human side
        if self.predicts_human:
            self._init_human(assets)

        self.perception = None
        if perception_mode not in ("photo", "video"):
            raise PipelineError(f"perception_mode='{perception_mode}': use photo or video")
        if hand_model not in ("full", "lite"):
            raise PipelineError(f"hand_model='{hand_model}': use full or lite")
        self.perception_mode, self.hand_model = perception_mode, hand_model
        if isinstance(person_search_every, bool) or not isinstance(person_search_every, int) or person_search_every < 0:
            raise PipelineError(f"person_search_every={person_search_every!r}: use an integer ≥ 0 (0 = no zoomed search)")
        self.person_search_every = person_search_every
        self._init_perception(perception)
        self.reconstructor = None
        self.tracker = None  # video mode: each frame's fit starts from the previous frame's (recon.Tracker)
        if self.reconstruct:
            recon = _import("interactvlm_ros.recon", "the reconstructor")
            self.reconstructor = recon.Reconstructor()
            if perception_mode == "video":
                self.tracker = recon.Tracker(self.reconstructor, background=reconstruct_cold_start == "background")
        self.load_ms = 1e3 * (time.perf_counter() - t0)
        LOG.info(
            "ContactEstimator ready: model=%s backend=%s assets=%s perception=%s (%.0f ms)",
            self.model_name, self.backend, self.human_assets_source, type(self.perception).__name__ if self.perception else "none",
            self.load_ms,
        )

    # ---------------------------------------------------------------------------------- set-up
    def _fallback(self, text: str, label: bool = False) -> None:
        if self.fallbacks.note(text, label):
            LOG.warning("fallback: %s", text)

    def _init_human(self, assets_folder) -> None:
        assets_mod = _import("interactvlm_ros.assets", "view assets")
        lift = _import("interactvlm_ros.lift", "lifting")
        if assets_folder is not None:
            folder = Path(assets_folder).expanduser()
            if not folder.is_dir():
                raise PipelineError(f"assets folder '{folder}' does not exist; pass the official data/hcontact_vitruvian folder")
            self.human_assets = assets_mod.load_official_human_assets(folder)
            self.human_assets_source = str(folder)
        else:
            self.human_assets = None
            self.human_assets_source = f"rendered:{self.body_spec}"
        n_assets = int(self.human_assets.num_vertices) if self.human_assets is not None else None
        try:
            bodies = _import("interactvlm_ros.bodies", "body models")
            self.body = bodies.get_body_model(self.body_spec)
        except Exception as exc:
            if self.human_assets is None:
                raise PipelineError(f"body model '{self.body_spec}' cannot be built: {exc}") from exc
            self._fallback(f"body model '{self.body_spec}' unavailable ({exc}); no human mesh geometry")
        if self.body is not None and (n_assets is None or int(self.body.num_vertices) == n_assets):
            self.human_vertices = np.asarray(self.body.template_vertices, np.float32)
            self.human_faces = np.asarray(self.body.faces, np.int64)
            self.part_ids = np.asarray(self.body.part_labels)
            self.part_names = list(self.body.part_names)
        elif self.body is not None:
            self._fallback(
                f"body '{self.body_spec}' has {self.body.num_vertices} vertices but the assets have {n_assets}; "
                "no human mesh geometry (pass body=smplh:/path for official SMPL-H assets)"
            )
        if self.human_assets is None:
            with assets_mod.capture_fallbacks() as notes:  # the asset cache's (no cache folder, damaged entry)
                self.human_assets = assets_mod.human_assets(self.body, self.asset_size)
            for text in notes:  # logged by assets already
                self.fallbacks.note(text)
        fill = None
        if getattr(self.localizer, "fill_unseen_vertices", False) and self.human_faces is not None:
            fill = (self.human_vertices, self.human_faces)
        self.human_lifter = lift.Lifter(self.human_assets, mode="human", fill_unseen_from=fill)

    def _init_perception(self, mode: str) -> None:
        if mode not in ("auto", "none", "required"):
            raise PipelineError(f"perception='{mode}': use auto, none or required")
        wants = bool(getattr(self.localizer, "uses_observation", False))
        if mode == "none":
            if wants:
                self._fallback(f"perception='none' but localizer '{self.model_name}' needs a person's landmarks: it runs "
                               "its own (photo-mode) perception on every frame")
            return
        try:
            perc = _import("interactvlm_ros.perception.human", "human perception")
            self.perception = perc.HumanPerception(static_image_mode=self.perception_mode == "photo",
                                                   hand_model_complexity=1 if self.hand_model == "full" else 0,
                                                   person_search=self.person_search_every > 0,
                                                   person_search_every=max(1, self.person_search_every))
        except Exception as exc:
            if mode == "required" or wants:
                raise PipelineError(f"human perception is needed but unavailable: {exc}") from exc
            self._fallback(f"human perception unavailable ({exc}); every frame is assumed to show a person")

    def _object_state(self, label: str, mesh_path: str | None) -> _ObjectState | None:
        """Object mesh + assets + lifter for (label, mesh), cached; None when the model has no object side."""
        if not self.predicts_object:
            return None
        objects = _import("interactvlm_ros.objects", "object meshes")
        if mesh_path:
            p = Path(mesh_path)
            if not p.is_file():
                raise _BadInput(f"object_mesh '{mesh_path}' " + ("is a folder, not a mesh file" if p.is_dir() else
                                "does not exist") + "; give a mesh file trimesh can read")
            # a file replaced under the same name and time stamp (cp -p, rsync -t, an unpacked archive) changes inode,
            # size or ctime: the cached assets are then not of this file
            st = p.stat()
            key = ("mesh", str(p.resolve()), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)
        else:
            key = ("label", label.lower())
        state = self._objects.pop(key, None)
        if state is not None:  # back in as the most recently used (the cache evicts the least recently used)
            self._objects[key] = state
            return state
        known = True
        if mesh_path:  # a scan (0.5-2 M faces) is decimated to PIPELINE_MAX_FACES here, once: all below is of that mesh
            mesh = objects.load_mesh(mesh_path, max_faces=objects.PIPELINE_MAX_FACES)
            source = str(mesh_path)
            if mesh.info.get("decimated_to_faces"):
                self._fallback(f"object mesh {mesh_path}: {mesh.info['decimated_from_faces']} faces decimated to "
                               f"{mesh.info['decimated_to_faces']} (quadric decimation; objects.PIPELINE_MAX_FACES = "
                               f"{objects.PIPELINE_MAX_FACES}): the object contact and meshes are of the decimated "
                               "mesh", label=True)
        else:
            entry = objects.lookup_object(label)
            known = bool(getattr(entry, "known", True))
            if getattr(entry, "mesh_path", None) is None:
                raise _BadInput(f"object '{label}' is not in the object library and no object_mesh was given")
            mesh = objects.load_mesh(entry.mesh_path, max_faces=objects.PIPELINE_MAX_FACES)  # all well below it
            source = f"library:{getattr(entry, 'canonical', label)}"
            if not known:
                self._fallback(f"object label '{label}' unknown to the library; using its stand-in mesh "
                               f"{entry.mesh_path}", label=True)
        assets_mod = _import("interactvlm_ros.assets", "view assets")
        lift = _import("interactvlm_ros.lift", "lifting")
        with assets_mod.capture_fallbacks() as notes:
            assets = assets_mod.object_assets(mesh, self.asset_size)
        for text in notes:  # logged by assets already
            self.fallbacks.note(text)
        raw = np.asarray(mesh.vertices, np.float32)
        verts = np.asarray(objects.normalize_mesh(raw), np.float32)
        centre, ext = objects.normalization(raw)  # verts ← the file's coordinates (Reconstruction.object_pose_mesh_file)
        normalization = objects.similarity(1.0 / ext, centre)
        if getattr(assets, "vertices", None) is None:  # the default model paints its view input from them
            try:
                assets.vertices = verts
            except AttributeError:
                pass
        faces = np.asarray(mesh.faces, np.int64)
        # labels of one mesh ('cup', 'mug', 'the mug' ...) share its assets and lifter (≈ 35 MB at 512², 130 MB at 1024²)
        twin = next((s for s in self._objects.values() if getattr(assets, "key", None) is not None
                     and getattr(s.assets, "key", None) == assets.key), None)
        if twin is not None:
            state = _ObjectState(key, label, known, source, twin.vertices, twin.faces, twin.assets, twin.lifter,
                                 normalization)
        else:
            fill = (verts, faces) if getattr(self.localizer, "fill_unseen_vertices", False) else None
            state = _ObjectState(key, label, known, source, verts, faces, assets,
                                 lift.Lifter(assets, mode="object", fill_unseen_from=fill), normalization)
        if len(self._objects) >= 16:  # bounded: a long-running node cycling through meshes; least recently used out
            self._objects.pop(next(iter(self._objects)))
        self._objects[key] = state
        return state

    def reset_tracking(self) -> None:
        """Forget the previous frame's reconstruction (video mode): the next fit is cold. A fit running meanwhile — a
        background cold fit, or one inside ``estimate`` in another thread (an inline cold fit takes seconds) — is
        cancelled at its next iteration (that frame's reconstruction: ``cancelled``), so this returns within ms."""
        if self.tracker is not None:
            self.tracker.request_cancel()  # outside the lock: estimate() holds it for the whole fit
        with self._lock:
            if self.tracker is not None:
                self.tracker.reset(cancelled=True)

    def prepare(self, object_label: str, object_mesh: str | None = None) -> None:
        """Build (and cache) the object's assets now — and, when the localizer has a ``prepare`` (the default model),
        what it computes on first use: the label's text embedding, the render embeddings — e.g. at start-up or when
        the node's label changes, so that the next frame does not pay seconds for them."""
        with self._lock:
            self._check_open()
            state = self._object_state(object_label, object_mesh)
            warm = getattr(self.localizer, "prepare", None)
            if warm is not None:
                warm(object_label, self.human_assets, state.assets if state is not None else None)

    # ------------------------------------------------------------------------------- per frame
    def estimate(self, image_rgb, object_label: str, object_mesh: str | None = None, depth=None, K=None,
                 observation=None, frame_tag=None, object_mask=None, object_box=None) -> ContactResult:
        """Contact for one image. Never raises for bad input: returns status ``bad_input`` with a message
        (``no_person``: nobody in the image; ``model_error``: the localizer's output had NaN/inf — no contact); raises
        ``PipelineError`` after :meth:`close`.

        ``depth``: [H,W] registered to the image, float metres or 16/32-bit integer millimetres (ROS 16UC1), 0/NaN: no
        reading (8-bit or bool, or another size than the image: ``bad_input``). ``K``: 3x3 intrinsics, for the reconstruction.

        ``observation``: this image's human perception from :meth:`observe` (then perception is not run
        again; its time is reported as ``timings['perception']``). ``object_mask``: [H,W] bool (nonzero = object)
        for the reconstruction's silhouette term, e.g. from a segmentation node (None: estimated near the contact;
        an empty mask: ``object_not_visible``). ``object_box``: (x0, y0, x1, y1) pixels, a detector's box around the
        object, for the reconstruction when there is no ``object_mask`` (``Reconstructor.fit``). A localizer with
        ``uses_cues`` (the default model) also reads the box (else the mask's box) and ``depth`` as input cues
        (``ContactResult.cues``). ``frame_tag``:
        anything naming this frame (the node: its header), returned with its reconstruction when a background cold fit
        of it finishes later (``ContactResult.late_reconstruction``)."""
        with self._lock:
            self._check_open()
            res = self._estimate(image_rgb, object_label, object_mesh, depth, K, observation, frame_tag, object_mask,
                                 object_box)
            if self.tracker is not None:  # any frame (with a person or not) hands over a finished background fit
                res.late_reconstruction = self.tracker.take_completed()
            return res

    def all_fallbacks(self) -> list[str]:
        """Every named fallback taken so far, in order, without repeats: this estimator's, its localizer's and its
        reconstructor's. The last two also take fallbacks while running (an unknown label → the generic-object
        input; no intrinsics → default ones; an unknown object size), which ``fallbacks`` alone does not hold."""
        parts = [list(getattr(p, "fallbacks", None) or []) for p in (self.localizer, self.reconstructor)]  # copies:
        return list(dict.fromkeys([*self.fallbacks, *parts[0], *parts[1]]))  # the cold-fit thread may append

    def close(self) -> None:
        """Stop background work (a running background cold fit is cancelled at its next iteration) and release human
        perception (mediapipe's graphs are not freed with the estimator: ≈ 300 MB and 10 threads each). A second call
        does nothing; ``estimate`` / ``observe`` / ``prepare`` afterwards raise ``PipelineError``. ``with
        ContactEstimator(...) as est:`` closes it on leaving the block."""
        if self._closed:
            return
        self._closed = True
        if self.tracker is not None:
            self.tracker.close()
        elif self.reconstructor is not None:
            self.reconstructor.cancel.set()
        if self.perception is not None:
            self.perception.close()
        release = getattr(self.localizer, "close", None) if self._owns_localizer else None
        if release is not None:  # e.g. the default model's own perception (perception='none')
            release()

    def __enter__(self) -> "ContactEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:  # was "HumanPerception.observe after close()", or a frame that rebuilt the closed perception
            raise PipelineError("ContactEstimator used after close(); build a new one")

    def observe(self, image_rgb):
        """Human perception of one image (thread-safe; may overlap ``estimate`` of an earlier frame).
        None when this estimator has no perception (official checkpoints); raises ``PipelineError`` for an
        image ``estimate`` would reject."""
        self._check_open()
        if self.perception is None:
            return None
        err = _check_image(image_rgb, getattr(self.perception, "min_side", 8))
        if err:
            raise PipelineError(err)
        return self.perception.observe(image_rgb)

    def _result(self, status: str, message: str, label: str = "", **kw) -> ContactResult:
        return ContactResult(status=status, message=message, object_label=label, model=self.model_name,
                             backend=self.backend, **kw)

    def _estimate(self, image, label, mesh_path, depth, K, observation=None, frame_tag=None,
                  object_mask=None, object_box=None) -> ContactResult:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        err = _check_image(image, getattr(self.perception, "min_side", 8))  # mediapipe: 16
        if err:
            return self._result("bad_input", err, str(label))
        if not isinstance(label, str) or not label.strip():
            return self._result("bad_input", "object_label must be a non-empty string", "")
        label = label.strip()
        # before the library lookup (it listed the stand-in mesh); NFKC as the text encoder reads it: full-width '！！'
        # and '…' are marks too (every frame was the model's bad_input after the library fallback)
        if names_nothing(label):
            return self._result("bad_input", f"object_label {label!r} names nothing (only marks such as '_', '-', "
                                "'!'); give the object's name, e.g. 'cup'", label)  # as a fallback of a frame not run
        if K is not None:
            try:  # a string or a ragged list raised a bare ValueError out of estimate()
                K = np.asarray(K, dtype=np.float64)
            except (TypeError, ValueError):
                K = np.full(1, np.nan)
            if K.shape != (3, 3) or not np.all(np.isfinite(K)):
                return self._result("bad_input", "K must be a finite 3x3 intrinsics matrix", label)
        if depth is not None:
            d = np.asarray(depth)
            if d.dtype.kind == "b" or (d.dtype.kind in "iu" and d.dtype.itemsize == 1):
                return self._result("bad_input", f"depth is {d.dtype} (a mask or a depth visualisation?); give float "
                                    "metres or 16-bit millimetres", label)
            try:
                # integer depth is millimetres, as everywhere in the package (ROS 16UC1: the node, recon.load_depth);
                # read as metres it was 1000x too far (the depth cue silently clipped at 10 m, the fit bad_depth)
                depth = d.astype(np.float32) * np.float32(0.001) if d.dtype.kind in "iu" else d.astype(np.float32)
            except (TypeError, ValueError):
                return self._result("bad_input", "depth must be a numeric HxW array of metres", label)
            if depth.ndim != 2:
                return self._result("bad_input", f"depth must be HxW, got shape {depth.shape}", label)
            if depth.shape != image.shape[:2]:  # was silently left out of the model's cues
                return self._result("bad_input", f"depth is {depth.shape[1]}x{depth.shape[0]} but the image is "
                                    f"{image.shape[1]}x{image.shape[0]}; register depth to the colour camera first",
                                    label)
        if object_box is not None:
            try:  # not numbers at all: a caller's bug, not a detector's odd box (those are left out, a named fallback)
                np.asarray(object_box, np.float64)
            except (TypeError, ValueError):
                return self._result("bad_input", f"object_box {object_box!r} is not numeric; give x0, y0, x1, y1 in "
                                    "pixels", label)
        if observation is not None and not hasattr(observation, "keypoints_2d"):  # read as "nobody" before
            return self._result("bad_input", f"observation is a {type(observation).__name__}; pass the "
                                "HumanObservation observe() returned (or None: perception runs here)", label)
        if object_mask is not None:
            m = np.asarray(object_mask)
            if m.dtype.kind == "f" and not np.isfinite(m).all():  # NaN != 0: the whole image counted as object
                return self._result("bad_input", "object_mask contains NaN/inf; pass a bool or 0/1 (0/255) mask", label)
            object_mask = m != 0
            if object_mask.shape != image.shape[:2]:
                return self._result("bad_input", f"object_mask must be HxW like the image {image.shape[:2]}, got shape "
                                    f"{object_mask.shape}", label)

        t = time.perf_counter()
        try:
            obj = self._object_state(label, mesh_path)
        except _BadInput as exc:
            return self._result("bad_input", str(exc), label)
        except Exception as exc:  # MeshError and friends: named, not fatal for the node
            return self._result("bad_input", f"object mesh for '{label}': {exc}", label)
        timings["object_assets"] = 1e3 * (time.perf_counter() - t)

        if self.perception is None:
            observation = None
        elif observation is not None:  # from observe(), possibly on another thread
            # 0 when the caller's observation carries no timing (NaN was a non-JSON token in contacts.json)
            timings["perception"] = float((getattr(observation, "timings", None) or {}).get("total_ms", 0.0))
        else:
            t = time.perf_counter()
            observation = self.perception.observe(image)
            timings["perception"] = 1e3 * (time.perf_counter() - t)
        if self.perception is not None:
            if not getattr(observation, "found", True):
                res = self._result("no_person", "no person found in the image", label, observation=observation,
                                   timings=timings, **_label_fields(obj))
                res.timings["total"] = 1e3 * (time.perf_counter() - t_start)
                return res

        t = time.perf_counter()
        # the default model also reads the optional object box / mask and depth (trained with them as optional cues)
        cues = {"object_box": object_box, "object_mask": object_mask, "depth": depth} \
            if getattr(self.localizer, "uses_cues", False) else {}
        try:
            out = self.localizer.predict(
                image,
                label,
                self.human_assets,
                obj.assets if obj is not None else None,
                observation=observation,
                **cues,
            )
        except Exception as exc:
            if type(exc).__name__ == "LocalizerError":  # bad input as judged by the model (label, image)
                return self._result("bad_input", f"localizer: {exc}", label)
            raise
        timings["localize"] = 1e3 * (time.perf_counter() - t)
        for k, v in (getattr(out, "timings", None) or {}).items():
            timings[f"localize/{k}"] = float(v)
        extras = getattr(out, "extras", None) or {}
        if extras.get("status") == "no_person":
            res = self._result("no_person", str(out.text or "no person found in the image"), label,
                               observation=observation, timings=timings, **_label_fields(obj, extras))
            res.timings["total"] = 1e3 * (time.perf_counter() - t_start)
            return res

        t = time.perf_counter()
        human_logits = _to_numpy(out.human_logits)
        object_logits = _to_numpy(out.object_logits)
        human_direct = _to_numpy(getattr(out, "human_vertex_contact", None))  # vertex heads: on the CPU once
        object_direct = _to_numpy(getattr(out, "object_vertex_contact", None))
        broken = _non_finite_outputs(human_logits=human_logits, object_logits=object_logits,
                                     human_vertex_contact=human_direct, object_vertex_contact=object_direct)
        if broken:  # lifted, NaN became NaN contact (or silently none) on an "ok" frame
            self._fallback("localizer output with NaN/inf: such frames are 'model_error' (no contact); an fp16/int8 "
                           "engine overflowing (try precision fp32) or damaged weights")
            res = self._result("model_error", f"the localizer's output is not finite ({broken}): frame not used",
                               label, observation=observation, timings=timings, **_label_fields(obj, extras))
            res.timings["total"] = 1e3 * (time.perf_counter() - t_start)
            return res
        human_contact = object_contact = None
        if human_logits is not None and self.human_lifter is not None:
            human_contact = self._merged_contact(
                self.human_lifter, human_logits, human_direct,
                getattr(out, "human_vertex_merge", "max"), "human")
        if object_logits is not None and obj is not None:
            object_contact = self._merged_contact(
                obj.lifter, object_logits, object_direct,
                getattr(out, "object_vertex_merge", "max"), "object")
        timings["lift"] = 1e3 * (time.perf_counter() - t)

        said = (getattr(out, "text", None) or "").strip()
        missing = [side for side, logits, wanted in (("human", human_logits, self.human_lifter is not None),
                                                      ("object", object_logits, obj is not None))
                   if wanted and logits is None]
        if human_logits is None and object_logits is None:
            message = f"model gave no mask ({said!r})"
        elif missing:  # a joint model that lost one task's [SEG] token: that side's contact is not estimated
            message = f"model gave no {missing[0]} mask ({said!r}): {missing[0]} contact not estimated"
        else:
            message = ""
        if missing:
            self._fallback(f"localizer: the model gave no {' or '.join(missing)} mask on a frame (no segmentation "
                           "token generated): such frames have no contact on that side")
        res = self._result(
            "ok", message, label,
            human_contact=human_contact,
            object_contact=object_contact,
            # copies (≈ 0.1 ms): the estimator's arrays, human_vertices the process-wide body template itself, are
            # shared by every frame and every ContactEstimator; a caller moving one result's mesh in place
            # (res.human_vertices += t) moved them all. Read-only views would refuse that but also every C extension
            # that wants writable arrays (fast_simplification refused the node's display mesh)
            human_vertices=_own(self.human_vertices),
            human_faces=_own(self.human_faces),
            part_ids=_own(self.part_ids),
            part_names=list(self.part_names) if self.part_names is not None else None,
            object_vertices=_own(obj.vertices) if obj is not None else None,
            object_faces=_own(obj.faces) if obj is not None else None,
            object_normalization=_own(obj.normalization) if obj is not None else None,
            human_masks=_sigmoid(human_logits) if human_logits is not None else None,
            object_masks=_sigmoid(object_logits) if object_logits is not None else None,
            human_renders=_read_only(getattr(self.human_assets, "renders", None)),  # the cached assets' (12 MB)
            object_renders=_read_only(getattr(obj.assets, "renders", None)) if obj is not None else None,
            human_view_maps=getattr(self.human_assets, "compact", None),
            object_view_maps=getattr(obj.assets, "compact", None) if obj is not None else None,
            **_label_fields(obj, extras),
            text=getattr(out, "text", None),
            observation=observation,
            cues=str(extras.get("cues", "")),
            timings=timings,
        )
        if extras.get("cue_problem"):
            self._fallback(f"localizer cues: {extras['cue_problem']}")
        if self.reconstructor is not None:
            t = time.perf_counter()
            try:
                if self.tracker is not None:
                    # a warm start needs the same object mesh and camera (the tracker starts a new track when this key
                    # changes; the object cache key names the mesh without hashing it every frame)
                    key = (obj.key if obj is not None else None, image.shape[:2],
                           None if K is None else tuple(np.round(K, 6).ravel()))
                    res.reconstruction = self.tracker.update(image, observation, res, depth=depth, K=K,
                                                             object_mask=object_mask, object_box=object_box,
                                                             tag=frame_tag, track_key=key)
                else:
                    res.reconstruction = self.reconstructor.fit(image, observation, res, depth=depth, K=K,
                                                                object_mask=object_mask, object_box=object_box)
            except Exception as exc:  # reconstruction failing must not lose the contact result
                from interactvlm_ros.recon.reconstructor import Reconstruction

                if self.tracker is not None:
                    self.tracker.reset()
                res.message = f"reconstruction failed: {type(exc).__name__}: {exc}"
                res.reconstruction = Reconstruction("failed", res.message, metrics={"warm_start": False})
                LOG.warning("%s", res.message, exc_info=True)
            timings["reconstruct"] = 1e3 * (time.perf_counter() - t)
        timings["total"] = 1e3 * (time.perf_counter() - t_start)
        return res

    def _merged_contact(self, lifter, logits, direct, rule: str, side: str) -> np.ndarray:
        """Per-vertex contact of one side: the lifted masks, combined with the model's own per-vertex contact
        ``direct`` (vertex heads, numpy) by ``rule`` (lift.merge_direct_contact). Under "direct" the masks are not lifted at all
        (their contact would be discarded); a direct contact of the wrong length is a named fallback to the masks."""
        if direct is not None and rule == "direct" and np.shape(direct) == (lifter.num_vertices,):
            return np.asarray(direct, np.float32)
        contact = np.asarray(_to_numpy(lifter(logits.astype(np.float32))), np.float32)
        if direct is not None:
            lift = _import("interactvlm_ros.lift", "lifting")
            try:
                contact = lift.merge_direct_contact(contact, direct, rule)
            except lift.LiftError as exc:
                self._fallback(f"direct per-vertex contact not used ({side}): {exc}")
        return contact


def _non_finite_outputs(**arrays) -> str:
    """"" when every given array is finite, else what is not, e.g. ``human_logits 1024/1024 values NaN/inf``."""
    bad = []
    for name, a in arrays.items():
        if a is None or not np.issubdtype(np.asarray(a).dtype, np.floating):
            continue
        n = int((~np.isfinite(a)).sum())
        if n:
            bad.append(f"{name} {n}/{np.asarray(a).size} values NaN/inf")
    return ", ".join(bad)


def _tasks_of(localizer) -> set[str] | None:
    """Tasks of an official MV-Loc checkpoint (its config's ``tasks()``), None for other localizers."""
    cfg = getattr(localizer, "cfg", None)
    try:
        return set(cfg.tasks()) if cfg is not None and hasattr(cfg, "tasks") else None
    except Exception:
        return None


class _BadInput(ValueError):
    pass


def _own(a):
    """A result's own copy of an array the estimator keeps for later frames (None stays None)."""
    return None if a is None else np.array(a, copy=True)


def _read_only(a):
    """A read-only view of a cached array too large to copy every frame (the renders, 12 MB): drawing into a
    result's renders changed the cached view assets of every later frame. Writing now raises; copy first."""
    if a is None or not isinstance(a, np.ndarray):
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def _label_fields(obj: _ObjectState | None, extras: dict | None = None) -> dict:
    """label_known (the model's judgement in ``extras`` when it gives one, else the library's), library_known (the
    object library's own) and object_source of a result."""
    library_known = bool(obj.known) if obj is not None else False
    return {"label_known": bool((extras or {}).get("label_known", library_known)), "library_known": library_known,
            "object_source": obj.source if obj is not None else ""}


def _check_image(image, min_side: int = 8) -> str:
    if not isinstance(image, np.ndarray):
        return f"image must be a numpy array, got {type(image).__name__}"
    if image.ndim != 3 or image.shape[2] != 3:
        return f"image must be HxWx3 RGB, got shape {image.shape}"
    if image.dtype != np.uint8:
        return f"image must be uint8, got {image.dtype}"
    if image.shape[0] < min_side or image.shape[1] < min_side:
        return f"image is {image.shape[1]}x{image.shape[0]}; at least {min_side}x{min_side} is needed"
    return ""


def _import(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineError(f"{what} is not available: cannot import {module} ({exc})") from exc
