"""Training masks in the style of LaMa's ``MixedMaskGenerator``.

Each mask is either a few thick random polyline strokes ("irregular") or a few
axis-aligned rectangles ("box"), drawn with the big-lama configuration. Those
numbers are tuned for 256 px crops, so every length, width, size and margin is
scaled linearly with the crop's short side. Masks are fully determined by the
``numpy.random.Generator`` passed in, which keeps data loading reproducible
whatever the number of DataLoader workers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw


REFERENCE_SIZE = 256  # crop size the big-lama mask parameters were tuned for
# Constants hard-coded in LaMa's make_random_irregular_mask (at 256 px).
MIN_STROKE_LEN = 10
MIN_STROKE_WIDTH = 5
MAX_SEGMENTS = 5


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    return int(h), int(w)


def draw_segment(draw: ImageDraw.ImageDraw, p0: tuple[int, int], p1: tuple[int, int], width: int) -> None:
    """Draw a round-capped segment like ``cv2.line(mask, p0, p1, 1, width)``.

    OpenCV's thick lines are about ``width + 1`` pixels across with round
    ends; a PIL line plus two discs matches them to ~97% IoU.
    """
    w = width + 1
    r = w / 2
    draw.line([p0, p1], fill=1, width=w)
    for x, y in (p0, p1):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=1)


class MaskGenerator:
    """Random inpainting masks: irregular strokes OR boxes, LaMa-style.

    ``size`` is an int or ``(H, W)``. The keyword arguments mirror big-lama's
    ``irregular_kwargs`` / ``box_kwargs`` (values at ``reference_size`` px;
    ``max_angle`` is in whole radians, as in LaMa). ``*_min_times`` and
    ``*_max_times`` are inclusive. Note LaMa's irregular wrapper actually draws
    up to ``max_times + 1`` strokes; pass ``irregular_max_times=6`` to match it.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        irregular_proba: float = 1.0,
        irregular_max_angle: int = 4,
        irregular_max_len: int = 200,
        irregular_max_width: int = 100,
        irregular_min_times: int = 1,
        irregular_max_times: int = 5,
        box_proba: float = 1.0,
        box_margin: int = 10,
        box_min_size: int = 30,
        box_max_size: int = 150,
        box_min_times: int = 1,
        box_max_times: int = 3,
        reference_size: int = REFERENCE_SIZE,
    ) -> None:
        self.height, self.width = _hw(size)
        probas = np.array([irregular_proba, box_proba], dtype=np.float64)
        if (probas < 0).any() or probas.sum() <= 0:
            raise ValueError(f"mask probabilities must be >= 0 and not all 0, got {probas.tolist()}")
        self.probas = probas / probas.sum()

        scale = min(self.height, self.width) / reference_size
        px = lambda v: max(1, round(v * scale))  # noqa: E731
        self.max_angle = irregular_max_angle
        self.stroke_times = (irregular_min_times, irregular_max_times)
        self.min_len, self.max_len = px(MIN_STROKE_LEN), px(irregular_max_len)
        self.min_width, self.max_width = px(MIN_STROKE_WIDTH), px(irregular_max_width)

        self.box_times = (box_min_times, box_max_times)
        self.margin = round(box_margin * scale)
        # Like LaMa, boxes never exceed the area inside the margins.
        inner = min(self.height, self.width) - 2 * self.margin
        if inner < 1:
            raise ValueError(f"mask size {self.height}x{self.width} is too small for margin {self.margin}")
        self.box_max = min(px(box_max_size), inner)
        self.box_min = min(px(box_min_size), self.box_max)

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """One float32 ``(1, H, W)`` mask in {0, 1}, determined by ``rng``."""
        kind = rng.choice(2, p=self.probas)
        mask = self._strokes(rng) if kind == 0 else self._boxes(rng)
        return mask[None]

    def _strokes(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.height, self.width
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        for i in range(rng.integers(self.stroke_times[0], self.stroke_times[1] + 1)):
            x, y = int(rng.integers(w)), int(rng.integers(h))
            for _ in range(1 + rng.integers(MAX_SEGMENTS)):
                angle = 0.01 + rng.integers(self.max_angle)
                if i % 2 == 0:  # LaMa mirrors the heading on every other stroke
                    angle = 2 * math.pi - angle
                length = self.min_len + rng.integers(self.max_len)
                width = int(self.min_width + rng.integers(self.max_width))
                # Truncate then clip to [0, size], exactly as LaMa does.
                end_x = min(max(int(x + length * math.sin(angle)), 0), w)
                end_y = min(max(int(y + length * math.cos(angle)), 0), h)
                draw_segment(draw, (x, y), (end_x, end_y), width)
                x, y = end_x, end_y
        return (np.asarray(canvas) > 0).astype(np.float32)

    def _boxes(self, rng: np.random.Generator) -> np.ndarray:
        h, w, m = self.height, self.width, self.margin
        mask = np.zeros((h, w), np.float32)
        for _ in range(rng.integers(self.box_times[0], self.box_times[1] + 1)):
            bw, bh = rng.integers(self.box_min, self.box_max + 1, size=2)
            x0 = rng.integers(m, w - m - bw + 1)
            y0 = rng.integers(m, h - m - bh + 1)
            mask[y0 : y0 + bh, x0 : x0 + bw] = 1.0
        return mask


def seeded_masks(n: int, size: int | tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``n`` fixed default masks as a float32 ``(n, 1, H, W)`` tensor, e.g. for validation.

    Mask ``i`` depends only on ``(seed, i)``, so asking for more masks keeps the first ones.
    """
    gen = MaskGenerator(size)
    masks = [gen(np.random.default_rng((seed, i))) for i in range(n)]
    h, w = _hw(size)
    return torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, 1, h, w)
