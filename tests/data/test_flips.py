"""Class flips with known probabilities (segcvae.data.flips) on a hand-made mask."""

import numpy as np
import pytest

from segcvae.data.flips import ClassFlip, draw_mode, flip_mode_probs, flip_modes

FLIPS = [ClassFlip(1, 3, 0.25), ClassFlip(2, 4, 0.5)]


def test_modes_in_order_by_hand():
    mask = np.array([[0, 1], [2, 2]], np.uint8)
    modes = flip_modes(mask, FLIPS)
    assert modes.dtype == np.uint8 and modes.shape == (4, 2, 2)
    expected = [[[0, 1], [2, 2]], [[0, 1], [4, 4]], [[0, 3], [2, 2]], [[0, 3], [4, 4]]]
    np.testing.assert_array_equal(modes, expected)
    np.testing.assert_allclose(flip_mode_probs(FLIPS), [0.375, 0.375, 0.125, 0.125])


def test_three_flips_sum_to_one_and_a_missing_class_repeats_modes():
    flips = [*FLIPS, ClassFlip(0, 5, 8 / 17)]
    probs = flip_mode_probs(flips)
    assert probs.shape == (8,) and probs.sum() == pytest.approx(1.0)
    assert probs[0] == pytest.approx(0.75 * 0.5 * 9 / 17)
    modes = flip_modes(np.zeros((3, 3), np.uint8), flips)  # only class 0 present
    assert len({m.tobytes() for m in modes}) == 2  # kept or flipped background, 4 times each
    np.testing.assert_array_equal(modes[0], modes[6])


def test_draws_are_seeded_and_follow_the_probabilities():
    probs = flip_mode_probs(FLIPS)
    assert draw_mode(probs, (1, 7)) == draw_mode(probs, (1, 7))
    draws = np.bincount([draw_mode(probs, (0, i)) for i in range(4000)], minlength=4) / 4000
    np.testing.assert_allclose(draws, probs, atol=0.03)  # binomial std <= 0.008
