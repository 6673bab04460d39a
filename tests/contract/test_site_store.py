"""The learning half of the store (SiteStore, issue 17): one contract for every store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from capgate.keys import hash_secret
from capgate.store import MemoryStore, SqliteStore, Store
from capgate.store.base import SITE_FILES_KEEP, SITE_HISTORY_KEEP
from capgate.store.sites import (
    DEFAULT_SITE,
    DEMOTED,
    PROMOTED,
    REJECTED,
    RETIRED,
    SERVING,
    SiteCounters,
    SiteEvent,
    SiteLabel,
    SiteModel,
)

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
SITE = "captcha.example.com"
ONNX = b"\x08\x07onnx" + bytes(range(256)) * 8  # binary, every byte value
SPEC = b'{"charset": "0123456789"}'
SCORES = {"held_out": 120, "accuracy": 0.9833333333333333, "beat": "generalist", "seconds": 41.5}


@pytest.fixture
async def nodes(make_store: Callable[[], Store]) -> AsyncIterator[list[Store]]:
    """Two nodes on one store (two connections to one SQLite file or Redis); the memory
    store is one process's, so both are the same one."""
    first = make_store()
    await first.open()
    if isinstance(first, MemoryStore):
        yield [first, first]
        await first.close()
        return
    second = make_store()
    await second.open()
    yield [first, second]
    await first.close()
    await second.close()


async def publish(store: Store, site: str = SITE, n: int = 1, now: float = T0) -> SiteModel:
    return await store.publish_model(
        site, ONNX + bytes([n]), SPEC, 0.625, 0.97, SCORES, now, f"beat it #{n}", 500 + n
    )


# --- labels ---------------------------------------------------------------------------


async def test_labels_are_kept_replaced_and_forgotten(store: Store) -> None:
    assert await store.site_labels(SITE) == []
    assert await store.add_site_label(SITE, 7, b"\x89PNG seven", "abc", T0, 10) == 1
    assert await store.add_site_label(SITE, 3, b"\x00\xff three", "x y", T0 + 1, 10) == 2
    assert await store.add_site_label("other.example", 5, b"five", "5", T0 + 2, 10) == 1
    # Oldest (lowest task id) first, whatever order they came in.
    assert await store.site_labels(SITE) == [
        SiteLabel(3, b"\x00\xff three", "x y", T0 + 1),
        SiteLabel(7, b"\x89PNG seven", "abc", T0),
    ]
    # A task id kept already is replaced, not added.
    assert await store.add_site_label(SITE, 7, b"again", "abd", T0 + 3, 10) == 2
    assert await store.site_labels(SITE) == [
        SiteLabel(3, b"\x00\xff three", "x y", T0 + 1),
        SiteLabel(7, b"again", "abd", T0 + 3),
    ]
    assert await store.forget_site_label(SITE, 7)
    assert not await store.forget_site_label(SITE, 7)
    assert not await store.forget_site_label(SITE, 5)  # another site's
    assert [label.task_id for label in await store.site_labels(SITE)] == [3]
    assert [label.task_id for label in await store.site_labels("other.example")] == [5]
    assert await store.site_labels("never.seen") == []


async def test_labels_keep_only_the_newest(store: Store) -> None:
    for task_id in range(1, 13):
        assert await store.add_site_label(SITE, task_id, b"img", str(task_id), T0, 5) == min(
            task_id, 5
        )
    assert [label.task_id for label in await store.site_labels(SITE)] == [8, 9, 10, 11, 12]
    counters = {c.site: c for c in await store.site_counters()}
    assert counters[SITE].labels == 5
    # A smaller `keep` drops the oldest of those too.
    assert await store.add_site_label(SITE, 13, b"img", "13", T0, 2) == 2
    assert [label.task_id for label in await store.site_labels(SITE)] == [12, 13]


async def test_labels_of_a_few_kilobytes_each(store: Store) -> None:
    image = bytes(range(256)) * 16  # 4 KB
    for task_id in range(1, 41):
        await store.add_site_label(SITE, task_id, image, "long text " * 5, T0, 30)
    labels = await store.site_labels(SITE)
    assert len(labels) == 30 and all(label.image == image for label in labels)


