"""The shipped OCR model, read through the real engine on freshly generated captchas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from capgate.ocr import synth
from capgate.ocr.engine import DEFAULT_MODEL, OcrEngine, decode


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


def test_the_model_ships_inside_the_package_and_is_small() -> None:
    assert DEFAULT_MODEL.is_file()
    assert DEFAULT_MODEL.stat().st_size <= 5_000_000


def test_reads_most_digit_uppercase_captchas(engine: OcrEngine) -> None:
    samples = synth.generate(31_337, 200, synth.CHARSET_B, 4, 4)
    results = engine.read_batch([png for png, _ in samples])
    right = [r.text == label for r, (_, label) in zip(results, samples, strict=True)]
    assert sum(right) >= 160, f"only {sum(right)} of 200 read exactly"
    confidences = [r.confidence for r in results]
    assert all(0.0 <= c <= 1.0 for c in confidences)
    wrong_conf = [c for c, ok in zip(confidences, right, strict=True) if not ok]
    right_conf = [c for c, ok in zip(confidences, right, strict=True) if ok]
    if wrong_conf:
        assert np.mean(right_conf) > np.mean(wrong_conf)


def test_reads_sums_and_phrases_in_their_shape(engine: OcrEngine) -> None:
    from capgate.ocr.grammar import evaluate
    from capgate.solvers.ocr import constraints_for

    sums = synth.generate(41_000, 100, "", 0, 0, kind="math")
    read = engine.read_batch([png for png, _ in sums], constraints=constraints_for({"math": 1}))
    values = [evaluate(r.text) for r in read]
    assert all(v is not None for v in values)  # the grammar reads only sums
    right = sum(v == evaluate(label) for v, (_, label) in zip(values, sums, strict=True))
    assert right >= 80, f"only {right} of 100 sums answered right"
    phrases = synth.generate(42_000, 100, "", 0, 0, kind="phrase")
    options = constraints_for({"phrase": True})
    read = engine.read_batch([png for png, _ in phrases], constraints=options)
    assert all(" " in r.text and "  " not in r.text for r in read)
    right = sum(r.text == label for r, (_, label) in zip(read, phrases, strict=True))
    assert right >= 60, f"only {right} of 100 phrases read exactly"
    # Without the phrase option a reading never holds a space or a sign.
    plain = engine.read_batch([png for png, _ in phrases[:20] + sums[:20]])
    assert all(r.text.isalnum() for r in plain)


def test_single_and_batch_reads_agree(engine: OcrEngine) -> None:
    samples = synth.generate(8, 6, synth.CHARSET_A, 4, 6)
    batch = engine.read_batch([png for png, _ in samples])
    single = [engine.read(png) for png, _ in samples]
    assert [r.text for r in batch] == [r.text for r in single]
    assert [r.confidence for r in batch] == pytest.approx([r.confidence for r in single])


def test_confidence_is_calibrated_when_the_model_has_a_calibration(
    engine: OcrEngine, tmp_path: Path
) -> None:
    samples = synth.generate(9, 12, synth.CHARSET_A, 4, 6)
    images = [png for png, _ in samples]
    raw = OcrEngine(calibrated=False).read_batch(images)
    assert engine.calibration is not None
    read = engine.read_batch(images)
    assert [r.text for r in read] == [r.text for r in raw]
    assert [r.confidence for r in read] == pytest.approx(
        [engine.calibration(r.confidence) for r in raw]
    )
    # A model without one (as `capgate ocr train` writes it) answers with raw scores.
    document = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    del document["calibration"]
    (tmp_path / "model.json").write_text(json.dumps(document))
    shutil.copyfile(DEFAULT_MODEL, tmp_path / "model.onnx")
    bare = OcrEngine(tmp_path / "model.onnx")
    assert bare.calibration is None
    assert [r.confidence for r in bare.read_batch(images)] == pytest.approx(
        [r.confidence for r in raw]
    )


@pytest.mark.parametrize("junk", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 64])
def test_unreadable_bytes_raise_value_error(engine: OcrEngine, junk: bytes) -> None:
    with pytest.raises(ValueError, match="not a readable"):
        engine.read(junk)


def test_synth_is_reproducible() -> None:
    first = synth.generate(5, 3, synth.CHARSET_B, 4, 4)
    assert synth.generate(5, 3, synth.CHARSET_B, 4, 4) == first
    other = synth.generate(6, 3, synth.CHARSET_B, 4, 4)
    assert [png for png, _ in other] != [png for png, _ in first]
    assert all(len(label) == 4 and set(label) <= set(synth.CHARSET_B) for _, label in first)


def test_greedy_ctc_decoding_collapses_repeats_and_blanks() -> None:
    charset = "AB"
    # Frames: A, A, blank, A, B, B -> "AAB"
    frames = [1, 1, 0, 1, 2, 2]
    logits = np.full((len(frames), 3), -10.0, dtype=np.float32)
    for t, cls in enumerate(frames):
        logits[t, cls] = 10.0
    result = decode(logits, charset)
    assert result.text == "AAB"
    assert result.confidence == pytest.approx(1.0, abs=1e-6)
    # Constraining to "B" picks the best allowed reading instead of filtering.
    assert decode(logits, charset, allowed="B").text == "B"


def test_length_bounds_pick_the_best_reading_of_that_length() -> None:
    from capgate.ocr.engine import Constraints

    charset = "AB"
    # Frames clearly read A, A, blank, B, B ("AB"), but the third frame also leans to "B".
    logits = np.array([[0, 9, 0], [0, 9, 0], [6, 0, 5], [0, 0, 9], [0, 0, 9]], dtype=np.float32)
    assert decode(logits, charset).text == "AB"
    assert decode(logits, charset, constraints=Constraints(max_length=1)).text in ("A", "B")
    three = decode(logits, charset, constraints=Constraints(min_length=3))
    assert len(three.text) == 3
    assert three.confidence < decode(logits, charset).confidence
    assert decode(logits, charset, constraints=Constraints(min_length=9)).text == ""


def test_wide_length_bounds_agree_with_greedy_decoding() -> None:
    from capgate.ocr.engine import Constraints

    rng = np.random.default_rng(3)
    for _ in range(200):
        logits = rng.normal(0, 3, (12, 5)).astype(np.float32)
        greedy = decode(logits, "abcd")
        bounded = decode(logits, "abcd", constraints=Constraints(min_length=0, max_length=12))
        assert bounded.text == greedy.text
        assert bounded.confidence == pytest.approx(greedy.confidence)
        exact = len(greedy.text)
        fixed = decode(logits, "abcd", constraints=Constraints(min_length=exact, max_length=exact))
        assert fixed.text == greedy.text


def test_bounded_decoding_finds_the_most_likely_path_by_brute_force() -> None:
    import itertools

    from capgate.ocr.engine import Constraints

    def spelled(path: tuple[int, ...]) -> int:
        count, previous = 0, 0
        for cls in path:
            count += cls not in (0, previous)
            previous = cls
        return count

    rng = np.random.default_rng(11)
    for _ in range(40):
        logits = rng.normal(0, 2, (6, 3)).astype(np.float32)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        for low, high in ((1, 1), (2, 2), (3, 6), (0, 2)):
            paths = [p for p in itertools.product(range(3), repeat=6) if low <= spelled(p) <= high]
            best = max(paths, key=lambda p: sum(logp[t, c] for t, c in enumerate(p)))
            result = decode(logits, "ab", constraints=Constraints(min_length=low, max_length=high))
            expected = decode(
                np.where(np.eye(3, dtype=bool)[list(best)], 50.0, -50.0).astype(np.float32), "ab"
            )
            assert result.text == expected.text, (low, high)


def test_a_large_alphabet_is_pruned_without_changing_the_bounded_reading() -> None:
    """ddddocr has 8,000 classes: a bounded length searches only the few that rank high in
    some frame; on peaked outputs (as a recognizer's are) that is the exact search."""
    from capgate.ocr.engine import PRUNE_ABOVE, Constraints, _best_path_of_length, _softmax

    rng = np.random.default_rng(5)
    classes = PRUNE_ABOVE * 2
    charset = "".join(chr(0x4E00 + i) for i in range(classes - 1))
    for _ in range(20):
        logits = rng.normal(0, 1, (14, classes)).astype(np.float32)
        for t, cls in enumerate(rng.integers(0, classes, 14)):
            logits[t, cls] += 9.0
        for low, high in ((4, 4), (2, 6), (9, 12)):
            result = decode(
                logits, charset, constraints=Constraints(min_length=low, max_length=high)
            )
            exact = _best_path_of_length(_softmax(logits), low, high)
            previous, text = 0, []
            for cls in exact:
                if cls not in (0, previous):
                    text.append(charset[cls - 1])
                previous = cls
            assert result.text == "".join(text)


def test_ctc_likelihood_sums_every_path_that_spells_the_text() -> None:
    import itertools

    from capgate.ocr.engine import ctc_log_likelihood

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 2, (5, 3))
    logp = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(3), repeat=5):
        spelled, previous = [], 0
        for cls in path:
            if cls not in (0, previous):
                spelled.append(cls)
            previous = cls
        p = float(np.exp(sum(logp[t, c] for t, c in enumerate(path))))
        totals[tuple(spelled)] = totals.get(tuple(spelled), 0.0) + p
    assert sum(totals.values()) == pytest.approx(1.0, rel=1e-5)
    for labels, p in totals.items():
        assert np.exp(ctc_log_likelihood(logp, list(labels))) == pytest.approx(p, rel=1e-4)
    # Six characters cannot fit in five frames.
    assert ctc_log_likelihood(logp, [1, 2, 1, 2, 1, 2]) == -np.inf


