"""What the operator sees of each site (`capgate sites`, the dashboard's panel, /metrics):
labels, the model serving it, held-out and live accuracy, the local share, the upstream
spend saved, and its history of promotions and demotions."""

from __future__ import annotations

import msgspec

from capgate.store.base import Store
from capgate.store.sites import DEFAULT_SITE, SiteModel


class SiteEventView(msgspec.Struct):
    """One line of a site's history."""

    at: float
    kind: str
    version: int
    labels: int
    reason: str


class SiteView(msgspec.Struct):
    """One site, at one instant (every node shows the same: it is all in the store)."""

    site: str
    labels: int
    model_version: int | None  # the serving version (None: the generalist engines read it)
    heldout_accuracy: float | None  # the serving model's, on its held-out labels
    heldout_images: int | None
    threshold_precision: float | None  # how often its kept answers were right there
    threshold_coverage: float | None  # the share of held-out images it kept
    live_accuracy: float | None  # audits the upstream agreed with / all audits
    audits: int
    audits_agreed: int
    reported_wrong: int
    local: int
    upstream: int
    by_model: int
    local_share: float | None
    saved: int  # micro-units
    history: list[SiteEventView]
    # The share of held-out images answered locally when agreeing answers under the
    # threshold stand too (rules.choose_agreement; None: they do not).
    agreement_coverage: float | None = None

    def kept_text(self) -> str:
        """The held-out share the serving model answers itself, as tables show it: over
        its threshold, and in parentheses with agreeing answers too (`-`: no model)."""
        if self.threshold_coverage is None:
            return "-"
        text = f"{self.threshold_coverage:.0%}"
        if self.agreement_coverage is not None:
            text += f" ({self.agreement_coverage:.0%})"
        return text


# The most sites shown (the dashboard, /metrics): those with the most answers.
MAX_SITES = 200


async def gather_sites(store: Store, history: int = 10) -> list[SiteView]:
    """The sites the store has seen, at most MAX_SITES of them, busiest first (the
    generalist model's registry entry is no site)."""
    serving = await store.serving_models()
    seen = [c for c in await store.site_counters() if c.site != DEFAULT_SITE]
    seen.sort(key=lambda c: (-(c.local + c.upstream + c.labels), c.site))
    views = []
    for counters in seen[:MAX_SITES]:
        model = serving.get(counters.site)
        answered = counters.local + counters.upstream
        events = await store.site_history(counters.site, history)
        views.append(
            SiteView(
                site=counters.site,
                labels=counters.labels,
                model_version=model.version if model else None,
                heldout_accuracy=_score(model, "candidate_right"),
                heldout_images=_count(model, "held_out"),
                threshold_precision=model.precision if model else None,
                threshold_coverage=_fraction(model, "coverage"),
                live_accuracy=(
                    counters.audits_agreed / counters.audits if counters.audits else None
                ),
                audits=counters.audits,
                audits_agreed=counters.audits_agreed,
                reported_wrong=counters.reported_wrong,
                local=counters.local,
                upstream=counters.upstream,
                by_model=counters.by_model,
                local_share=counters.local / answered if answered else None,
                saved=counters.saved,
                history=[
                    SiteEventView(e.at, e.kind, e.version, e.labels, e.reason) for e in events
                ],
                agreement_coverage=_fraction(model, "coverage_with_agreement"),
            )
        )
    return views


def _count(model: SiteModel | None, name: str) -> int | None:
    value = model.scores.get(name) if model else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fraction(model: SiteModel | None, name: str) -> float | None:
    value = model.scores.get(name) if model else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _score(model: SiteModel | None, right: str) -> float | None:
    held, hits = _count(model, "held_out"), _count(model, right)
    return hits / held if held and hits is not None else None