# --- the registry ---------------------------------------------------------------------


async def test_publish_numbers_versions_and_retires_the_previous(store: Store) -> None:
    assert await store.serving_models() == {}
    assert await store.site_models(SITE) == []
    first = await publish(store, n=1, now=T0)
    assert first == SiteModel(SITE, 1, SERVING, T0, 0.625, 0.97, SCORES)
    assert await store.serving_models() == {SITE: first}
    second = await publish(store, n=2, now=T0 + 10)
    assert (second.version, second.state, second.created_at) == (2, SERVING, T0 + 10)
    assert await store.serving_models() == {SITE: second}
    assert await store.site_models(SITE) == [
        second,
        SiteModel(SITE, 1, RETIRED, T0, 0.625, 0.97, SCORES),
    ]
    assert await store.model_files(SITE, 2) == (ONNX + b"\x02", SPEC)
    assert await store.model_files(SITE, 1) == (ONNX + b"\x01", SPEC)
    assert await store.model_files(SITE, 3) is None
    assert await store.model_files("never.seen", 1) is None
    # Another site and the operator's generalist have versions of their own.
    other = await publish(store, "other.example", n=9)
    default = await publish(store, DEFAULT_SITE, n=8)
    assert (other.version, default.version) == (1, 1)
    assert await store.serving_models() == {
        SITE: second,
        "other.example": other,
        DEFAULT_SITE: default,
    }
    assert await store.model_files(DEFAULT_SITE, 1) == (ONNX + b"\x08", SPEC)


async def test_publish_keeps_the_bytes_of_the_newest_versions_only(store: Store) -> None:
    assert SITE_FILES_KEEP == 3
    for n in range(1, 7):
        await publish(store, n=n, now=T0 + n)
    kept = [v for v in range(1, 7) if await store.model_files(SITE, v) is not None]
    assert kept == [4, 5, 6]
    assert await store.model_files(SITE, 6) == (ONNX + b"\x06", SPEC)
    # Every version is still listed, newest first.
    models = await store.site_models(SITE)
    assert [m.version for m in models] == [6, 5, 4, 3, 2, 1]
    assert [m.state for m in models] == [SERVING] + [RETIRED] * 5


async def test_a_model_of_about_two_megabytes(store: Store) -> None:
    onnx = bytes(range(256)) * 8192  # 2 MiB
    model = await store.publish_model(SITE, onnx, SPEC, 0.5, 0.98, {}, T0, "big", 700)
    assert await store.model_files(SITE, model.version) == (onnx, SPEC)


async def test_demote_only_the_serving_version(store: Store) -> None:
    await publish(store, n=1, now=T0)
    await publish(store, n=2, now=T0 + 1)
    assert not await store.demote_model(SITE, 1, "old one", T0 + 2)  # retired already
    assert not await store.demote_model(SITE, 3, "unknown", T0 + 2)
    assert not await store.demote_model("never.seen", 1, "unknown", T0 + 2)
    assert await store.demote_model(SITE, 2, "audits fell to 80%", T0 + 3)
    assert not await store.demote_model(SITE, 2, "again", T0 + 4)  # another node did it
    assert await store.serving_models() == {}
    assert [(m.version, m.state) for m in await store.site_models(SITE)] == [
        (2, DEMOTED),
        (1, RETIRED),
    ]
    assert await store.model_files(SITE, 2) is not None  # demoted, but among the newest
    # The site learns again: the next version serves.
    third = await publish(store, n=3, now=T0 + 5)
    assert third.version == 3
    assert await store.serving_models() == {SITE: third}
    assert [(m.version, m.state) for m in await store.site_models(SITE)] == [
        (3, SERVING),
        (2, DEMOTED),
        (1, RETIRED),
    ]


