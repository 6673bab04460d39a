"""Varied synthetic captchas: many fonts, colours, textures, lines, warps and artefacts.

The `captcha` package draws one style. Real sites draw many: this generator mixes the
things they do (issue 16), so that a model trained on it reads styles it never saw.
Everything comes from one `random.Random`, so the same seed always gives the same images:

    fonts = find_fonts()                       # Debian's fonts, DejaVu left out
    images = generate(seed=5, n=100, fonts=fonts)   # [(PIL image, label)]

Only PIL and numpy. DejaVu fonts are never used: the benchmarks read DejaVu captchas as
fonts the model never saw.
"""

from __future__ import annotations

import io
import math
import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_ROOTS = (Path("/usr/share/fonts"),)
# DejaVu is kept out of training on purpose (benchmarks read DejaVu captchas as never-seen
# fonts); the others draw symbols, keycaps or small capitals at the Latin letters' places.
EXCLUDED_FONTS = (
    "dejavu",
    "d050000l",
    "standardsymbols",
    "symbols",
    "notosansmath",
    "nushu",
    "smallcaps",
    "linbiolinum_k",
    "opensymbol",
    "fontawesome",
)
GLYPHS = string.digits + string.ascii_uppercase + string.ascii_lowercase

# (alphabet, weight): which characters a captcha draws from.
ALPHABETS: tuple[tuple[str, float], ...] = (
    (string.digits, 0.28),
    (string.ascii_lowercase, 0.12),
    (string.ascii_uppercase, 0.10),
    (string.ascii_lowercase + string.digits, 0.18),
    (string.ascii_uppercase + string.digits, 0.17),
    (GLYPHS, 0.15),
)
# (length, weight), 3 to 8 characters, most often 4 to 6.
LENGTHS: tuple[tuple[int, float], ...] = (
    (3, 0.05),
    (4, 0.38),
    (5, 0.25),
    (6, 0.2),
    (7, 0.07),
    (8, 0.05),
)
MIN_HEIGHT, MAX_HEIGHT = 18, 80

RGB = tuple[int, int, int]
U8 = npt.NDArray[np.uint8]


# --- fonts ---------------------------------------------------------------------------------


def font_files(roots: Iterable[Path] = FONT_ROOTS) -> list[Path]:
    """Every .ttf / .otf under `roots`, sorted, one file per name (a font packaged twice
    counts once), EXCLUDED_FONTS left out."""
    found: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            lowered = str(path.relative_to(root)).lower()
            if path.suffix.lower() not in (".ttf", ".otf") or not path.is_file():
                continue
            if any(name in lowered for name in EXCLUDED_FONTS):
                continue
            if path.name not in found or str(path) < str(found[path.name]):
                found[path.name] = path
    return sorted(found.values())


def _glyph_bitmap(font: ImageFont.FreeTypeFont, char: str) -> bytes | None:
    box = font.getbbox(char)
    width, height = int(box[2] - box[0]), int(box[3] - box[1])
    if width <= 0 or height <= 0:
        return None
    image = Image.new("L", (width + 2, height + 2), 0)
    ImageDraw.Draw(image).text((1 - box[0], 1 - box[1]), char, font=font, fill=255)
    return image.tobytes() + bytes([width, height])


def usable_font(path: Path) -> bool:
    """True if the font draws every digit and Latin letter, each its own shape, with lower
    case that differs from upper case (no symbol fonts, no tofu, no caps-only fonts)."""
    try:
        font = ImageFont.truetype(str(path), 24)
    except OSError:
        return False
    bitmaps: list[bytes] = []
    for char in GLYPHS:
        bitmap = _glyph_bitmap(font, char)
        if bitmap is None:
            return False
        bitmaps.append(bitmap)
    distinct = len(set(bitmaps))
    # Upper and lower case differ for letters whose shapes differ ("a"/"A", "e"/"E", ...).
    same_case = sum(
        bitmaps[GLYPHS.index(c)] == bitmaps[GLYPHS.index(c.upper())] for c in "abdefghnqrt"
    )
    return distinct >= 56 and same_case == 0


