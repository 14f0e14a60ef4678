"""``SyntheticCats``: procedurally drawn cat / not-cat images, so that training needs no download.

Images are drawn a chunk at a time, vectorised over the chunk: every shape is an implicit
function over the pixel grid (an ellipse, a triangle as three half-planes, a band around a line),
negative inside, evaluated in the frame of the animal's head, and painted as a layer index that
finally picks each pixel's colour from a per-image palette.

Cats have a round head, two pointed ears, eyes with slit pupils, a triangular nose and,
mostly, whiskers, in varying fur colours (some tabby), sizes, positions and tilts. Not-cats are
look-alikes drawn from the same parts and colours: round-eared faces (some with whiskers),
pointed-eared silhouettes without a face, and blobs. Every image also has a random background
colour and gradient, three random shapes behind the animal, often one in front of it, and pixel
noise, so that a linear model on raw pixels does clearly worse than a small MLP (measured in
``experiments/data_difficulty``).

Determinism: only the CPU Mersenne-Twister generator (``torch.rand``, ``torch.randint``,
``torch.randperm``) and exactly rounded IEEE float32 element-wise operations (``+ - * /``,
``sqrt``, ``abs``, ``sign``, ``floor``, ``minimum``/``maximum``, comparisons, ``where``,
``gather``) are used — no transcendental functions, reductions or matrix products, whose last
bits may depend on the CPU and the thread count — so a seed gives bit-identical images on every
machine.
"""

from __future__ import annotations

import torch

from gdtorch.data.base import CatImageDataset

__all__ = ["SyntheticCats"]

_CHUNK = 64  # images drawn per vectorised pass: each mask stays small enough for the CPU cache
# Difficulty, tuned so that logistic regression on raw pixels lands clearly below a small MLP
# (see experiments/data_difficulty): the spread of the head's radius (in half image widths),
# centre shift, tilt (tan of half the angle: 0.06 is about 7 degrees) and pixel noise amplitude.
_RADIUS = (0.30, 0.37)
_SHIFT = 0.04
_TILT = 0.06
_NOISE = (0.05, 0.25)

# Negative (not-cat) kinds.
_ROUND_EARED, _FACELESS, _BLOB = 0, 1, 2

# Palette slots, painted in this order (a later layer covers an earlier one).
_BG, _D1, _D2, _D3, _FUR, _STRIPE, _INNER_EAR, _IRIS, _PUPIL, _NOSE, _WHISKER, _FRONT = range(12)
_N_SLOTS = 12

_FUR_COLOURS = torch.tensor(
    [
        [0.90, 0.55, 0.20],  # ginger
        [0.55, 0.55, 0.58],  # grey
        [0.13, 0.12, 0.12],  # black
        [0.93, 0.92, 0.89],  # white
        [0.45, 0.30, 0.20],  # brown
        [0.95, 0.85, 0.65],  # cream
        [0.30, 0.28, 0.33],  # dark grey
    ]
)
_CAT_IRIS = torch.tensor(
    [[0.40, 0.80, 0.30], [0.90, 0.80, 0.20], [0.45, 0.65, 0.95], [0.85, 0.55, 0.15]]
)
_OTHER_IRIS = torch.tensor(
    [[0.95, 0.95, 0.95], [0.40, 0.25, 0.15], [0.10, 0.08, 0.06], [0.40, 0.80, 0.30]]
)
_CAT_NOSE = torch.tensor([[0.95, 0.60, 0.65], [0.85, 0.45, 0.50], [0.35, 0.25, 0.25]])
_OTHER_NOSE = torch.tensor([[0.08, 0.06, 0.06], [0.30, 0.18, 0.12], [0.85, 0.45, 0.50]])