async def test_history_newest_first(store: Store) -> None:
    assert await store.site_history(SITE) == []
    await store.reject_candidate(SITE, "scored 0.91 < 0.95", T0, 500)
    await publish(store, n=1, now=T0 + 1)
    await store.reject_candidate(SITE, "scored 0.93 < 0.99", T0 + 2, 800)
    await store.demote_model(SITE, 1, "live accuracy 0.80", T0 + 3)
    await store.reject_candidate("other.example", "not enough", T0 + 4, 10)
    assert await store.site_history(SITE) == [
        SiteEvent(SITE, T0 + 3, DEMOTED, 1, "live accuracy 0.80", 0),
        SiteEvent(SITE, T0 + 2, REJECTED, 2, "scored 0.93 < 0.99", 800),
        SiteEvent(SITE, T0 + 1, PROMOTED, 1, "beat it #1", 501),
        SiteEvent(SITE, T0, REJECTED, 1, "scored 0.91 < 0.95", 500),
    ]
    assert [e.kind for e in await store.site_history(SITE, limit=2)] == [DEMOTED, REJECTED]
    assert await store.site_history(SITE, limit=0) == []
    assert await store.site_history("other.example") == [
        SiteEvent("other.example", T0 + 4, REJECTED, 1, "not enough", 10)
    ]


async def test_history_keeps_the_newest_lines(store: Store) -> None:
    for i in range(SITE_HISTORY_KEEP + 15):
        await store.reject_candidate(SITE, f"#{i}", T0 + i, i)
    history = await store.site_history(SITE, limit=10_000)
    assert len(history) == SITE_HISTORY_KEEP
    assert history[0].reason == f"#{SITE_HISTORY_KEEP + 14}"
    assert history[-1].reason == "#15"


# --- counters and audits --------------------------------------------------------------


async def test_counters_and_audits(store: Store) -> None:
    assert await store.site_counters() == []
    await store.count_answer(SITE, local=False, by_model=False, saved=0)
    await store.count_answer(SITE, local=True, by_model=True, saved=1000)
    await store.count_answer(SITE, local=True, by_model=False, saved=700)
    await store.count_answer("a.example", local=False, by_model=False, saved=0)
    await store.add_site_label("b.example", 1, b"img", "t", T0, 10)
    await store.add_site_label(SITE, 1, b"img", "t", T0, 10)
    assert await store.record_audit(SITE, 1, True, T0, 3, report=False) == [True]
    assert await store.record_audit(SITE, 1, False, T0, 3, report=False) == [True, False]
    assert await store.record_audit(SITE, 1, True, T0, 3, report=False) == [True, False, True]
    # A client's report of a wrong answer is counted, but is no outcome: a claim, which
    # the node checks with audits.
    assert await store.record_audit(SITE, 1, False, T0, 3, report=True) == [True, False, True]
    assert await store.record_audit(SITE, 1, False, T0, 2, report=False) == [True, False]
    assert await store.record_audit(SITE, 2, True, T0, 3, report=False) == [True]  # its own
    assert await store.site_counters() == [
        SiteCounters("a.example", 0, 0, 1, 0, 0, 0, 0, 0),
        SiteCounters("b.example", 1, 0, 0, 0, 0, 0, 0, 0),
        SiteCounters(SITE, 1, 2, 1, 1, 1700, 5, 3, 1),
    ]


async def test_publish_drops_the_audits_of_versions_it_drops(store: Store) -> None:
    await publish(store, n=1)
    assert await store.record_audit(SITE, 1, False, T0, 10, report=False) == [False]
    for n in range(2, 5):
        await publish(store, n=n)
    assert await store.record_audit(SITE, 1, True, T0, 10, report=False) == [True]


# --- the lock -------------------------------------------------------------------------


