"""A site model's answer under its threshold stands when the generalist chain read the same
text, if its training job measured such answers right often enough (the version's
`agreement`); otherwise the chain's answer goes out unsure, to wait for upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from capgate.ocr import synth
from capgate.ocr.chain import build
from capgate.ocr.engine import DEFAULT_MODEL, Constraints
from capgate.solvers import ocr


@pytest.fixture
def capgate_chain() -> Iterator[None]:
    """The generalist chain of this process: capgate's shipped model alone."""
    ocr._chain, ocr._chain_model = build(("capgate",), None, threads=1), None
    try:
        yield
    finally:
        ocr._chain = ocr._chain_model = None
        ocr._site_engines.clear()


def _images() -> list[tuple[bytes, str]]:
    return synth.generate(77_001, 20, synth.CHARSET_B, 4, 4)


def test_an_agreeing_answer_under_the_threshold_stands_with_its_measured_confidence(
    capgate_chain: None,
) -> None:
    # The "site model" is the shipped model itself: it always agrees with the chain, and
    # no answer reaches a threshold over 1.
    site = ocr.SiteRead(DEFAULT_MODEL, threshold=1.01, precision=0.99, version=7, agreement=0.98)
    stood = 0
    for image, _ in _images():
        text, confidence, version = ocr._read(image, Constraints(), None, site)
        if text:
            assert (confidence, version) == (0.98, 7)
            stood += 1
    assert stood == 20


def test_without_agreement_an_answer_under_the_threshold_is_the_chains_and_unsure(
    capgate_chain: None,
) -> None:
    site = ocr.SiteRead(DEFAULT_MODEL, threshold=1.01, precision=0.99, version=7)
    assert ocr._chain is not None
    for image, _ in _images():
        text, confidence, version = ocr._read(image, Constraints(), None, site)
        assert version is None
        assert (text, confidence) == (
            ocr._chain.read(image, Constraints()).text,
            ocr._chain.read(image, Constraints()).confidence,
        )


def test_over_the_threshold_the_site_model_answers_with_its_precision(
    capgate_chain: None,
) -> None:
    site = ocr.SiteRead(DEFAULT_MODEL, threshold=0.0, precision=0.99, version=3, agreement=0.98)
    for image, _ in _images():
        text, confidence, version = ocr._read(image, Constraints(), None, site)
        assert text and (confidence, version) == (0.99, 3)


@pytest.mark.parametrize(
    ("scores", "agreement"),
    [
        ({"agreement_precision": 0.985}, 0.985),
        ({"agreement_precision": 1}, 1.0),
        ({}, None),  # a version from before agreement, or nothing agreed
        ({"agreement_precision": None}, None),
        ({"agreement_precision": True}, None),
        ({"agreement_precision": "0.99"}, None),
        ({"agreement_precision": 0}, None),
        ({"agreement_precision": 1.5}, None),
    ],
)
def test_a_versions_agreement_is_read_from_its_scores_or_is_none(
    scores: dict[str, object], agreement: float | None
) -> None:
    from capgate.learning.served import _agreement

    assert _agreement(scores) == agreement
