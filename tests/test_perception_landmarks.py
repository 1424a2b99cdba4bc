"""Anny → mediapipe landmark regressor (packaged weights)."""
import numpy as np
import pytest

from interactvlm_ros.perception.landmarks import NUM_HAND, NUM_POSE, get_regressor


def test_weights_are_convex_combinations():
    reg = get_regressor()
    assert reg.indices.shape[0] == NUM_POSE + 2 * NUM_HAND == 75
    np.testing.assert_allclose(reg.weights.sum(1), 1.0, atol=1e-5)
    assert (reg.weights >= 0).all() and reg.indices.max() < reg.num_vertices == 13718
    M = reg.matrix()
    assert M.shape == (75, 13718)
    V = np.random.default_rng(0).normal(size=(13718, 3))
    np.testing.assert_allclose(M @ V, reg.all(V), atol=1e-5)


def test_translation_equivariant_and_shapes():
    reg = get_regressor()
    V = np.random.default_rng(1).normal(size=(2, 13718, 3)).astype(np.float32)
    a = reg.pose(V)
    b = reg.pose(V + np.array([1.0, -2.0, 0.5], np.float32))
    assert a.shape == (2, 33, 3) and reg.hands(V).shape == (2, 2, 21, 3)
    np.testing.assert_allclose(b - a, np.broadcast_to([1.0, -2.0, 0.5], a.shape), atol=1e-4)
    with pytest.raises(ValueError, match="13718"):
        reg.pose(np.zeros((6890, 3)))


def test_anatomy_on_the_posed_body():
    pytest.importorskip("anny")
    from interactvlm_ros.bodies import get_body_model

    rest, _ = get_body_model("anny").poser.pose_world({}, offset=False)  # rest pose, body frame
    reg = get_regressor()
    P, Hd = reg.pose(rest), reg.hands(rest)
    assert P[0, 1] > P[11, 1] > P[23, 1] > P[25, 1] > P[27, 1]  # nose > shoulder > hip > knee > ankle (y up)
    assert (P[[2, 7, 11, 13, 15, 23, 25, 27], 0] > 0).all()  # person's left at +x
    assert (P[[5, 8, 12, 14, 16, 24, 26, 28], 0] < 0).all()
    assert P[0, 2] > P[7, 2]  # nose in front of the ears (facing +z)
    np.testing.assert_allclose(Hd[0, 0], P[15], atol=1e-5)  # hand wrist == pose wrist
    assert np.linalg.norm(Hd[0, 12] - Hd[0, 0]) > 0.12  # middle finger tip ~ a hand length away