class SyntheticCats(CatImageDataset):
    """Procedurally drawn RGB images of cats (label 1) and cat look-alikes (label 0).

    The images are generated on the CPU when the dataset is built, vectorised in chunks, and kept
    as tensors. Half of the labels (rounded up) are cats; their order is shuffled by ``seed``.

    Args:
        n: number of images.
        image_size: side of the square images, in pixels (at least 16).
        seed: seed of the ``torch.Generator`` that draws everything; the same seed gives the same
            tensors on every machine.

    Attributes:
        images: float32 ``(n, 3, image_size, image_size)`` in ``[0, 1]``.
        targets: float32 ``(n,)``: ``1.0`` = cat, ``0.0`` = not cat.

    Example:
        >>> data = SyntheticCats(8, image_size=32, seed=1)
        >>> image, target = data[0]
        >>> tuple(image.shape), target.dtype
        ((3, 32, 32), torch.float32)
    """

    def __init__(self, n: int, image_size: int = 64, seed: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
        generator = torch.Generator().manual_seed(seed)
        targets = (torch.randperm(n, generator=generator) < n - n // 2).float()
        grid = _pixel_grid(image_size)
        images = torch.empty(n, 3, image_size, image_size)
        for start in range(0, n, _CHUNK):
            labels = targets[start : start + _CHUNK]
            images[start : start + len(labels)] = _draw(labels, grid, generator)
        super().__init__(images, targets)
        self.seed = seed


def _pixel_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in ``[-1, 1]``: ``x`` as a row ``(1, 1, S)``, ``y`` as a column
    ``(1, S, 1)`` (pointing down), so that an affine function of both is one broadcast add."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    return centres.view(1, 1, size), centres.view(1, size, 1)


def _col(t: torch.Tensor) -> torch.Tensor:
    """A per-image parameter ``(B,)`` as ``(B, 1, 1)``, to broadcast over the pixel grid."""
    return t.view(-1, 1, 1)


class _Draws:
    """Per-image random parameters, ``(B,)`` tensors drawn from one generator in call order."""

    def __init__(self, batch: int, generator: torch.Generator) -> None:
        self.batch = batch
        self.generator = generator

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return torch.rand(self.batch, generator=self.generator) * (high - low) + low

    def chance(self, p: float) -> torch.Tensor:
        return torch.rand(self.batch, generator=self.generator) < p

    def colour(self, choices: torch.Tensor, jitter: float) -> torch.Tensor:
        """One of ``choices`` (``(K, 3)``) per image, each channel jittered by ``±jitter``."""
        index = torch.randint(len(choices), (self.batch,), generator=self.generator)
        noise = torch.rand(self.batch, 3, generator=self.generator) * (2 * jitter) - jitter
        return (choices[index] + noise).clamp_(0.0, 1.0)


class _Frame:
    """Per-image affine coordinates ``(u, v) = R(-angle) ((x, y) - centre) / scale``.

    Any affine function of ``(u, v)`` is also one of ``(x, y)``, so :meth:`affine` evaluates it
    over the whole grid with a single broadcast add of a row and a column.
    """

    def __init__(self, grid, centre_x, centre_y, cos, sin, scale) -> None:
        self.grid = grid
        self.ux, self.uy = cos / scale, sin / scale
        self.vx, self.vy = -sin / scale, cos / scale
        self.u0 = -(centre_x * self.ux + centre_y * self.uy)
        self.v0 = -(centre_x * self.vx + centre_y * self.vy)

    def affine(self, a, b, c) -> torch.Tensor:
        """``a u + b v + c`` over the grid, ``(B, S, S)``; ``a``, ``b``, ``c`` per image."""
        x, y = self.grid
        row = x * _col(a * self.ux + b * self.vx) + _col(a * self.u0 + b * self.v0 + c)
        return row + y * _col(a * self.uy + b * self.vy)

    def ellipse(self, u: torch.Tensor | None, cu, cv, half_u, half_v) -> torch.Tensor:
        """Implicit axis-aligned ellipse, negative inside, ``(B, S, S)``.

        Args:
            u: the ``u`` coordinate to use (e.g. ``|u|`` for a mirrored pair), or ``None`` for
                this frame's own ``u``.
            cu, cv, half_u, half_v: per-image centre and half-axes.
        """
        if u is None:
            du = self.affine(1.0 / half_u, 0.0, -cu / half_u)
        else:
            du = (u - _col(cu)).mul_(_col(1.0 / half_u))
        dv = self.affine(0.0, 1.0 / half_v, -cv / half_v)
        return du.mul_(du).add_(dv.mul_(dv)).sub_(1.0)

    def triangle(self, u: torch.Tensor | None, corners) -> torch.Tensor:
        """Signed distance to a triangle with per-image ``corners``: negative inside.

        The triangle is the intersection of three half-planes; inside it, the largest of the
        three signed edge distances is the exact (negative) distance to the boundary.

        Args:
            u: the ``u`` coordinate to use, or ``None`` for this frame's own ``u``.
            corners: three ``(u, v)`` pairs of ``(B,)`` tensors.
        """
        cu = (corners[0][0] + corners[1][0] + corners[2][0]) / 3
        cv = (corners[0][1] + corners[1][1] + corners[2][1]) / 3
        sdf = None
        for (u0, v0), (u1, v1) in zip(corners, corners[1:] + corners[:1], strict=True):
            nu, nv = v1 - v0, u0 - u1
            norm = torch.sqrt(nu * nu + nv * nv)
            nu, nv = nu / norm, nv / norm
            offset = nu * u0 + nv * v0
            # Orient each normal outwards: the centroid lies on the inner side.
            sign = torch.where(nu * cu + nv * cv > offset, -1.0, 1.0)
            nu, nv, offset = nu * sign, nv * sign, offset * sign
            if u is None:
                edge = self.affine(nu, nv, -offset)
            else:
                edge = self.affine(0.0, nv, -offset).add_(u * _col(nu))
            sdf = edge if sdf is None else torch.maximum(sdf, edge, out=sdf)
        return sdf


def _paint(layer: torch.Tensor, sdf: torch.Tensor, slot: int, where=None) -> None:
    """Paint ``slot`` into ``layer`` where ``sdf < 0`` (and, per image, where ``where`` holds).

    Slots are numbered in painting order, so painting is a running maximum with ``slot``
    inside the shape and ``-slot`` (never above ``layer``) outside: exact arithmetic, and
    cheaper than a comparison and a masked fill. ``sdf`` is overwritten.
    """
    value = -float(slot) if where is None else _col(where * -float(slot))
    torch.maximum(layer, sdf.sign_().mul_(value), out=layer)


def _draw(labels: torch.Tensor, grid: tuple[torch.Tensor, torch.Tensor], g: torch.Generator):
    """Draw one chunk of images for ``labels`` (``(B,)`` 0/1), returning ``(B, 3, S, S)``."""
    size = grid[0].shape[-1]
    batch = len(labels)
    d = _Draws(batch, g)
    cat = labels == 1
    kind = torch.randint(3, (batch,), generator=g)
    round_eared = ~cat & (kind == _ROUND_EARED)
    faceless = ~cat & (kind == _FACELESS)
    blob = ~cat & (kind == _BLOB)
    layer = torch.zeros(batch, size, size)
    zero, one = torch.zeros(batch), torch.ones(batch)
    image_frame = _Frame(grid, zero, zero, one, zero, one)

    # Background shapes anywhere in the image: an ellipse, a pointed triangle and a bar.
    ellipse = image_frame.ellipse(
        None, d.uniform(-1, 1), d.uniform(-1, 1), d.uniform(0.1, 0.5), d.uniform(0.1, 0.5)
    )
    _paint(layer, ellipse, _D1)
    tu, tv = d.uniform(-0.9, 0.9), d.uniform(-0.9, 0.9)
    corners = [(tu + d.uniform(-0.4, 0.4), tv + d.uniform(-0.4, 0.4)) for _ in range(3)]
    _paint(layer, image_frame.triangle(None, corners), _D2)
    bu, bv = d.uniform(-1, 1), d.uniform(-1, 1)
    norm = torch.sqrt(bu * bu + bv * bv) + 1e-3
    bar = image_frame.affine(bu / norm, bv / norm, d.uniform(-0.8, 0.8))
    _paint(layer, bar.abs_().sub_(_col(d.uniform(0.02, 0.08))), _D3)

    # The animal's frame: head centre, radius and rotation. cos/sin come from the rational
    # parametrisation of the circle (t = tan(angle / 2)), which needs no transcendental function.
    radius = d.uniform(*_RADIUS)
    centre_x = d.uniform(-_SHIFT, _SHIFT)
    centre_y = d.uniform(-_SHIFT, _SHIFT) + 0.05  # a little low, leaving room for the ears
    t = d.uniform(-_TILT, _TILT)
    head = _Frame(grid, centre_x, centre_y, (1 - t * t) / (1 + t * t), 2 * t / (1 + t * t), radius)
    au = head.affine(one, zero, zero).abs_()  # faces are mirror-symmetric: |u| draws both sides

    # Ears behind the head: pointed (cats, faceless silhouettes) or round (round-eared faces);
    # blobs get two round bumps anywhere on their rim.
    pointed = cat | faceless
    ear_corners = [
        (d.uniform(0.10, 0.30), d.uniform(-0.85, -0.70)),
        (d.uniform(0.80, 1.00), d.uniform(-0.50, -0.30)),
        (d.uniform(0.55, 0.95), d.uniform(-1.75, -1.35)),
    ]
    ear = head.triangle(au, ear_corners)
    inner_ear = ear + _col(d.uniform(0.10, 0.18))
    _paint(layer, ear, _FUR, pointed)
    _paint(layer, inner_ear, _INNER_EAR, pointed)
    bump_u = torch.where(blob, d.uniform(0.5, 1.1), d.uniform(0.55, 0.80))
    bump_v = torch.where(blob, d.uniform(-0.8, 0.8), d.uniform(-0.95, -0.70))
    bump_r = torch.where(blob, d.uniform(0.3, 0.6), d.uniform(0.32, 0.48))
    _paint(layer, head.ellipse(au, bump_u, bump_v, bump_r, bump_r), _FUR, ~pointed)

    # Head, with tabby stripes on some animals of every kind.
    half_u = torch.where(blob, d.uniform(0.8, 1.4), d.uniform(1.0, 1.15))
    half_v = torch.where(blob, d.uniform(0.6, 1.1), d.uniform(0.85, 1.0))
    face_shape = head.ellipse(None, zero, zero, half_u, half_v)
    phase = head.affine(zero, d.uniform(2.0, 4.0), d.uniform(0.0, 1.0))
    stripes = (phase - 0.3).sub_(phase.floor_())  # negative on 30% of each period
    torch.maximum(stripes, face_shape, out=stripes)
    _paint(layer, face_shape, _FUR)
    _paint(layer, stripes, _STRIPE, d.chance(0.35))

    # Face: eyes (slit pupils for cats, round for others), nose, whiskers.
    face = cat | round_eared
    eye_u, eye_v = d.uniform(0.32, 0.45), d.uniform(-0.22, -0.05)
    iris = head.ellipse(au, eye_u, eye_v, d.uniform(0.16, 0.24), d.uniform(0.12, 0.18))
    _paint(layer, iris, _IRIS, face)
    pupil_u = torch.where(cat, d.uniform(0.03, 0.06), d.uniform(0.06, 0.10))
    pupil_v = torch.where(cat, d.uniform(0.10, 0.15), pupil_u)
    _paint(layer, head.ellipse(au, eye_u, eye_v, pupil_u, pupil_v), _PUPIL, face)
    # A cat's nose is a triangle pointing down (flat top at v = nose_top); the others' an oval.
    nose_top, nose_w = d.uniform(0.18, 0.28), d.uniform(0.10, 0.15)
    below_top = head.affine(zero, -one, nose_top)
    slant = head.affine(zero, nose_w / 0.12, -nose_top * nose_w / 0.12 - nose_w)
    nose = torch.maximum(below_top, slant.add_(au * 1.2), out=below_top)
    _paint(layer, nose, _NOSE, cat)
    oval = head.ellipse(au, zero, nose_top + 0.1, d.uniform(0.12, 0.18), d.uniform(0.08, 0.12))
    _paint(layer, oval, _NOSE, round_eared)
    whiskered = (cat & d.chance(0.9)) | (round_eared & d.chance(0.4))
    strands = None
    for offset, slope in ((0.30, -0.25), (0.40, 0.0), (0.50, 0.25)):
        slope = d.uniform(-0.1, 0.1) + slope
        line = head.affine(zero, one, -(d.uniform(-0.04, 0.04) + offset) + 0.35 * slope)
        line = line.sub_(au * _col(slope)).abs_()
        strands = line if strands is None else torch.minimum(strands, line, out=strands)
    half_pixel = (1.0 / size) / radius  # in head units: whiskers are one pixel thick
    end = d.uniform(1.4, 1.8)
    reach_mid, reach_half = (end + 0.35) / 2, (end - 0.35) / 2
    reach = (au - _col(reach_mid)).abs_().sub_(_col(reach_half))  # whiskers span |u| in [0.35, end]
    whiskers = torch.maximum(strands.sub_(_col(half_pixel)), reach, out=strands)
    _paint(layer, whiskers, _WHISKER, whiskered)

    # One shape in front of everything, on half of the images.
    front = image_frame.ellipse(
        None, d.uniform(-1, 1), d.uniform(-1, 1), d.uniform(0.08, 0.3), d.uniform(0.08, 0.3)
    )
    _paint(layer, front, _FRONT, d.chance(0.5))

    # Colours: a palette per image, looked up by layer.
    fur = d.colour(_FUR_COLOURS, 0.08)
    palette = torch.rand(batch, _N_SLOTS, 3, generator=g)  # background and shapes: any colour
    palette[:, _FUR] = fur
    palette[:, _STRIPE] = fur * 0.6
    pink = d.chance(0.6).unsqueeze(1)
    palette[:, _INNER_EAR] = torch.where(pink, d.colour(_CAT_NOSE, 0.05), fur * 0.75)
    feline = cat.unsqueeze(1)
    palette[:, _IRIS] = torch.where(feline, d.colour(_CAT_IRIS, 0.08), d.colour(_OTHER_IRIS, 0.08))
    palette[:, _PUPIL] = d.uniform(0.0, 0.12).unsqueeze(1)
    palette[:, _NOSE] = torch.where(feline, d.colour(_CAT_NOSE, 0.05), d.colour(_OTHER_NOSE, 0.05))
    light_fur = (fur[:, 0] + fur[:, 1] + fur[:, 2]) > 1.2
    palette[:, _WHISKER] = torch.where(light_fur, 0.15, 0.92).unsqueeze(1)

    index = layer.view(batch, 1, -1).long().expand(batch, 3, -1)
    image = torch.gather(palette.transpose(1, 2), 2, index).view(batch, 3, size, size)
    background = layer.neg_().add_(1.0).clamp_(min=0.0)  # 1 on the background, 0 elsewhere
    gradient = image_frame.affine(d.uniform(-0.3, 0.3), d.uniform(-0.3, 0.3), zero)
    amplitude = _col(d.uniform(*_NOISE))
    noise = torch.rand(batch, size, size, generator=g).mul_(amplitude).sub_(amplitude * 0.5)
    image += gradient.mul_(background).add_(noise).unsqueeze(1)
    return image.clamp_(0.0, 1.0)