def test_caseless_likelihood_counts_both_cases_of_a_letter() -> None:
    from capgate.ocr.engine import caseless_likelihood

    charset = "aA1"
    # One frame split between "a" and "A", then a sure "1".
    probs = np.array([[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    for text in ("a1", "A1"):
        assert caseless_likelihood(probs, charset, text) == pytest.approx(0.0, abs=1e-6)
    assert caseless_likelihood(probs, charset, "1") < -10
    assert caseless_likelihood(probs, charset, "b1") == -np.inf


def test_a_reading_is_what_read_answers(engine: OcrEngine) -> None:
    from capgate.solvers.ocr import constraints_for

    samples = synth.generate(10, 6, synth.CHARSET_B, 4, 4)
    for options in ({}, {"numeric": 1}, {"minLength": 4, "maxLength": 4}):
        constraints = constraints_for(options)
        for png, _ in samples:
            reading = engine.reading(png, constraints)
            result = engine.read(png, constraints=constraints)
            assert reading.result.text == result.text
            assert reading.result.confidence == pytest.approx(result.confidence)
            assert engine.calibration is not None
            if reading.result.text:  # (an empty answer is 0 sure)
                assert engine.calibration(reading.raw) == pytest.approx(result.confidence)
                # The model finds its own answer likelier than a changed one.
                other = ("7" if reading.result.text[0] != "7" else "8") + reading.result.text[1:]
                assert reading.likelihood(reading.result.text) > reading.likelihood(other)
