"""The engine chain's rule, with fake engines: who reads, and which answer stands with
what confidence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from capgate.ocr import chain as chain_module
from capgate.ocr import ddddocr_engine
from capgate.ocr.calibration import Calibration
from capgate.ocr.chain import (
    ENGINES,
    FEATURES,
    Chain,
    Referee,
    Rule,
    combine,
    features,
    load_rule,
    resolve,
)
from capgate.ocr.engine import Constraints, OcrResult, Reading

IMAGE = b"an image"


@dataclass(frozen=True)
class FakeReading(Reading):
    """A reading whose likelihoods are given: text -> log-probability."""

    likelihoods: dict[str, float] = field(default_factory=dict)

    def likelihood(self, text: str) -> float:
        return self.likelihoods.get(text.lower(), -math.inf)


def reading(text: str, confidence: float, **likelihoods: float) -> FakeReading:
    return FakeReading(
        OcrResult(text, confidence),
        confidence,
        np.zeros((1, 1), dtype=np.float32),
        "",
        {k.lower(): v for k, v in likelihoods.items()},
    )


class FakeEngine:
    def __init__(self, name: str, answer: FakeReading) -> None:
        self.name = name
        self.answer = answer
        self.calls: list[Constraints | None] = []

    @property
    def calibrated(self) -> bool:
        return True

    def read(
        self, image: bytes, allowed: str | None = None, constraints: Constraints | None = None
    ) -> OcrResult:
        return self.reading(image, constraints).result

    def reading(self, image: bytes, constraints: Constraints | None = None) -> Reading:
        self.calls.append(constraints)
        return self.answer


# Agreeing answers: probability right = the combined confidence, a little raised.
AGREEING = Calibration((0.0, 0.5, 1.0), (0.0, 0.7, 0.99))
# A referee that believes whichever engine is surer of its own answer against the
# other's (weights on the two margins only), with a small prior for the second engine.
REFEREE = Referee(
    (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0),
    (0.2, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
)
RULE = Rule(0.9, AGREEING, REFEREE)


def pair(first: FakeReading, second: FakeReading, rule: Rule | None = RULE) -> Chain:
    return Chain([FakeEngine("capgate", first), FakeEngine("ddddocr", second)], rule)


def calls(chain: Chain) -> list[int]:
    return [len(engine.calls) for engine in chain.engines]  # type: ignore[attr-defined]


def test_a_sure_first_answer_stands_and_the_second_engine_never_reads() -> None:
    chain = pair(reading("AB12", 0.95), reading("xyz", 0.99))
    answer = chain.read(IMAGE)
    assert (answer.text, answer.confidence, answer.engine) == ("AB12", 0.95, "capgate")
    assert calls(chain) == [1, 0]
    # At the threshold exactly it stands too.
    assert pair(reading("AB12", 0.9), reading("xyz", 0.99)).read(IMAGE).engine == "capgate"


def test_the_task_constraints_reach_every_engine() -> None:
    chain = pair(reading("1234", 0.2), reading("1234", 0.8))
    constraints = Constraints("0123456789", 4, 4)
    chain.read(IMAGE, constraints)
    assert [e.calls for e in chain.engines] == [[constraints], [constraints]]  # type: ignore[attr-defined]


def test_agreeing_engines_answer_in_the_first_ones_case_and_are_surer_together() -> None:
    chain = pair(reading("Ab12", 0.4), reading("aB12", 0.5))
    answer = chain.read(IMAGE)
    assert answer.text == "Ab12"
    assert answer.engine == "capgate+ddddocr"
    combined = 1 - 0.6 * 0.5
    assert answer.confidence == pytest.approx(AGREEING(combined))
    assert answer.confidence > 0.5
    assert calls(chain) == [1, 1]


def test_differing_answers_go_to_the_referee() -> None:
    # capgate finds its answer far likelier than ddddocr's; ddddocr barely prefers its own.
    first = reading("AB12", 0.3, ab12=-1.0, xy34=-6.0)
    second = reading("xy34", 0.6, ab12=-2.0, xy34=-1.5)
    answer = pair(first, second).read(IMAGE)
    expected = REFEREE.weigh(features("AB12", "xy34", 0.3, 0.6, 5.0, 0.5))
    assert answer.text == "AB12" and answer.engine == "capgate"
    assert answer.confidence == pytest.approx(expected[0])
    # The other way round, ddddocr's answer stands, with its own probability.
    second = reading("xy34", 0.6, ab12=-20.0, xy34=-1.0)
    first = reading("AB12", 0.3, ab12=-1.0, xy34=-1.2)
    answer = pair(first, second).read(IMAGE)
    assert answer.text == "xy34" and answer.engine == "ddddocr"
    assert answer.confidence == pytest.approx(
        REFEREE.weigh(features("AB12", "xy34", 0.3, 0.6, 0.2, 19.0))[1]
    )
    assert 0.0 <= answer.confidence <= 1.0


def test_the_referees_pick_decides_and_each_answer_keeps_its_own_probability() -> None:
    # Per engine, the first looks likelier right (a prior of +3 for it); the pick weighs
    # the margins alone, and ddddocr is far surer of its answer against capgate's.
    referee = Referee(
        (3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0),
    )
    rule = Rule(0.9, AGREEING, referee)
    first = reading("7880", 0.5, **{"7880": -1.0, "1880": -1.4})  # margin 0.4
    second = reading("1880", 0.8, **{"7880": -8.0, "1880": -1.1})  # margin 6.9
    x = features("7880", "1880", 0.5, 0.8, 0.4, 6.9)
    p_first, p_second = referee.weigh(x)
    assert p_first > p_second  # the old rule (the likelier one) would keep capgate's
    answer = pair(first, second, rule).read(IMAGE)
    assert (answer.text, answer.engine) == ("1880", "ddddocr")
    assert answer.confidence == pytest.approx(p_second)
    # Without a pick, the answer more likely right stands, as before.
    answer = pair(first, second, Rule(0.9, AGREEING, Referee(referee.first, referee.second))).read(
        IMAGE
    )
    assert answer.text == "7880"
    assert answer.confidence == pytest.approx(p_first)
    # Where capgate is the surer one against ddddocr's answer, the pick keeps it.
    first = reading("7880", 0.5, **{"7880": -1.0, "1880": -9.0})
    second = reading("1880", 0.8, **{"7880": -1.5, "1880": -1.1})
    assert pair(first, second, rule).read(IMAGE).text == "7880"
    assert Rule.from_json(json.loads(json.dumps(rule.to_json()))) == rule


def test_an_answer_one_engine_cannot_spell_counts_as_a_clipped_margin() -> None:
    first = reading("AB12", 0.3, ab12=-1.0)  # ddddocr's text is -inf to capgate
    second = reading("宁34", 0.9, ab12=-3.0, **{"宁34": -0.5})
    x = features("AB12", "宁34", 0.3, 0.9, math.inf, 2.5)
    assert x[3] == chain_module.MARGIN_CLIP
    assert pair(first, second).read(IMAGE).text == "AB12"


def test_an_empty_answer_leaves_the_other() -> None:
    assert pair(reading("", 0.0), reading("xy34", 0.4)).read(IMAGE).text == "xy34"
    answer = pair(reading("AB12", 0.2), reading("", 0.0)).read(IMAGE)
    assert (answer.text, answer.confidence) == ("AB12", 0.2)
    assert pair(reading("", 0.0), reading("", 0.0)).read(IMAGE).text == ""


def test_without_a_rule_the_surer_answer_stands() -> None:
    answer = pair(reading("AB12", 0.3), reading("xy34", 0.6), rule=None).read(IMAGE)
    assert (answer.text, answer.confidence) == ("xy34", 0.6)
    answer = pair(reading("AB12", 0.6), reading("ab12", 0.3), rule=None).read(IMAGE)
    assert (answer.text, answer.confidence, answer.engine) == ("AB12", 0.6, "capgate+ddddocr")


def test_one_engine_answers_alone_whatever_its_confidence() -> None:
    engine = FakeEngine("ddddocr", reading("xy34", 0.05))
    answer = Chain([engine]).read(IMAGE)
    assert (answer.text, answer.confidence, answer.engine) == ("xy34", 0.05, "ddddocr")
    with pytest.raises(ValueError):
        Chain([])


def test_combine_asks_for_the_margins_only_when_the_answers_differ() -> None:
    def never() -> tuple[float, float]:
        raise AssertionError("margins computed for agreeing answers")

    assert combine(RULE, ("AB12", 0.2), ("ab12", 0.3), never)[0] == chain_module.BOTH
    assert combine(RULE, ("", 0.0), ("ab12", 0.3), never) == (chain_module.SECOND, 0.3)


def test_resolve_names_the_engines_in_chain_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ddddocr_engine, "available", lambda: True)
    assert resolve(["auto"]) == ("capgate", "ddddocr")
    assert resolve([]) == ("capgate", "ddddocr")
    assert resolve(["ddddocr", "capgate"]) == ENGINES
    assert resolve([" DDDDOCR "]) == ("ddddocr",)
    monkeypatch.setattr(ddddocr_engine, "available", lambda: False)
    assert resolve(["auto"]) == ("capgate",)
    with pytest.raises(ValueError, match="capgate\\[ddddocr\\]"):
        resolve(["capgate", "ddddocr"])
    with pytest.raises(ValueError, match="unknown engine 'tesseract'"):
        resolve(["capgate", "tesseract"])


def test_a_rule_round_trips_through_json_and_a_malformed_one_is_refused() -> None:
    assert Rule.from_json(json.loads(json.dumps(RULE.to_json()))) == RULE
    document = RULE.to_json()
    del document["referee"]
    with pytest.raises(ValueError):
        Rule.from_json(document)
    with pytest.raises(ValueError):
        Referee((1.0,), (1.0,))
    with pytest.raises(ValueError):
        Referee((math.nan,) * len(FEATURES), (0.0,) * len(FEATURES))
    with pytest.raises(ValueError):
        Referee((0.0,) * len(FEATURES), (0.0,) * len(FEATURES), (1.0,))


def test_the_shipped_rule_and_ddddocr_calibration_were_fitted_apart_from_the_checks() -> None:
    """ddddocr.json is read whether or not ddddocr is installed."""
    rule = load_rule()
    assert rule is not None
    assert 0.5 <= rule.threshold <= 1.0
    assert rule.referee.which is not None
    document = json.loads(ddddocr_engine.CALIBRATION.read_text())
    for section in ("calibration", "chain"):
        images = document[section]["fitted_on"]["images"]
        assert not set(images) & {"hfut4", "weibo4", "ems6", "tongji4"}
        assert {"B", "A", "cloud4d", "henan4d", "tjsp5"} <= set(images)
    calibration = ddddocr_engine.load_calibration()
    assert calibration is not None
    assert 0.9 < calibration.calibrated[-1] < 1.0
    # Agreement is evidence: two engines that agree are surer than either alone.
    assert rule.agreeing(0.75) > 0.5


def test_an_image_the_second_engine_cannot_take_leaves_the_first_answer() -> None:
    class Refusing(FakeEngine):
        def reading(self, image: bytes, constraints: Constraints | None = None) -> Reading:
            raise ValueError("ddddocr cannot read the image")

    chain = Chain(
        [FakeEngine("capgate", reading("AB12", 0.2)), Refusing("ddddocr", reading("", 0))]
    )
    answer = chain.read(IMAGE)
    assert (answer.text, answer.confidence, answer.engine) == ("AB12", 0.2, "capgate")
