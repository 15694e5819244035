"""The shapes data's kinds of ambiguity other than nested: exclusive, independent and flip.

Each ``render_*`` function draws one item from a numpy generator: the image first, then (from
the same generator, so independently of everything visible) the one mask used as ``"mask"``. It
returns every plausible mask of the image with its probability; the probabilities follow from
what the image shows (a patch's shade, a patch's depth, an object's two colours), so a model can
learn them. datasets/shapes/README.md describes each kind with a picture in words.

Geometry is given for 64x64 images and scaled by ``size / 64``. Any two distinct plausible masks
of an item have a foreground-mean IoU below 0.9 (tests/data/test_shapes.py checks it), the
threshold at which a hypothesis counts as a mode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

SHADE_TONES = ((95, 135), (150, 190), (205, 245))  # stripe tones: dark, mid, light patches
SHADE_WEIGHTS = (6.0, 3.0, 1.0)  # exclusive: how likely the arm is under a dark / mid / light patch
PART_PROBS = {2: (0.7, 0.3), 3: (0.5, 0.3, 0.2)}  # independent: P(hidden length), shortest first
PART_HIDDEN = {2: (2, 14), 3: (2, 14, 28)}  # independent: hidden lengths (px at 64x64)
FLIP_PROBS = (0.6, 0.7, 0.8)  # flip: P(lower class of the pair (a, b)) = FLIP_PROBS[(a + b) % 3]


@dataclass
class ShapesItem:
    """Everything generated for one index.

    Attributes:
        image: (S, S, 3) uint8 RGB; independent of ``choice``.
        masks: (M, S, S) uint8, the M plausible masks of this item (M may be below the dataset's).
        occluder: (S, S) bool, where the occluders (band, patches) are; all False for flip.
        choice: index of the mask used as "mask", drawn by ``probs``.
        probs: (M,) float64 probabilities of ``masks`` (sum 1); None = equally likely.
        kind: the kind of ambiguity (nested, exclusive, independent, flip).
    """

    image: np.ndarray
    masks: np.ndarray
    occluder: np.ndarray
    choice: int
    probs: np.ndarray | None = None
    kind: str = "nested"


def stripes(size: int, tones: tuple[int, int], period: int = 3) -> np.ndarray:
    """(S, S) int16 diagonal stripes alternating two grey tones, ``period`` px each."""
    yy, xx = np.mgrid[:size, :size]
    return np.where((xx + yy) // period % 2 == 0, tones[0], tones[1]).astype(np.int16)


def _px(value: float, size: int) -> int:
    """A length given in px at 64x64, at image side ``size`` (at least 1)."""
    return max(1, round(value * size / 64))


def _canvas(rng: np.random.Generator, size: int) -> np.ndarray:
    """(S, S, 3) float64 filled with a random dark background grey."""
    image = np.empty((size, size, 3), np.float64)
    image[:] = int(rng.integers(20, 80))
    return image


def _colour(rng: np.random.Generator, palette: list[tuple[int, int, int]], cls: int) -> np.ndarray:
    """The class colour with a small random shift per channel."""
    return np.asarray(palette[cls], np.int16) + rng.integers(-15, 16, 3)


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Add pixel noise and convert to uint8."""
    noise = rng.normal(0.0, 6.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _draw(rng: np.random.Generator, masks: list[np.ndarray], probs: list[float]) -> tuple:
    """Stack masks and probabilities and draw the chosen mask's index by those probabilities."""
    p = np.asarray(probs, np.float64)
    p /= p.sum()
    choice = int(rng.choice(len(p), p=p))  # drawn after the image: independent of it
    return np.stack(masks).astype(np.uint8), p, choice


def _product(
    parts: list[list[np.ndarray]], probs: list[tuple[float, ...]]
) -> tuple[list[np.ndarray], list[float]]:
    """Joint masks of independent parts (disjoint supports) and their probabilities.

    Args:
        parts: per part, its alternative masks.
        probs: per part, the alternatives' probabilities.

    Returns:
        One mask per combination of the parts' alternatives (``itertools.product`` order: the
        first part changes slowest) and its probability, the product of the parts'.
    """
    masks, joint = [], []
    for combo in itertools.product(*(range(len(part)) for part in parts)):
        masks.append(sum(part[c] for part, c in zip(parts, combo, strict=True)))
        joint.append(float(np.prod([p[c] for p, c in zip(probs, combo, strict=True)])))
    return masks, joint


def _side_box(x0: int, y0: int, h: int, depth: int, across: int, side: int) -> tuple[slice, slice]:
    """Rows and columns of a box ``depth`` deep against side ``side`` of the square at (x0, y0).

    Sides: 0 right, 1 down, 2 left, 3 up; the box reaches ``across`` px past the square's side.
    """
    span = (
        slice(x0 - across, x0 + h + across)
        if side in (1, 3)
        else slice(y0 - across, y0 + h + across)
    )
    start = {0: x0 + h, 1: y0 + h, 2: x0 - depth, 3: y0 - depth}[side]
    out = slice(start, start + depth)
    return (span, out) if side in (0, 2) else (out, span)


def _cols(c0: int, c1: int, size: int, mirror: bool) -> slice:
    """Columns c0..c1, or their mirror image about the vertical centre line."""
    return slice(size - c1, size - c0) if mirror else slice(c0, c1)


def render_exclusive(
    rng: np.random.Generator, size: int, palette: list[tuple[int, int, int]]
) -> ShapesItem:
    """A square hub with an arm hidden under exactly one of 2-3 striped patches on its sides.

    The patches' shades say how likely each is: weights 6 (dark), 3 (mid), 1 (light), normalised
    over the patches shown (3 patches: 0.6 / 0.3 / 0.1). The arm is as wide as the hub and ends
    3 px (at 64x64) before the patch's far edge. Masks: most likely first.
    """
    s = size
    cls = int(rng.integers(1, len(palette)))
    colour = _colour(rng, palette, cls)
    h = int(rng.integers(_px(10, s), _px(16, s) + 1))  # hub side
    arm = int(rng.integers(_px(9, s), _px(14, s) + 1))
    reach, across = arm + _px(3, s), _px(2, s)  # patch depth and overhang
    x0 = int(rng.integers(reach + 1, s - h - reach))
    y0 = int(rng.integers(reach + 1, s - h - reach))
    k = int(rng.integers(2, 4))
    sides = rng.choice(4, k, replace=False)
    shades = np.sort(rng.choice(3, k, replace=False))  # darkest first

    image = _canvas(rng, s)
    image[y0 : y0 + h, x0 : x0 + h] = colour
    occluder = np.zeros((s, s), bool)
    for side, shade in zip(sides, shades, strict=True):
        rows, cols = _side_box(x0, y0, h, reach, across, int(side))
        image[rows, cols] = stripes(s, SHADE_TONES[shade])[rows, cols, None]
        occluder[rows, cols] = True
    image = _finish(rng, image)
    masks = []
    for side in sides:
        mask = np.zeros((s, s), np.uint8)
        mask[y0 : y0 + h, x0 : x0 + h] = cls
        mask[_side_box(x0, y0, h, arm, 0, int(side))] = cls
        masks.append(mask)
    masks, probs, choice = _draw(rng, masks, [SHADE_WEIGHTS[i] for i in shades])
    return ShapesItem(image, masks, occluder, choice, probs, "exclusive")


def render_independent(
    rng: np.random.Generator, size: int, palette: list[tuple[int, int, int]]
) -> ShapesItem:
    """2-3 bars of distinct classes, each running into its own patch, hidden lengths independent.

    A part whose patch is 18 px deep (at 64x64) hides 2 or 14 px of its bar (probabilities 0.7,
    0.3); one 32 px deep hides 2, 14 or 28 px (0.5, 0.3, 0.2). The joint masks are the product of
    the parts' choices (up to 27), each with the product of the parts' probabilities, listed in
    ``itertools.product`` order (first part slowest). Then a random quarter turn.
    """
    s = size
    parts = min(int(rng.integers(2, 4)), len(palette) - 1)
    classes = rng.choice(np.arange(1, len(palette)), parts, replace=False)
    strip, across = s // parts, _px(2, s)
    image = _canvas(rng, s)
    occluder = np.zeros((s, s), bool)
    texture = stripes(s, SHADE_TONES[1])
    choices: list[list[np.ndarray]] = []
    for i, cls in enumerate(classes):
        colour = _colour(rng, palette, int(cls))
        thick = int(rng.integers(_px(6, s), _px(9, s) + 1))
        n = int(rng.integers(2, 4))
        hidden = [_px(v, s) for v in PART_HIDDEN[n]]
        depth = hidden[-1] + _px(4, s)
        stub = int(rng.integers(_px(3, s), _px(6, s) + 1))
        x = int(rng.integers(1, s - stub - depth))
        y = int(rng.integers(i * strip + across + 1, (i + 1) * strip - thick - across))
        mirror = bool(rng.integers(2))  # the bar points left instead of right

        image[y : y + thick, _cols(x, x + stub, s, mirror)] = colour
        box = slice(y - across, y + thick + across), _cols(x + stub, x + stub + depth, s, mirror)
        image[box] = texture[box][..., None]
        occluder[box] = True
        part = []
        for length in hidden:
            mask = np.zeros((s, s), np.uint8)
            mask[y : y + thick, _cols(x, x + stub + length, s, mirror)] = cls
            part.append(mask)
        choices.append(part)
    turns = int(rng.integers(4))
    image = _finish(rng, image)
    masks, probs, choice = _draw(rng, *_product(choices, [PART_PROBS[len(c)] for c in choices]))
    image = np.ascontiguousarray(np.rot90(image, turns))
    masks = np.ascontiguousarray(np.rot90(masks, turns, axes=(1, 2)))
    occluder = np.ascontiguousarray(np.rot90(occluder, turns))
    return ShapesItem(image, masks, occluder, choice, probs, "independent")


def render_flip(
    rng: np.random.Generator, size: int, palette: list[tuple[int, int, int]]
) -> ShapesItem:
    """2-3 discs or squares, each striped in two class colours; each one's class is one of them.

    Objects sit in distinct quarters of the image. An object striped in classes a < b is class a
    with probability ``FLIP_PROBS[(a + b) % 3]`` (0.6, 0.7 or 0.8), else b, independently of the
    others; the joint masks are the product (up to 8), first object slowest, class a first.
    """
    s = size
    cell = s // 2
    regions = int(rng.integers(2, 4))
    cells = rng.choice(4, regions, replace=False)
    yy, xx = np.mgrid[:s, :s]
    parity = (xx + yy) // 2 % 2 == 0
    image = _canvas(rng, s)
    choices: list[list[np.ndarray]] = []
    probs_per_region: list[tuple[float, float]] = []
    for c in cells:
        a, b = sorted(int(v) for v in rng.choice(np.arange(1, len(palette)), 2, replace=False))
        colour_a, colour_b = _colour(rng, palette, a), _colour(rng, palette, b)
        square = bool(rng.integers(2))
        low, high = (7, 10) if square else (8, 11)  # half-side or radius: similar areas
        r = int(rng.integers(_px(low, s), _px(high, s) + 1))
        room = cell // 2 - r - 1
        cy = int(c // 2) * cell + cell // 2 + int(rng.integers(-room, room + 1))
        cx = int(c % 2) * cell + cell // 2 + int(rng.integers(-room, room + 1))
        if square:
            inside = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r)
        else:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        image[inside & parity] = colour_a
        image[inside & ~parity] = colour_b
        choices.append([inside.astype(np.uint8) * a, inside.astype(np.uint8) * b])
        p = FLIP_PROBS[(a + b) % 3]
        probs_per_region.append((p, 1.0 - p))
    image = _finish(rng, image)
    masks, probs, choice = _draw(rng, *_product(choices, probs_per_region))
    return ShapesItem(image, masks, np.zeros((s, s), bool), choice, probs, "flip")


RENDERERS = {"exclusive": render_exclusive, "independent": render_independent, "flip": render_flip}
KIND_MODES = {"exclusive": 3, "independent": 27, "flip": 8}  # most plausible masks of an item

__all__ = [
    "FLIP_PROBS",
    "KIND_MODES",
    "PART_HIDDEN",
    "PART_PROBS",
    "RENDERERS",
    "SHADE_TONES",
    "SHADE_WEIGHTS",
    "ShapesItem",
    "render_exclusive",
    "render_flip",
    "render_independent",
    "stripes",
]