async def test_one_lock_holder_at_a_time(nodes: list[Store]) -> None:
    first, second = nodes
    assert await first.hold_lock("train", "a", 60, T0)
    assert not await second.hold_lock("train", "b", 60, T0 + 1)
    assert await second.hold_lock("other", "b", 60, T0 + 1)  # another lock
    assert await first.hold_lock("train", "a", 60, T0 + 50)  # the holder renews: until T0+110
    assert not await second.hold_lock("train", "b", 60, T0 + 100)
    assert await second.hold_lock("train", "b", 60, T0 + 110)  # it ran out
    assert not await first.hold_lock("train", "a", 60, T0 + 111)
    await first.release_lock("train", "a")  # not its holder: nothing happens
    assert not await first.hold_lock("train", "a", 60, T0 + 112)
    await second.release_lock("train", "b")
    assert await first.hold_lock("train", "a", 60, T0 + 113)


# --- concurrency ----------------------------------------------------------------------


async def test_concurrent_demotes_one_wins(nodes: list[Store]) -> None:
    model = await publish(nodes[0])
    outcomes = await asyncio.gather(
        *(nodes[i % 2].demote_model(SITE, model.version, f"node {i}", T0 + 1) for i in range(20))
    )
    assert outcomes.count(True) == 1
    assert [e.kind for e in await nodes[1].site_history(SITE)] == [DEMOTED, PROMOTED]


async def test_concurrent_publishes_number_every_version_once(nodes: list[Store]) -> None:
    models = await asyncio.gather(*(publish(nodes[n % 2], n=n) for n in range(20)))
    assert sorted(m.version for m in models) == list(range(1, 21))
    serving = await nodes[0].serving_models()
    assert list(serving) == [SITE] and serving[SITE].version == 20
    states = [m.state for m in await nodes[1].site_models(SITE)]
    assert states == [SERVING] + [RETIRED] * 19
    history = await nodes[0].site_history(SITE)
    assert [e.version for e in history] == list(range(20, 0, -1))


async def test_concurrent_lock_takers_one_wins(nodes: list[Store]) -> None:
    outcomes = await asyncio.gather(
        *(nodes[i % 2].hold_lock("train", f"h{i}", 60, T0) for i in range(20))
    )
    assert outcomes.count(True) == 1


# --- keys -----------------------------------------------------------------------------


async def test_a_key_keeps_its_default_site(store: Store) -> None:
    key = await store.create_key("s", hash_secret("s"), 0, T0, site=SITE)
    assert key.site == SITE
    plain = await store.create_key("p", hash_secret("p"), 0, T0)
    assert plain.site is None
    found = await store.key_by_hash(hash_secret("s"))
    assert found is not None and found.site == SITE
    again = await store.get_key(plain.id)
    assert again is not None and again.site is None
    assert [k.site for k in await store.list_keys()] == [SITE, None]


# --- an older SQLite file -------------------------------------------------------------


async def test_sqlite_adds_the_site_tables_and_key_column_to_an_older_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the keys table as the release before sites made it
        db.execute(
            "CREATE TABLE keys (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
            " key_hash BLOB NOT NULL UNIQUE, balance INTEGER NOT NULL,"
            " spent INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, dialect TEXT,"
            " worker INTEGER NOT NULL DEFAULT 0, solved INTEGER NOT NULL DEFAULT 0,"
            " refunds INTEGER NOT NULL DEFAULT 0, allow_ips TEXT NOT NULL DEFAULT '')"
        )
        db.execute(
            "INSERT INTO keys (name, key_hash, balance, created_at) VALUES ('old', ?, 5, 1.0)",
            (hash_secret("old"),),
        )
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        key = await store.key_by_hash(hash_secret("old"))
        assert key is not None and (key.balance, key.site) == (5, None)
        new = await store.create_key("new", hash_secret("new"), 0, T0, site=SITE)
        assert new.site == SITE
        assert await store.add_site_label(SITE, 1, b"img", "t", T0, 10) == 1
        assert (await publish(store)).version == 1
        assert await store.hold_lock("train", "a", 60, T0)
    finally:
        await store.close()
    reopened = SqliteStore(path)  # and it opens again as it is
    await reopened.open()
    try:
        found = await reopened.key_by_hash(hash_secret("new"))
        assert found is not None and found.site == SITE
        assert [m.version for m in (await reopened.serving_models()).values()] == [1]
    finally:
        await reopened.close()