def find_fonts(roots: Iterable[Path] = FONT_ROOTS) -> list[Path]:
    """The usable fonts under `roots` (`usable_font`), sorted, DejaVu left out."""
    return [path for path in font_files(roots) if usable_font(path)]


@lru_cache(maxsize=4096)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# --- colours and backgrounds ---------------------------------------------------------------


def _luma(color: RGB) -> float:
    return 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]


def _color(rng: random.Random, low: int = 0, high: int = 255) -> RGB:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _contrasting(rng: random.Random, background: float, minimum: float = 70.0) -> RGB:
    """A random colour whose luma differs from `background` by at least `minimum`."""
    for _ in range(20):
        color = _color(rng)
        if abs(_luma(color) - background) >= minimum:
            return color
    return (0, 0, 0) if background > 127 else (255, 255, 255)


def _background(rng: random.Random, np_rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A light (mostly) or dark background: solid, gradient, blotches, grain, bands, grid."""
    dark = rng.random() < 0.15
    base = _color(rng, 0, 70) if dark else _color(rng, 170, 255)
    kind = rng.random()
    if kind < 0.3:
        image = Image.new("RGB", (w, h), base)
    elif kind < 0.55:  # a linear gradient between two colours
        other = _color(rng, 0, 80) if dark else _color(rng, 150, 255)
        t = np.linspace(0.0, 1.0, w if rng.random() < 0.7 else h, dtype=np.float32)
        ramp = np.outer(np.ones(h if len(t) == w else w, np.float32), t)
        if len(t) == h:
            ramp = ramp.T
        a, b = np.array(base, np.float32), np.array(other, np.float32)
        pixels = a[None, None, :] * (1 - ramp[:, :, None]) + b[None, None, :] * ramp[:, :, None]
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    elif kind < 0.8:  # smooth coloured blotches: tiny random image scaled up
        small = np_rng.integers(0, 70, (rng.randint(2, 6), rng.randint(3, 12), 3))
        if not dark:
            small = 255 - small
        small = np.clip(small.astype(np.int16) + (np.array(base) - (35 if dark else 220)), 0, 255)
        tile = Image.fromarray(small.astype(np.uint8), "RGB")
        image = tile.resize((w, h), Image.Resampling.BICUBIC)
    else:  # grain: per-pixel noise around the base colour
        spread = rng.randint(10, 60)
        noise = np_rng.integers(-spread, spread + 1, (h, w, 3))
        pixels = np.clip(np.array(base, np.int16)[None, None, :] + noise, 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.2:  # bands or boxes of colour behind the text
        for _ in range(rng.randint(1, 5)):
            x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
            box = (x0, y0, x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 6, h))
            draw.rectangle(box, fill=_color(rng, 0, 90) if dark else _color(rng, 150, 255))
    if rng.random() < 0.12:  # a grid or hatching of thin lines
        step = rng.randint(3, 9)
        color = _color(rng, 40, 110) if dark else _color(rng, 140, 230)
        slant = rng.choice((0, h, -h))
        for x in range(-h, w + h, step):
            draw.line((x, 0, x + slant, h), fill=color)
        if rng.random() < 0.5:
            for y in range(0, h, step):
                draw.line((0, y, w, y), fill=color)
    return image


def _bars(image: Image.Image, rng: random.Random) -> Image.Image:
    """Pale see-through bars at slants, some long and thin, some short and wide (weibo4)."""
    w, h = image.size
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(2, 9)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        length, thick = rng.uniform(0.1, 0.5) * w, rng.uniform(0.1, 0.5) * h
        angle = rng.uniform(-0.5, 0.5)
        dx, dy = math.cos(angle), math.sin(angle)
        corners = [
            (
                cx + a * length / 2 * dx - b * thick / 2 * dy,
                cy + a * length / 2 * dy + b * thick / 2 * dx,
            )
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        draw.polygon(corners, fill=(*_color(rng, 90, 250), rng.randint(70, 200)))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


# --- glyphs --------------------------------------------------------------------------------


@dataclass
class _Glyph:
    mask: Image.Image  # "L": 255 where the glyph's ink is
    color: RGB
    dy: int
    top: float = 0.0  # the mask's top row, down from the font's baseline
    inside: Image.Image | None = None  # "outlined": where the opaque inside is


def _pattern(kind: str, w: int, h: int, period: int, rng: random.Random) -> U8:
    """A 0/1 mask: dots on a lattice, or diagonal / straight hatching."""
    ys, xs = np.mgrid[0:h, 0:w]
    if kind == "dotted":
        on = ((xs % period) < max(1, period // 2)) & ((ys % period) < max(1, period // 2))
    elif kind == "hatched":
        direction = rng.choice((1, -1))
        on = ((xs + direction * ys) % period) < max(1, period // 2)
    else:  # stripes
        on = (ys % period) < max(1, period // 2)
    pattern: U8 = on.astype(np.uint8)
    return pattern


def _glyph(
    rng: random.Random,
    font_path: str,
    size: int,
    char: str,
    style: str,
    stroke: int,
    crisp: bool = False,
) -> tuple[Image.Image, float, Image.Image | None]:
    """One character's ink mask: filled, hollow (outline), outlined (an outline around an
    opaque inside), dotted, hatched or striped; rotated, sheared and scaled on its own. With it,
    where the mask's top row sits relative to the font's baseline (negative: above it), for
    text drawn on a baseline, and for "outlined" the inside's mask (same size; else None).
    `crisp`: drawn and turned without antialiasing, as bitmap-font captchas are (tongji4)."""
    font = _font(font_path, size)
    pad = stroke + 2
    box = font.getbbox(char, stroke_width=stroke)
    w, h = int(box[2] - box[0]) + 2 * pad, int(box[3] - box[1]) + 2 * pad
    origin = (pad - box[0], pad - box[1])
    # The mask's centre, measured down from the baseline: kept through the transforms below
    # (shear and rotation keep the centre; a squeeze scales it), then moved by the crop.
    centre = box[1] - pad + h / 2 - font.getmetrics()[0]
    mask = Image.new("L", (max(w, 1), max(h, 1)), 0)
    draw = ImageDraw.Draw(mask)
    resample = Image.Resampling.NEAREST if crisp else Image.Resampling.BILINEAR
    if crisp:
        draw.fontmode = "1"
    inside: Image.Image | None = None
    if style in ("hollow", "outlined"):
        draw.text(origin, char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        inner = Image.new("L", mask.size, 0)
        inner_draw = ImageDraw.Draw(inner)
        inner_draw.fontmode = draw.fontmode
        inner_draw.text(origin, char, font=font, fill=255)
        if stroke > 1:
            inner = inner.filter(ImageFilter.MinFilter(3))
        ink = np.asarray(mask, np.int16) - np.asarray(inner, np.int16)
        mask = Image.fromarray(np.clip(ink, 0, 255).astype(np.uint8), "L")
        if style == "outlined":
            inside = inner
    elif style in ("dotted", "hatched", "stripes"):
        draw.text(origin, char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        period = rng.randint(2, max(3, size // 6))
        on = _pattern(style, mask.width, mask.height, period, rng)
        mask = Image.fromarray((np.asarray(mask) * on).astype(np.uint8), "L")
    else:
        draw.text(origin, char, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    # The same transforms for the ink and, where there is one, the inside.
    layers = [mask] if inside is None else [mask, inside]
    if rng.random() < 0.35:  # shear
        shear = rng.uniform(-0.4, 0.4)
        extra = int(abs(shear) * mask.height) + 1
        layers = [
            m.transform(
                (m.width + extra, m.height),
                Image.Transform.AFFINE,
                (1, shear, -extra if shear > 0 else 0, 0, 1, 0),
                resample,
            )
            for m in layers
        ]
    if rng.random() < 0.25:  # squeeze or stretch
        sx, sy = rng.uniform(0.7, 1.3), rng.uniform(0.8, 1.15)
        size_now = (max(1, int(layers[0].width * sx)), max(1, int(layers[0].height * sy)))
        layers = [m.resize(size_now, resample) for m in layers]
        centre *= sy
    if rng.random() < 0.6:
        angle = rng.gauss(0, 12) if rng.random() < 0.8 else rng.uniform(-40, 40)
        layers = [m.rotate(angle, resample, expand=True) for m in layers]
    mask = layers[0]
    inside = layers[1] if len(layers) > 1 else None
    bbox = mask.getbbox()
    if not bbox:
        return mask, centre - mask.height / 2, inside
    top = centre + bbox[1] - mask.height / 2
    return mask.crop(bbox), top, inside.crop(bbox) if inside is not None else None


def _text_color(rng: random.Random, background: float) -> RGB:
    return _contrasting(rng, background, rng.uniform(90, 160))


# --- the whole captcha ---------------------------------------------------------------------


# Glyph styles and their weights; hollow, dotted, hatched and striped only where the
# glyphs are drawn at least MIN_PATTERN_SIZE px.
STYLES: tuple[tuple[str, float], ...] = (
    ("filled", 0.72), ("hollow", 0.12), ("dotted", 0.06), ("hatched", 0.06), ("stripes", 0.04),
)  # fmt: skip
# Every style `_glyph` draws; "outlined" (an outline around an opaque inside of another
# colour, as weibo4 draws) is not in STYLES, so that the defaults draw what they drew.
STYLE_NAMES = ("filled", "hollow", "outlined", "dotted", "hatched", "stripes")
MIN_PATTERN_SIZE = 20


def _weighted(
    rng: random.Random, options: Sequence[tuple[str, float]] | Sequence[tuple[int, float]]
) -> object:
    total = sum(w for _, w in options)
    pick = rng.random() * total
    for value, weight in options:
        pick -= weight
        if pick <= 0:
            return value
    return options[-1][0]


def random_label(rng: random.Random) -> str:
    """A label of 3-8 characters from one of ALPHABETS."""
    alphabet = str(_weighted(rng, ALPHABETS))
    length = int(str(_weighted(rng, LENGTHS)))
    return "".join(rng.choice(alphabet) for _ in range(length))


def _wave(pixels: U8, rng: random.Random) -> U8:
    """Shift each column up/down (and, sometimes, each row sideways) along a sine wave."""
    h, w = pixels.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    amplitude = rng.uniform(0.04, 0.16) * h
    period = rng.uniform(0.4, 1.5) * w
    phase = rng.uniform(0, 2 * math.pi)
    src_y = ys + amplitude * np.sin(2 * math.pi * xs / period + phase)
    src_x = xs.astype(np.float64)
    if rng.random() < 0.3:
        amp_x = rng.uniform(0.5, 2.5)
        src_x = src_x + amp_x * np.sin(2 * math.pi * ys / rng.uniform(6, 30) + phase)
    yi = np.clip(np.rint(src_y), 0, h - 1).astype(np.intp)
    xi = np.clip(np.rint(src_x), 0, w - 1).astype(np.intp)
    warped: U8 = pixels[yi, xi]
    return warped


def _curve(rng: random.Random, w: int, h: int) -> list[tuple[float, float]]:
    """A polyline across the image: a sine, a parabola or a loose scribble."""
    kind = rng.random()
    x0, x1 = rng.uniform(-0.1, 0.3) * w, rng.uniform(0.7, 1.1) * w
    n = 24
    xs = [x0 + (x1 - x0) * i / (n - 1) for i in range(n)]
    mid = rng.uniform(0.25, 0.75) * h
    if kind < 0.5:
        amp, period, phase = rng.uniform(0.05, 0.4) * h, rng.uniform(0.3, 1.5) * w, rng.random()
        ys = [mid + amp * math.sin(2 * math.pi * (x / period + phase)) for x in xs]
    elif kind < 0.8:
        bend = rng.uniform(-0.6, 0.6) * h
        ys = [mid + bend * (2 * (x - x0) / (x1 - x0) - 1) ** 2 - bend / 2 for x in xs]
    else:  # loops, like a spring drawn over the text
        amp, turns = rng.uniform(0.1, 0.35) * h, rng.randint(3, 8)
        return [
            (
                x0 + (x1 - x0) * t / 80 + amp * 0.7 * math.cos(2 * math.pi * turns * t / 80),
                mid + amp * math.sin(2 * math.pi * turns * t / 80),
            )
            for t in range(81)
        ]
    return list(zip(xs, ys, strict=True))


def _noise(
    rng: random.Random, draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, dark: bool
) -> None:
    """Strike lines (straight, curved, looping), arcs, dots and circles."""

    def color() -> RGB:
        return ink if rng.random() < 0.4 else _color(rng, 0, 255)

    thick = max(1, h // 30)
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3, 4))):  # straight lines
        draw.line(
            (
                rng.uniform(-5, w * 0.3),
                rng.uniform(0, h),
                rng.uniform(w * 0.7, w + 5),
                rng.uniform(0, h),
            ),
            fill=color(),
            width=rng.randint(1, thick + 1),
        )
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):  # curves
        draw.line(_curve(rng, w, h), fill=color(), width=rng.randint(1, thick + 1))
    for _ in range(rng.choice((0, 0, 0, 0, 1, 2))):  # arcs and circles
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.6) * h
        start = rng.uniform(0, 360)
        draw.arc(
            (cx - r, cy - r, cx + r, cy + r),
            start,
            start + rng.uniform(60, 360),
            fill=color(),
            width=rng.randint(1, thick),
        )
    if rng.random() < 0.4:  # dots
        for _ in range(int(w * h * rng.uniform(0.002, 0.03))):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.choice((0, 0, 0.5, 1, 1.5))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color())


def _speckle(pixels: U8, np_rng: np.random.Generator, rng: random.Random) -> U8:
    """Salt-and-pepper pixels, or coloured ones."""
    h, w = pixels.shape[:2]
    share = rng.uniform(0.01, 0.12)
    hit = np_rng.random((h, w)) < share
    out = pixels.copy()
    if rng.random() < 0.5:
        values = np_rng.integers(0, 2, (h, w, 1)).astype(np.uint8) * 255
        out[hit] = np.repeat(values, 3, axis=2)[hit]
    else:
        out[hit] = np_rng.integers(0, 256, (h, w, 3)).astype(np.uint8)[hit]
    return out


def _degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Blur, low resolution, JPEG, a small palette, 1-bit: what the web does to images."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.9) * image.height / 40))
    if rng.random() < 0.15:  # drawn small, shown big
        factor = rng.uniform(0.4, 0.8)
        w, h = image.size
        small = image.resize(
            (max(8, int(w * factor)), max(6, int(h * factor))), Image.Resampling.BILINEAR
        )
        image = small.resize(
            (w, h), rng.choice((Image.Resampling.NEAREST, Image.Resampling.BILINEAR))
        )
    roll = rng.random()
    if roll < 0.3:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=rng.randint(10, 85))
        image = Image.open(io.BytesIO(buffer.getvalue()))
        image.load()
    elif roll < 0.42:
        image = image.convert("RGB").quantize(rng.choice((4, 8, 16, 32)))
    elif roll < 0.5:
        gray = image.convert("L")
        if rng.random() < 0.5:
            image = gray.convert("1")  # Floyd-Steinberg dithering
        else:
            cut = int(np.asarray(gray).mean())
            image = gray.point(lambda v: 255 if v > cut else 0).convert("1")
    return image


def render(
    rng: random.Random,
    fonts: Sequence[Path],
    label: str | None = None,
    styles: Sequence[tuple[str, float]] = STYLES,
    min_pattern_size: int = MIN_PATTERN_SIZE,
    baseline: float = 0.0,
    clipped: float = 0.0,
    frame: float = 0.0,
    bands: float = 0.0,
    jump: float = 0.0,
    pixel: float = 0.0,
) -> tuple[Image.Image, str]:
    """One varied captcha and its label (random unless given), drawn from `rng` alone;
    its glyphs in one of `styles` (weighted), filled when drawn under `min_pattern_size`.

    A share `baseline` of captchas set their glyphs on the font's baseline, as text is drawn
    (otherwise each glyph is centred on its own); of those, a share `clipped` sit so low that
    the bottom edge cuts the descenders (a "y" that looks like a "v": hfut4). A share `frame`
    get a border. A share `bands` get pale see-through bars behind the text, and a share
    `jump` glyphs that jump up and down so far that the top and bottom edges cut them
    (weibo4). A share `pixel` are small bitmap-font captchas: 18-26 px, glyphs drawn
    without antialiasing, most of them in black and white (tongji4). The defaults (0) draw
    what earlier versions drew from a seed."""
    if not fonts:
        raise ValueError("no fonts to draw with")
    label = label if label is not None else random_label(rng)
    np_rng = np.random.default_rng(rng.getrandbits(64))
    height = round(math.exp(rng.uniform(math.log(MIN_HEIGHT), math.log(MAX_HEIGHT))))
    crisp = pixel > 0 and rng.random() < pixel
    if crisp:
        height = rng.randint(MIN_HEIGHT, 26)
    size = max(10, int(height * rng.uniform(0.55, 0.95)))
    # One font for the whole text mostly; sometimes one per character.
    mixed_fonts = rng.random() < 0.15
    font = str(rng.choice(fonts))
    # Patterns need room: below min_pattern_size every glyph is filled.
    style = str(_weighted(rng, styles)) if size >= min_pattern_size else "filled"
    bold = rng.random() < 0.2
    stroke = 0
    if style in ("hollow", "outlined"):
        stroke = max(1, size // rng.randint(12, 22))
    elif bold:
        stroke = max(1, size // 25)
    spacing = rng.uniform(-0.25, 0.35) if rng.random() < 0.5 else rng.uniform(-0.05, 0.1)
    jitter = rng.uniform(0, 0.15) * height
    jumping = jump > 0 and rng.random() < jump
    if jumping:
        jitter = rng.uniform(0.2, 0.4) * height
    glyphs: list[_Glyph] = []
    for char in label:
        char_font = str(rng.choice(fonts)) if mixed_fonts else font
        char_size = max(8, int(size * rng.uniform(0.85, 1.15)))
        mask, top, inside = _glyph(rng, char_font, char_size, char, style, stroke, crisp)
        dy = int(rng.uniform(-jitter, jitter))
        glyphs.append(_Glyph(mask, (0, 0, 0), dy, top, inside))
    on_baseline = baseline > 0 and rng.random() < baseline
    cut = on_baseline and clipped > 0 and rng.random() < clipped
    keep = rng.uniform(0.15, 0.7) if cut else 1.0  # how much of the deepest descender shows

    text_w = sum(g.mask.width for g in glyphs)
    gaps = [int(spacing * size * rng.uniform(0.6, 1.4)) for _ in glyphs[1:]]
    text_w += sum(gaps)
    text_h = max(g.mask.height for g in glyphs)
    margin_x = int(height * rng.uniform(0.05, 0.8))
    width = max(text_w + 2 * margin_x, int(height * 1.2))
    canvas_h = max(height, text_h + 2)
    baseline_y = 0.0
    if on_baseline:  # glyph tops relative to the baseline; a third of the jitter
        tops = [g.top + g.dy / 3 for g in glyphs]
        ascent = -min(tops)
        descent = max(t + g.mask.height for t, g in zip(tops, glyphs, strict=True))
        if cut:
            canvas_h = max(height, int(ascent + max(0.0, descent) * keep) + 2)
            baseline_y = canvas_h - max(0.0, descent) * keep
        else:
            canvas_h = max(height, int(ascent + descent) + 2)
            baseline_y = (canvas_h - (ascent + descent)) / 2 + ascent
    if crisp:  # a bitmap captcha's plain background
        background = Image.new("RGB", (width, canvas_h), _color(rng, 190, 255))
    else:
        background = _background(rng, np_rng, width, canvas_h)
    if bands > 0 and rng.random() < bands:
        background = _bars(background, rng)
    bg_luma = float(np.asarray(background.convert("L")).mean())
    inside_color: RGB = (255, 255, 255)
    if style == "outlined":  # the inside: white or black mostly, else pale or dark
        inside_color = _color(rng, 0, 60) if bg_luma < 128 else _color(rng, 200, 255)
        if rng.random() < 0.5:
            inside_color = (0, 0, 0) if bg_luma < 128 else (255, 255, 255)
    one_color = rng.random() < 0.5
    ink = _text_color(rng, bg_luma)

    draw = ImageDraw.Draw(background)
    dark = bg_luma < 128
    under = rng.random() < 0.4
    quiet = crisp and rng.random() < 0.6  # no lines nor dots
    if under and not quiet:
        _noise(rng, draw, width, canvas_h, ink, dark)
    x = (width - text_w) // 2 + int(rng.uniform(-0.5, 0.5) * max(0, width - text_w) / 2)
    for i, glyph in enumerate(glyphs):
        color = ink if one_color else _text_color(rng, bg_luma)
        if on_baseline:
            y = round(baseline_y + glyph.top + glyph.dy / 3)
        else:
            y = (canvas_h - glyph.mask.height) // 2 + glyph.dy
            if jumping:  # nearly half a glyph may fall off an edge
                y = min(max(y, -glyph.mask.height * 9 // 20), canvas_h - glyph.mask.height // 2)
            else:  # a quarter at most
                y = min(max(y, -glyph.mask.height // 4), canvas_h - glyph.mask.height * 3 // 4)
        if style == "filled" and rng.random() < 0.08:  # an outline of another colour
            halo = glyph.mask.filter(ImageFilter.MaxFilter(3))
            background.paste(_text_color(rng, bg_luma), (x, y), halo)
        if glyph.inside is not None:
            background.paste(inside_color, (x, y), glyph.inside)
        background.paste(color, (x, y), glyph.mask)
        x += glyph.mask.width + (gaps[i] if i < len(gaps) else 0)
    if not under and not quiet:
        _noise(rng, draw, width, canvas_h, ink, dark)

    pixels: U8 = np.asarray(background, dtype=np.uint8)
    if not crisp and rng.random() < 0.35:
        pixels = _wave(pixels, rng)
    if rng.random() < (0.5 if crisp else 0.15):
        pixels = _speckle(pixels, np_rng, rng)
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if canvas_h != height:  # text taller than the image (rotation, jitter): squeezed in
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    if frame > 0 and rng.random() < frame:
        line = max(1, round(height * rng.uniform(0.02, 0.06)))
        ImageDraw.Draw(image).rectangle((0, 0, width - 1, height - 1), outline=ink, width=line)
    if crisp and rng.random() < 0.7:  # black and white, as a bitmap captcha is served
        level = (bg_luma + _luma(ink)) / 2  # halfway between the text and its background
        gray = image.convert("L")
        return gray.point(lambda v: 255 if v > level else 0).convert("1"), label
    return _degrade(image, rng), label


def generate(
    seed: int, n: int, fonts: Sequence[Path], labels: Sequence[str] | None = None
) -> list[tuple[Image.Image, str]]:
    """`n` varied captchas from `seed`; the same arguments always give the same images."""
    rng = random.Random(seed)
    return [render(rng, fonts, labels[i] if labels else None) for i in range(n)]


def main() -> None:
    """Write a contact sheet of samples and measure the speed on this thread."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="images to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of 48 samples here")
    args = parser.parse_args()
    started = time.perf_counter()
    fonts = find_fonts()
    print(f"{len(fonts)} usable fonts ({time.perf_counter() - started:.1f} s to find them)")
    started = time.perf_counter()
    images = generate(args.seed, args.n, fonts)
    elapsed = time.perf_counter() - started
    print(f"{args.n / elapsed:.0f} images/s on one thread")
    if args.sheet:
        cell_w, cell_h = 200, 60
        sheet = Image.new("RGB", (4 * cell_w, 12 * (cell_h + 14)), "white")
        draw = ImageDraw.Draw(sheet)
        for i, (image, label) in enumerate(images[:48]):
            scaled = image.convert("RGB")
            scaled = scaled.resize(
                (min(cell_w, int(scaled.width * cell_h / scaled.height)), cell_h)
            )
            x, y = (i % 4) * cell_w, (i // 4) * (cell_h + 14)
            sheet.paste(scaled, (x, y))
            draw.text((x + 2, y + cell_h), label, fill=(200, 0, 0))
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
