"""HumanPerception (mediapipe, offline) on the real photos in tests/data."""
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mediapipe")
from interactvlm_ros.perception.human import HumanPerception, as_rgb_uint8  # noqa: E402

BALL_CENTRE = np.array([150.0, 120.0])  # basketball in person_catching_ball.png (640x480), by inspection


@pytest.fixture(scope="module")
def hp():
    with HumanPerception() as p:
        yield p


def _load(test_data, name):
    return np.array(Image.open(test_data / name))


def test_catching_person_found_with_hands_at_the_ball(hp, test_data):
    img = _load(test_data, "person_catching_ball.png")  # grey 640x480
    assert img.ndim == 2
    obs = hp.observe(img)
    assert obs.found and obs.image_size == (480, 640)
    assert obs.keypoints_2d.shape == (33, 3) and obs.keypoints_3d.shape == (33, 3)
    # the catching man (left), not the man on the right: nose and hips in the left third
    assert obs.keypoints_2d[0, 0] < 220 and obs.keypoints_2d[[23, 24], 0].max() < 220
    wrists = obs.wrists_2d
    assert (wrists[:, 2] > 0.5).all()
    assert np.linalg.norm(wrists[:, :2] - BALL_CENTRE, axis=1).max() < 80  # both wrists at the ball
    assert obs.hand_found.any()
    for side in np.nonzero(obs.hand_found)[0]:
        assert np.linalg.norm(obs.hands_2d[side, 0, :2] - BALL_CENTRE) < 80
    assert obs.mask is not None and obs.mask.shape == (480, 640)
    x, y = wrists[1, :2].astype(int)
    assert obs.mask[y - 10:y + 10, x - 10:x + 10].any()
    x0, y0, x1, y1 = obs.bbox
    assert x0 < 60 and x1 < 260 and y1 > 400
    assert {"pose_ms", "hands_ms", "total_ms"} <= set(obs.timings)


def test_no_person_on_coffee_cup(hp, test_data):
    obs = hp.observe(_load(test_data, "coffee_cup_no_person.png"))
    assert not obs.found and obs.mask is None and obs.bbox is None
    assert not obs.hand_found.any() and "no person" in obs.message
    assert obs.person_search == "ran" and obs.person_source == "none"  # the zoomed crops found nobody either
    for blank in (np.zeros((480, 640, 3), np.uint8), np.random.default_rng(1).integers(0, 256, (480, 640, 3), np.uint8)):
        assert not hp.observe(blank).found


def _padded(img, pad):
    import cv2

    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    return cv2.copyMakeBorder(rgb, pad, pad, 2 * pad, 2 * pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))


@pytest.mark.parametrize("pad", [50, 100])
def test_zoomed_search_finds_a_person_the_full_frame_misses(hp, test_data, pad):
    """A grey border around the catching photo makes the man fill less of the frame: Pose's person detector
    misses him in the full frame (checked with person_search=False), its landmark model reads him in a crop.
    The landmarks come back in the padded frame's pixels, where the unpadded ones are."""
    img = _load(test_data, "person_catching_ball.png")
    ref = hp.observe(img)
    big = _padded(img, pad)
    with HumanPerception(person_search=False) as plain:
        assert not plain.observe(big).found
    obs = hp.observe(big)
    assert obs.found and obs.person_source == "zoom" and obs.person_search == "ran"
    ids = [0, 11, 12, 15, 16, 23, 24]  # nose, shoulders, wrists, hips
    moved = obs.keypoints_2d[ids, :2] - (ref.keypoints_2d[ids, :2] + [2 * pad, pad])
    assert np.abs(moved).max() < 25, moved
    assert obs.mask is not None and obs.mask.shape == big.shape[:2] and not obs.mask[:pad].any()
    x0, y0, x1, y1 = obs.bbox
    assert x0 >= 2 * pad - 5 and x1 < 2 * pad + 260 and y1 > pad + 400  # the catching man, in padded pixels
    assert obs.hand_found.any() and "person_search_ms" in obs.timings
    # the whole man, feet included: the grid crop that found him (0.6 of the frame's height) cut his feet off — ankles
    # 45-55 px off at visibility 0.2, no mask below the crop — until he is read again in a crop centred on him
    legs = obs.keypoints_2d[25:29, :2] - (ref.keypoints_2d[25:29, :2] + [2 * pad, pad])  # knees, ankles
    assert np.abs(legs).max() < 20, legs
    assert obs.keypoints_2d[27:29, 2].min() > 0.5
    ankle_x, ankle_y = obs.keypoints_2d[27, :2].astype(int)
    assert obs.mask[ankle_y - 15:ankle_y, ankle_x - 15:ankle_x + 15].any()


def test_astronaut_portrait_found(hp, test_data):
    obs = hp.observe(_load(test_data, "astronaut_portrait.png"))
    assert obs.found
    nose = obs.keypoints_2d[0]
    assert nose[2] > 0.9 and 150 < nose[0] < 300 and 60 < nose[1] < 200


