"""What the store keeps for learning each site's captcha (issue 17): the labels that paid
upstream answers gave, the model registry, each site's counters and audits, and the lock
that lets one training job run at a time across a deployment.

A site is a short name: the host of a task's websiteURL, a model a task or key names, or
`DEFAULT_SITE` for the operator's own generalist model (`capgate ocr install`), which every
node serves instead of the shipped one. The registry holds, per site, numbered versions of
a model (its ONNX bytes and its model.json), at most one of them `serving`. Every node polls
`serving_models` (a small, cheap read) and loads a version it does not have yet: that is
how a promotion reaches every node and worker without a restart.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

# The registry's name for the operator's generalist model (no task names it as a site:
# a site is a host or a model name, and neither can be "*").
DEFAULT_SITE = "*"

# A model's states: the one a site serves, one a newer promotion replaced, one demoted
# by its audits or by hand.
SERVING = "serving"
RETIRED = "retired"
DEMOTED = "demoted"

# What a site's history records.
PROMOTED = "promoted"
REJECTED = "rejected"  # a candidate that did not beat the site's current engine
# DEMOTED (above) is an event too.


@dataclasses.dataclass(frozen=True)
class SiteLabel:
    """One paid upstream answer kept as a label of its site."""

    task_id: int
    image: bytes
    text: str
    created_at: float


@dataclasses.dataclass(frozen=True)
class SiteModel:
    """A version of a site's model in the registry (without its bytes).

    `threshold`: the raw score at or above which the model's answer stands for this site;
    `precision`: how often answers at or above it were right on the held-out slice (the
    confidence such an answer is given); `scores`: what the training job measured
    (held-out size, accuracy, coverage, the engine it beat and by how much, seconds)."""

    site: str
    version: int
    state: str
    created_at: float
    threshold: float
    precision: float
    scores: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class SiteEvent:
    """One line of a site's history: a promotion, a rejected candidate, a demotion."""

    site: str
    at: float
    kind: str  # PROMOTED, REJECTED or DEMOTED
    version: int  # the model's version (a rejected candidate: the version it would have had)
    reason: str
    labels: int  # the labels the candidate was trained and scored on (a demotion: 0)


@dataclasses.dataclass(frozen=True)
class SiteCounters:
    """How a site's image tasks were answered, since the site was first seen."""

    site: str
    labels: int  # labels kept now
    local: int  # answered by a local engine (site model or generalist chain)
    upstream: int  # answered by an upstream provider (each one a new label)
    by_model: int  # of `local`: answered by the site's own model
    saved: int  # money (micro-units) the local answers would have cost upstream
    audits: int  # site-model answers also sent upstream to check them
    audits_agreed: int  # of those, the upstream read the same text
    reported_wrong: int  # site-model answers a client reported wrong


class SiteStore(abc.ABC):
    """The learning half of the store (see the module's docstring). Every method that must
    be atomic is one call, as in `Store`."""

    # --- labels -----------------------------------------------------------------------

    @abc.abstractmethod
    async def add_site_label(
        self, site: str, task_id: int, image: bytes, text: str, now: float, keep: int
    ) -> int:
        """Keep a label of `site` (a task's image and its paid upstream answer), dropping
        the oldest beyond the newest `keep`; the site's label count after it. A task id
        already kept is replaced."""

    @abc.abstractmethod
    async def forget_site_label(self, site: str, task_id: int) -> bool:
        """Delete a label a client reported wrong; False if there was none."""

    @abc.abstractmethod
    async def site_labels(self, site: str) -> list[SiteLabel]:
        """The site's labels, oldest (lowest task id) first."""

    # --- the registry -----------------------------------------------------------------

    @abc.abstractmethod
    async def publish_model(
        self,
        site: str,
        onnx: bytes,
        spec: bytes,
        threshold: float,
        precision: float,
        scores: Mapping[str, Any],
        now: float,
        reason: str,
        labels: int,
    ) -> SiteModel:
        """Add a new version (the site's highest + 1) and make it the one the site serves,
        in one step: the version it replaces becomes RETIRED; the history gets a PROMOTED
        line with `reason` and `labels` (how many the candidate learned from). Bytes of
        versions neither serving nor among the newest three may be dropped."""

    @abc.abstractmethod
    async def reject_candidate(self, site: str, reason: str, now: float, labels: int) -> None:
        """Record a candidate that was not promoted (history only)."""

    @abc.abstractmethod
    async def demote_model(self, site: str, version: int, reason: str, now: float) -> bool:
        """Stop serving `version` of the site, if it is the one serving (False otherwise:
        another node demoted it first, or a newer one was promoted); the site then serves
        no model of its own. The history gets a DEMOTED line."""

    @abc.abstractmethod
    async def serving_models(self) -> dict[str, SiteModel]:
        """The serving version of every site that has one (what each node polls)."""

    @abc.abstractmethod
    async def site_models(self, site: str) -> list[SiteModel]:
        """Every version of the site, newest first."""

    @abc.abstractmethod
    async def model_files(self, site: str, version: int) -> tuple[bytes, bytes] | None:
        """The ONNX bytes and model.json of a version; None if unknown or dropped."""

    @abc.abstractmethod
    async def site_history(self, site: str, limit: int = 50) -> list[SiteEvent]:
        """The site's newest `limit` history lines, newest first."""

    # --- counters and audits ----------------------------------------------------------

    @abc.abstractmethod
    async def count_answer(self, site: str, local: bool, by_model: bool, saved: int) -> None:
        """One more of the site's tasks answered: locally (`by_model`: by the site's own
        model; `saved`: what it would have cost upstream) or upstream."""

    @abc.abstractmethod
    async def record_audit(
        self, site: str, version: int, agreed: bool, now: float, window: int, report: bool
    ) -> list[bool]:
        """Record one check of the model `version` of `site`: an audit (`report` False:
        the upstream read the image too, and `agreed` or not; counts in `audits` and
        `audits_agreed`, and is an outcome in the version's window) or a client's report
        of a wrong answer (`report` True: counts in `reported_wrong` only, since a report
        is a client's claim, which the node answers with more audits). Returns the
        version's newest `window` outcomes after it, oldest first."""

    @abc.abstractmethod
    async def site_counters(self) -> list[SiteCounters]:
        """The counters of every site seen, sorted by site."""

    # --- one training job at a time ---------------------------------------------------

    @abc.abstractmethod
    async def hold_lock(self, name: str, holder: str, seconds: float, now: float) -> bool:
        """Take or renew the lock `name` for `seconds` (from `now`); False while another
        holder has it and it has not run out."""

    @abc.abstractmethod
    async def release_lock(self, name: str, holder: str) -> None:
        """Give the lock back, if `holder` has it."""
