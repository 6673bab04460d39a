"""The node's part of the learning loop (docs/learning.md, DESIGN.md "Engines, sites and
learning"):

1. every paid upstream answer to an image task with a site becomes a label of that site;
2. when a site has enough labels (`rules.training_due`), a training job is started in a
   separate low-priority process (`capgate.learning.job`), which takes the store's
   learning lock, so only one runs across the deployment, and promotes its candidate
   only if it beats the site's current engine on held-out labels;
3. a share of a promoted model's answers (`learning_audit_share`), this node's and its
   remote workers' alike, is read upstream too,
   and a client's report of a wrong answer has the next REPORT_AUDITS of them read
   upstream; when these audits fall under `learning_target` (`rules.should_demote`) the
   model is demoted, and the site learns again;
4. each site's answers are counted (local, upstream, by its model, spend saved).

Nothing here may fail or slow a task: every store write of this module happens after the
task's answer is recorded, and errors are logged, not raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import random
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from capgate.clock import Clock
from capgate.config import Settings
from capgate.learning.rules import should_demote, training_due
from capgate.learning.served import ServedModels
from capgate.learning.sites import site_of
from capgate.model import Solution, Task, TaskType
from capgate.router import Router
from capgate.solvers.base import Solver
from capgate.store.base import Store
from capgate.store.sites import DEMOTED, PROMOTED, REJECTED

log = logging.getLogger("capgate.learning")

# How long an audit's upstream read may take.
AUDIT_SECONDS = 120.0
# After a client's report of a wrong site-model answer, this node audits that many of the
# model's next answers (the report itself is no verdict).
REPORT_AUDITS = 10
# How many learning checks a site whose training job failed waits before the next one.
FAILED_JOB_PAUSE = 10


class Learning:
    """Labels, counters, audits, demotions and training jobs, for one node."""

    def __init__(
        self,
        store: Store,
        router: Router,
        settings: Settings,
        clock: Clock,
        served: ServedModels,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.router = router
        self.settings = settings
        self.clock = clock
        self.served = served
        self._chance = chance
        self._key_sites: dict[int, str | None] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._trainer: asyncio.Task[None] | None = None
        self._job: asyncio.subprocess.Process | None = None
        self._failed: dict[str, float] = {}  # site -> when its next job may start
        self._audit_next: dict[str, int] = {}  # site -> answers to audit after a report

    # --- a task's site ----------------------------------------------------------------

    async def site_of(self, task: Task) -> str | None:
        """The site of an image task (None: no site, or not an image task)."""
        if task.type is not TaskType.IMAGE_TO_TEXT:
            return None
        if task.key_id not in self._key_sites:
            key = await self.store.get_key(task.key_id)
            self._key_sites[task.key_id] = key.site if key is not None else None
        return site_of(task.params, self._key_sites[task.key_id])

    # --- after each answer ------------------------------------------------------------

    async def answered(self, task: Task, solver: Solver, solution: Solution) -> None:
        """Count an image task's answer for its site; keep an upstream answer as a label;
        send a share of the site model's answers upstream to check them."""
        if not self.settings.learning:
            return
        try:
            site = await self.site_of(task)
            if site is None:
                return
            if solver.upstream:
                await self.store.count_answer(site, local=False, by_model=False, saved=0)
                await self._keep_label(site, task, solution)
                return
            if self.served.get(site) is None:
                # Counted only for sites with a model: a local answer costs the client
                # little, and a count for every host a client names would be a way to
                # fill the store with sites.
                return
            saved = self._upstream_price(task)
            by_model = solution.site_model is not None
            await self.store.count_answer(site, local=True, by_model=by_model, saved=saved)
            if solution.site_model is not None and solution.text and self._audit_due(site):
                self._run(self._audit(task, site, solution.site_model, solution.text))
        except Exception:
            log.exception("task %d: could not count its answer for learning", task.id)

    def _audit_due(self, site: str) -> bool:
        """Whether to audit a site-model answer: `learning_audit_share` of them, and all
        of the next REPORT_AUDITS after a report of a wrong one."""
        left = self._audit_next.get(site, 0)
        if left:
            self._audit_next[site] = left - 1
            return True
        return self._chance() < self.settings.learning_audit_share

    async def audit_due(self, task: Task) -> bool:
        """Whether to audit a remote worker's site-model answer to `task` (as a local one
        would be: `learning_audit_share`, and every one after a report). Asked before the
        answer is recorded, which drops the image the audit needs."""
        if not self.settings.learning:
            return False
        site = await self.site_of(task)
        return site is not None and self.served.get(site) is not None and self._audit_due(site)

    async def answered_remotely(
        self, task: Task, solution: Solution, image: bytes | None = None
    ) -> None:
        """Count a remote worker's answer for the task's site; with the task's `image`
        (read while the worker held it, when `audit_due` said so), audit a site-model
        answer upstream as a local one is."""
        if not self.settings.learning:
            return
        try:
            site = await self.site_of(task)
            if site is None or (await self.store.serving_models()).get(site) is None:
                return
            saved = self._upstream_price(task)
            by_model = solution.site_model is not None
            await self.store.count_answer(site, local=True, by_model=by_model, saved=saved)
            if image and solution.site_model is not None and solution.text:
                audited = msgspec.structs.replace(task, body=image)
                self._run(self._audit(audited, site, solution.site_model, solution.text))
        except Exception:
            log.exception("task %d: could not count its answer for learning", task.id)

    async def reported(self, task: Task) -> None:
        """A client reported the task's answer wrong: it counts against the site model
        that gave it, and an upstream answer is no label any more."""
        if not self.settings.learning or task.solution is None:
            return
        try:
            site = await self.site_of(task)
            if site is None:
                return
            version = task.solution.site_model
            if version is not None:
                # A claim, not a verdict (a client could report right answers to demote a
                # site's model): it is counted, and the model's next answers here are all
                # audited; their upstream verdicts decide.
                await self._check(site, version, agreed=False, report=True)
                self._audit_next[site] = REPORT_AUDITS
            else:
                await self.store.forget_site_label(site, task.id)
        except Exception:
            log.exception("task %d: could not count its report for learning", task.id)

    async def _keep_label(self, site: str, task: Task, solution: Solution) -> None:
        if task.body and solution.text and not task.params.get("math"):
            await self.store.add_site_label(
                site,
                task.id,
                task.body,
                solution.text,
                self.clock.now(),
                self.settings.learning_max_labels,
            )

    def _upstream_price(self, task: Task) -> int:
        """What the cheapest upstream provider here would have charged for the task."""
        prices = [
            price
            for solver in self.router.candidates(
                task.type, task.params, self.settings.routing_policy
            )
            if solver.upstream and (price := solver.price(task.type)) is not None
        ]
        return min(prices, default=0)

    # --- audits and demotion ----------------------------------------------------------

    async def _audit(self, task: Task, site: str, version: int, text: str) -> None:
        """Read the task upstream too; the answers agree or not (letters in either case)."""
        for solver in self.router.candidates(task.type, task.params, self.settings.routing_policy):
            if not solver.upstream or not self.router.allow(solver):
                continue
            started = time.monotonic()
            try:
                async with asyncio.timeout(AUDIT_SECONDS):
                    checked = await solver.solve(task)
            except Exception as exc:
                self.router.record(solver, False, time.monotonic() - started, its_fault=True)
                log.info("task %d: audit at %s failed: %s", task.id, solver.name, exc)
                continue
            self.router.record(solver, True, time.monotonic() - started, its_fault=False)
            self.router.charge(solver, task.type)
            if not checked.text:
                return
            agreed = checked.text.casefold() == text.casefold()
            await self._keep_label(site, task, checked)
            await self._check(site, version, agreed=agreed, report=False)
            return

    async def _check(self, site: str, version: int, *, agreed: bool, report: bool) -> None:
        settings = self.settings
        outcomes = await self.store.record_audit(
            site, version, agreed, self.clock.now(), settings.learning_audit_window, report
        )
        # What its held-out labels showed counts too (rules.should_demote), while the
        # version audited is the one this node serves.
        served = self.served.get(site)
        prior = served.precision if served is not None and served.version == version else None
        if should_demote(outcomes, settings.learning_target, prior=prior):
            right = sum(outcomes)
            reason = (
                f"{right} of its last {len(outcomes)} checked answers were right, under"
                f" {settings.learning_target:.0%}"
            )
            if await self.store.demote_model(site, version, reason, self.clock.now()):
                log.warning("site %s: model version %d demoted: %s", site, version, reason)
                await self.served.refresh()

    # --- training jobs ----------------------------------------------------------------

    def start(self) -> None:
        """Look for sites due for training in the background (if this node runs jobs)."""
        if not (self.settings.learning and self.settings.learning_jobs):
            return
        if self.settings.store == "memory":
            log.warning("learning: a training job needs a store it can open (sqlite or redis)")
            return
        if importlib.util.find_spec("torch") is None:
            log.warning(
                "learning: torch is not installed, so this node runs no training jobs"
                " (training/README.md says how to install it); it still keeps labels and"
                " serves the models other nodes train"
            )
            return
        self._trainer = asyncio.create_task(self._train_forever(), name="capgate-learning")

    async def stop(self) -> None:
        if self._trainer is not None:
            self._trainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trainer
        if self._job is not None and self._job.returncode is None:
            self._job.terminate()  # Its lock runs out; another node takes the work up.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._job.wait(), 10)
        for job in list(self._background):
            job.cancel()

    async def _train_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.learning_check_seconds)
            try:
                site = await self.due_site()
                if site is not None:
                    await self._run_job(site)
            except Exception:
                log.exception("learning: could not start a training job")

    async def due_site(self) -> str | None:
        """The site with the most labels among those due for a training run (a site whose
        last job failed waits FAILED_JOB_PAUSE checks first)."""
        due: list[tuple[int, str]] = []
        for counters in await self.store.site_counters():
            if self._failed.get(counters.site, 0.0) > time.monotonic():
                continue
            last = await self._last_trained_on(counters.site)
            if training_due(counters.labels, self.settings.learning_min_labels, last):
                due.append((counters.labels, counters.site))
        return max(due)[1] if due else None

    async def _last_trained_on(self, site: str) -> int | None:
        """How many labels the site's last candidate learned from (None: none since the
        site was first seen or last demoted)."""
        for event in await self.store.site_history(site, 20):
            if event.kind in (PROMOTED, REJECTED):
                return event.labels
            if event.kind == DEMOTED:
                return None
        return None

    async def _run_job(self, site: str) -> None:
        """Run one training job for `site` in a separate low-priority process and wait for
        it; its lines go to this node's log."""
        settings = self.settings
        command = [
            sys.executable,
            "-m",
            "capgate.learning.job",
            "--store",
            settings.store,
            "--data",
            str(settings.data),
            "--site",
            site,
            "--engines",
            ",".join(settings.ocr_engines),
            "--epochs",
            str(settings.learning_epochs),
            "--threads",
            str(settings.learning_threads),
            "--target",
            str(settings.learning_target),
        ]
        model = settings.ocr_model_path
        if model is not None and model.with_suffix(".pt").is_file():
            command += ["--model", str(model)]  # Fine-tuning needs its torch weights.
        log.info("site %s: starting a training job", site)
        self._job = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        assert self._job.stdout is not None
        async for line in self._job.stdout:
            log.info("learning job (%s): %s", site, line.decode(errors="replace").rstrip())
        code = await self._job.wait()
        if code:
            log.warning("site %s: the training job ended with status %d", site, code)
            pause = FAILED_JOB_PAUSE * settings.learning_check_seconds
            self._failed[site] = time.monotonic() + pause
        await self.served.refresh()

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without waiting for it, holding it until it ends."""
        job = asyncio.ensure_future(work)
        self._background.add(job)
        job.add_done_callback(self._background.discard)
