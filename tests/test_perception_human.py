"""HumanPerception (mediapipe, offline) on the real photos in tests/data."""
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


def test_static_mode_always_searches_and_bad_settings_are_rejected(hp, test_data):
    assert hp.frame_hand_search_every == 1
    portrait = _load(test_data, "astronaut_portrait.png")
    assert [hp.observe(portrait).hand_search for _ in range(3)] == ["ran"] * 3  # never rate-limited
    with pytest.raises(ValueError, match="hand_model_complexity"):
        HumanPerception(hand_model_complexity=2)
    with pytest.raises(ValueError, match="frame_hand_search_every"):
        HumanPerception(static_image_mode=False, frame_hand_search_every=0)