def test_image_validation():
    grey = np.zeros((40, 50), np.uint8)
    assert as_rgb_uint8(grey).shape == (40, 50, 3)
    rgba = np.zeros((40, 50, 4), np.uint8)
    assert as_rgb_uint8(rgba).shape == (40, 50, 3)
    assert as_rgb_uint8(np.full((20, 20, 3), 0.5, np.float32))[0, 0, 0] == 128
    with pytest.raises(ValueError, match="shape"):
        as_rgb_uint8(np.zeros((10, 20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        as_rgb_uint8(np.full((20, 20, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="16x16"):
        as_rgb_uint8(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="numpy"):
        as_rgb_uint8([[1, 2]])


def test_float_image_resized_bicubic_stays_in_unit_range(test_data):
    """A float [0,1] photo resized with bicubic interpolation overshoots (max 1.06, min -0.04): it was read as a
    [0,255] image, i.e. black — no person, silently. It converts like the uint8 photo; a [0,255] float one still
    reads as [0,255]."""
    import cv2

    rgb = _load(test_data, "cameraman_operating_camera.png")
    small = cv2.resize(rgb.astype(np.float32) / 255, (400, 400), interpolation=cv2.INTER_CUBIC)
    assert small.max() > 1.0
    ref = as_rgb_uint8(np.clip(small, 0, 1))
    assert np.abs(as_rgb_uint8(small).astype(int) - ref).max() == 0
    assert as_rgb_uint8(np.full((20, 20, 3), 1.0, np.float32))[0, 0, 0] == 255
    assert as_rgb_uint8(np.full((20, 20, 3), 200.0, np.float32))[0, 0, 0] == 200


@pytest.mark.parametrize("hand_complexity", [1, 0])
def test_video_mode_tracks_hands_and_rate_limits_the_frame_search(test_data, hand_complexity):
    """Video mode (the node's): per-wrist tracking hand landmarkers keep the hand at the ball frame after frame;
    the full-frame search for the hand the crops miss runs on the first frame, then every 3rd (marked)."""
    img = _load(test_data, "person_catching_ball.png")
    with HumanPerception(static_image_mode=False, hand_model_complexity=hand_complexity,
                         frame_hand_search_every=3) as p:
        obs = [p.observe(img) for _ in range(7)]
    assert all(o.found for o in obs)
    for o in obs:
        assert o.hand_found.any()
        for side in np.nonzero(o.hand_found)[0]:
            assert np.linalg.norm(o.hands_2d[side, 0, :2] - BALL_CENTRE) < 80
    assert all(o.hand_search in ("none", "ran", "skipped") for o in obs)
    # a portrait without hands in view: the crops find nothing, the frame search runs on frames 0, 3, 6 only
    portrait = _load(test_data, "astronaut_portrait.png")
    with HumanPerception(static_image_mode=False, hand_model_complexity=hand_complexity,
                         frame_hand_search_every=3) as p:
        searches = [p.observe(portrait).hand_search for _ in range(7)]
    assert searches == ["ran", "skipped", "skipped", "ran", "skipped", "skipped", "ran"], searches


def test_video_mode_follows_a_small_person_found_zoomed_and_rate_limits_the_search(test_data):
    """The pedestrians clip (people 70-90 px tall): Pose's full frame finds nobody; the zoomed grid search finds a
    walker on the first frame and a crop that follows them keeps them frame after frame, moving smoothly. With
    nobody in view the grid search runs on the first frame, then every person_search_every-th."""
    import cv2

    cap = cv2.VideoCapture(str(test_data / "pedestrians_768x576_10fps.avi"))
    frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(12)]
    with HumanPerception(static_image_mode=False, hand_model_complexity=0) as p:
        obs = [p.observe(f) for f in frames]
    assert [o.person_source for o in obs] == ["zoom"] + ["roi"] * 11, [o.person_source for o in obs]
    hips = np.array([o.keypoints_2d[[23, 24], :2].mean(0) for o in obs])
    assert np.linalg.norm(np.diff(hips, axis=0), axis=1).max() < 20  # one walker, not a jump to another person
    with HumanPerception(static_image_mode=False, hand_model_complexity=0, person_search_every=3) as p:
        blank = np.full((240, 320, 3), 90, np.uint8)
        searches = [p.observe(blank).person_search for _ in range(7)]
    assert searches == ["ran", "skipped", "skipped", "ran", "skipped", "skipped", "ran"], searches
    # a followed person who leaves: the grid is searched on that very frame (not person_search_every frames later)
    frame = frames[0]
    empty = np.full_like(frame, 90)
    with HumanPerception(static_image_mode=False, hand_model_complexity=0, person_search_every=3) as p:
        seen = [(o.person_source, o.person_search) for o in (p.observe(f) for f in [frame, frame, empty, empty, empty])]
    assert seen == [("zoom", "ran"), ("roi", "none"), ("none", "ran"), ("none", "skipped"), ("none", "skipped")], seen
    with pytest.raises(ValueError, match="person_search_every"):
        HumanPerception(static_image_mode=False, person_search_every=0)


def test_static_mode_always_searches_and_bad_settings_are_rejected(hp, test_data):
    assert hp.frame_hand_search_every == 1
    portrait = _load(test_data, "astronaut_portrait.png")
    assert [hp.observe(portrait).hand_search for _ in range(3)] == ["ran"] * 3  # never rate-limited
    with pytest.raises(ValueError, match="hand_model_complexity"):
        HumanPerception(hand_model_complexity=2)
    with pytest.raises(ValueError, match="frame_hand_search_every"):
        HumanPerception(static_image_mode=False, frame_hand_search_every=0)
    # video mode tracks one person; the most prominent of a fresh search per frame switched people mid-stream on the
    # pedestrians video (135-183 px jumps to another person and back), so max_people > 1 is photo mode only
    with pytest.raises(ValueError, match="max_people=2 needs static_image_mode=True"):
        HumanPerception(static_image_mode=False, max_people=2)


def test_video_mode_survives_a_change_of_image_size(test_data, caplog):
    """Video mode (the node's default) on a stream whose size changes (camera reconfigured, another bag): Pose's
    segmentation smoothing cannot blend masks of two sizes, so the frame of the new size — and every frame after
    it, of any size — raised "Graph has errors" (RuntimeError: the node's internal_error). The tracking graphs now
    restart on a size change, said in the log."""
    import cv2

    img = _load(test_data, "person_catching_ball.png")
    half = cv2.resize(img, (320, 240))
    with caplog.at_level("WARNING", logger="interactvlm_ros.perception.human"):
        with HumanPerception(static_image_mode=False, hand_model_complexity=0) as p:
            obs = [p.observe(im) for im in (img, img, half, half, img)]
    assert all(o.found for o in obs)
    assert [o.image_size for o in obs] == [(480, 640)] * 2 + [(240, 320)] * 2 + [(480, 640)]
    assert np.abs(obs[2].keypoints_2d[:, :2] * 2 - obs[1].keypoints_2d[:, :2])[obs[1].keypoints_2d[:, 2] > 0.5].mean() < 20
    assert sum("image size changed" in r.getMessage() for r in caplog.records) == 2


class _Localizer:  # zero logits; perception is what is under test
    name = backend = "double"
    asset_size = 64
    predicts_object, predicts_human, uses_observation = False, True, True

    def __init__(self):
        from interactvlm_ros.pipeline import Fallbacks

        self.fallbacks = Fallbacks()

    def predict(self, image, label, human_assets, object_assets, observation=None):
        from types import SimpleNamespace

        hl = np.zeros((len(human_assets.renders), 16, 16), np.float32)
        return SimpleNamespace(human_logits=hl, object_logits=None, text="", timings={}, extras={})


def test_contact_estimator_passes_the_zoomed_search_setting_to_perception():
    """ContactEstimator(person_search_every=N) (the node's parameter): 0 turns the zoomed person search off, N rate-
    limits it in video mode; anything but an integer ≥ 0 is refused before perception starts."""
    pytest.importorskip("anny")
    from interactvlm_ros.pipeline import ContactEstimator, PipelineError

    with ContactEstimator(localizer=_Localizer(), perception_mode="video", hand_model="lite",
                          person_search_every=3) as est:
        assert est.perception.person_search and est.perception.person_search_every == 3
    with ContactEstimator(localizer=_Localizer(), person_search_every=0) as est:
        assert not est.perception.person_search
    with ContactEstimator(localizer=_Localizer()) as est:  # photo mode: every frame without a person
        assert est.perception.person_search and est.perception.person_search_every == 1
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(PipelineError, match="person_search_every"):
            ContactEstimator(localizer=_Localizer(), person_search_every=bad)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts native threads in /proc")
def test_contact_estimator_close_releases_its_mediapipe_graphs(test_data):
    """mediapipe's graphs are not freed when their object is dropped (≈ 300 MB and 10 native threads per
    HumanPerception, measured), and ContactEstimator.close() — what the node calls on teardown, e.g. each lifecycle
    cleanup — left its perception open: every configure/cleanup cycle kept one more set. Now close() releases them."""
    pytest.importorskip("anny")
    from interactvlm_ros.pipeline import ContactEstimator

    def threads():
        return len(os.listdir("/proc/self/task"))

    img = as_rgb_uint8(_load(test_data, "person_catching_ball.png"))  # a grey photo; the estimator takes RGB
    est = ContactEstimator(localizer=_Localizer(), perception_mode="video", hand_model="lite")
    assert est.estimate(img, "cup", observation=est.observe(img)).status == "ok"
    before = threads()
    est.close()
    assert threads() <= before - 8, (before, threads())
    with pytest.raises(RuntimeError, match="after close"):
        est.perception.observe(img)
    est.close()  # a second close does nothing
