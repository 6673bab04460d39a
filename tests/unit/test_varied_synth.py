"""training/varied.py: the varied synthetic captchas of the generalist model (issue 16)."""

from __future__ import annotations

import io
import random
import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support import training_script

LIBERATION = Path("/usr/share/fonts/truetype/liberation")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


varied = training_script("varied")


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    found = [p for p in sorted(LIBERATION.glob("*.ttf"))[:4] if varied.usable_font(p)]
    if not found:
        pytest.skip("no Liberation fonts installed")
    return found


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_the_same_seed_gives_the_same_images(fonts: list[Path]) -> None:
    first = [(_png(i), t) for i, t in varied.generate(7, 12, fonts)]
    again = [(_png(i), t) for i, t in varied.generate(7, 12, fonts)]
    other = [(_png(i), t) for i, t in varied.generate(8, 12, fonts)]
    assert first == again
    assert first != other


def test_labels_and_sizes_stay_in_range(fonts: list[Path]) -> None:
    images = varied.generate(1, 60, fonts)
    for image, label in images:
        assert 3 <= len(label) <= 8
        assert set(label) <= set(string.digits + string.ascii_letters)
        assert varied.MIN_HEIGHT <= image.height <= varied.MAX_HEIGHT
        assert image.width >= image.height
    modes = {image.mode for image, _ in images}
    assert "RGB" in modes and len(modes) >= 2  # some palette, 1-bit or JPEG-decoded ones


def test_a_given_label_is_drawn(fonts: list[Path]) -> None:
    image, label = varied.render(varied.random.Random(3), fonts, "Ab12x")
    assert label == "Ab12x"
    assert image.getbbox() is not None


def test_dejavu_and_symbol_fonts_are_left_out(tmp_path: Path) -> None:
    if DEJAVU.is_dir():
        assert varied.font_files([DEJAVU]) == []
    (tmp_path / "D050000L.otf").write_bytes(b"")
    (tmp_path / "Broken.ttf").write_bytes(b"not a font")
    files = varied.font_files([tmp_path])
    assert [p.name for p in files] == ["Broken.ttf"]
    assert not varied.usable_font(files[0])


def test_no_fonts_is_an_error() -> None:
    with pytest.raises(ValueError, match="no fonts"):
        varied.render(varied.random.Random(0), [])


class _Upright(random.Random):
    """A random source under which `_glyph` draws a glyph as the font does: its shear,
    squeeze and rotation are each drawn when `random()` is under some share."""

    def random(self) -> float:
        return 0.999


def test_a_glyph_knows_where_the_baseline_is(fonts: list[Path]) -> None:
    """Text set on a baseline (render's `baseline`) places each glyph by its top against
    the baseline: "x" sits on it, "y" reaches below it, "T" above the "x"."""
    font = str(fonts[0])
    rng = _Upright(1)
    placed = {}
    for char in "xyT":
        mask, top, _ = varied._glyph(rng, font, 40, char, "filled", 0)
        placed[char] = (top, top + mask.height)
    x_top, x_bottom = placed["x"]
    assert abs(x_bottom) <= 2  # on the baseline, give or take antialiasing
    assert placed["y"][1] >= x_bottom + 6  # the descender
    assert placed["T"][0] <= x_top - 3  # a capital stands above the x-height
    assert abs(placed["y"][0] - x_top) <= 2  # both start at the x-height


def test_the_new_options_are_off_by_default_and_change_the_drawing_when_on(
    fonts: list[Path],
) -> None:
    """Zero is what render draws without them; on, the same seeds draw otherwise. (That
    zero draws what earlier versions drew is not checked here: it would need their images,
    which depend on the installed fonts and Pillow.)"""
    plain = [_png(i) for i, _ in (varied.render(random.Random(s), fonts) for s in range(8))]
    zero = [
        _png(i)
        for i, _ in (
            varied.render(
                random.Random(s),
                fonts,
                baseline=0.0,
                clipped=0.0,
                frame=0.0,
                bands=0.0,
                jump=0.0,
                pixel=0.0,
            )
            for s in range(8)
        )
    ]
    assert plain == zero
    on = [
        _png(i)
        for i, _ in (
            varied.render(random.Random(s), fonts, baseline=1.0, clipped=1.0) for s in range(8)
        )
    ]
    assert on != plain
    for option in ("frame", "bands", "jump", "pixel"):
        drawn = [
            _png(i)
            for i, _ in (varied.render(random.Random(s), fonts, **{option: 1.0}) for s in range(8))
        ]
        assert drawn != plain, option


def test_an_outlined_glyph_has_an_opaque_inside_within_its_outline(fonts: list[Path]) -> None:
    """ "outlined" (weibo4's letters): the ink is the outline; the inside, a mask of the same
    size, covers where a hollow glyph shows the background, and not the outline itself."""
    font = str(fonts[0])
    outline, _, inside = varied._glyph(_Upright(1), font, 40, "O", "outlined", 3)
    hollow, _, none = varied._glyph(_Upright(1), font, 40, "O", "hollow", 3)
    assert none is None and inside is not None
    assert inside.size == outline.size and outline.tobytes() == hollow.tobytes()
    ink, fill = np.asarray(outline) > 127, np.asarray(inside) > 127
    assert fill.sum() > 0.2 * ink.sum()  # the O's own ring, inside a thick outline
    assert (ink & fill).sum() < 0.05 * fill.sum()
    image, _ = varied.render(random.Random(0), fonts, "OO", styles=(("outlined", 1.0),))
    assert image.getbbox() is not None


def test_outlined_is_a_style_the_trainer_takes() -> None:
    assert "outlined" in varied.STYLE_NAMES
    assert "outlined" not in {name for name, _ in varied.STYLES}  # the defaults stay


def test_a_crisp_glyph_has_no_antialiasing_and_pixel_captchas_are_small(
    fonts: list[Path],
) -> None:
    """`pixel` (tongji4's bitmap digits): glyphs drawn and turned without grey edges; the
    captchas 18-26 px high, most of them black and white."""
    rng = random.Random(2)
    for char in "8a1":
        crisp, _, _ = varied._glyph(rng, str(fonts[0]), 14, char, "filled", 0, crisp=True)
        soft, _, _ = varied._glyph(_Upright(1), str(fonts[0]), 14, char, "filled", 0)
        assert set(np.unique(np.asarray(crisp))) <= {0, 255}
        assert len(np.unique(np.asarray(soft))) > 2  # the default is antialiased
    drawn = [varied.render(random.Random(s), fonts, pixel=1.0)[0] for s in range(30)]
    assert all(varied.MIN_HEIGHT <= image.height <= 26 for image in drawn)
    assert sum(image.mode == "1" for image in drawn) >= 10
