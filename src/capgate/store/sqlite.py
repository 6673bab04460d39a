"""The embedded default store: one SQLite file in WAL mode.

Point reads and small commits run on the event-loop thread: a SQLite point query costs
10-20 µs, less than a hop to a thread would (see PERF.md). Every state change is a guarded
statement that only moves a row out of the states it may leave, inside one transaction, and
it is committed before the caller answers its client: with WAL and synchronous=NORMAL a
committed task survives a crash of the process (not a power loss; see docs/guarantees).

With durability="power" every commit is also on disk before the caller answers: the
connection runs synchronous=FULL (SQLite fsyncs the WAL inside each COMMIT), except for
the createTask batches, the hot path. Each batch commits on the loop thread without the
fsync; a thread of its own fsyncs the WAL while the loop serves other requests and
commits the next batches, and a batch is answered only once an fsync that began after its
commit has returned. Batches committed during one fsync share the next (group commit).
Other connections' readers, and this one's, may see a batch before its fsync: only its
callers' answers wait for it.

Checkpoints (copying the WAL back into the database file, with its fsync) run on a thread
of their own, not inside whichever commit crosses SQLite's threshold: a task's commit
never waits on one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from capgate.config import DURABILITIES
from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Lease,
    Solution,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
)
from capgate.store.base import (
    SITE_FILES_KEEP,
    SITE_HISTORY_KEEP,
    SPENDING_KEEP_SECONDS,
    RefundLimit,
    Spending,
    Store,
    fair_order,
    hour_of,
    idempotency_conflict,
    out_of_attempts,
    report_not_recorded,
    soft_id_of,
    timed_out,
    too_many_in_flight,
)
from capgate.store.sites import (
    DEMOTED,
    PROMOTED,
    REJECTED,
    SERVING,
    SiteCounters,
    SiteEvent,
    SiteLabel,
    SiteModel,
)

log = logging.getLogger("capgate.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    balance INTEGER NOT NULL,
    spent INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    dialect TEXT,
    worker INTEGER NOT NULL DEFAULT 0,
    solved INTEGER NOT NULL DEFAULT 0,
    refunds INTEGER NOT NULL DEFAULT 0,
    allow_ips TEXT NOT NULL DEFAULT '',
    site TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id INTEGER NOT NULL REFERENCES keys(id),
    type TEXT NOT NULL,
    params BLOB NOT NULL,
    body BLOB,
    status INTEGER NOT NULL,
    created_at REAL NOT NULL,
    deadline_at REAL NOT NULL,
    cost INTEGER NOT NULL,
    ip TEXT NOT NULL,
    expires_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    polls INTEGER NOT NULL DEFAULT 0,
    solver TEXT,
    solution BLOB,
    error_code TEXT,
    error_description TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    verdict INTEGER,
    idem_key TEXT,
    idem_hash BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotent ON tasks (key_id, idem_key)
    WHERE idem_key IS NOT NULL;
-- Leasing walks tasks_queued_by_key, so the older per-type queue index only cost inserts.
DROP INDEX IF EXISTS tasks_queued;
CREATE INDEX IF NOT EXISTS tasks_queued_by_key ON tasks (key_id, id) WHERE status = 0;
CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (lease_expires_at) WHERE status = 1;
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (deadline_at) WHERE status < 2;
CREATE INDEX IF NOT EXISTS tasks_expiring ON tasks (expires_at);
CREATE INDEX IF NOT EXISTS tasks_key_unfinished ON tasks (key_id) WHERE status < 2;
-- The spending ledger (Store.spending): what each key's answers cost, by hour.
CREATE TABLE IF NOT EXISTS spending (
    key_id INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    type TEXT NOT NULL,
    ip TEXT NOT NULL,
    soft_id TEXT NOT NULL,
    volume INTEGER NOT NULL,
    money INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour, type, ip, soft_id)
) WITHOUT ROWID;
-- Learning each site (SiteStore): labels, the model registry (its bytes apart, so that
-- reading the registry never touches them), history, counters, audits, locks.
CREATE TABLE IF NOT EXISTS site_labels (
    site TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    image BLOB NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (site, task_id)
);
CREATE TABLE IF NOT EXISTS site_models (
    site TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    threshold REAL NOT NULL,
    precision REAL NOT NULL,
    scores BLOB NOT NULL,
    PRIMARY KEY (site, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS site_models_serving ON site_models (site)
    WHERE state = 'serving';
CREATE TABLE IF NOT EXISTS site_model_files (
    site TEXT NOT NULL,
    version INTEGER NOT NULL,
    onnx BLOB NOT NULL,
    spec BLOB NOT NULL,
    PRIMARY KEY (site, version)
);
CREATE TABLE IF NOT EXISTS site_history (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    reason TEXT NOT NULL,
    labels INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS site_history_by_site ON site_history (site, id);
CREATE TABLE IF NOT EXISTS site_counters (
    site TEXT PRIMARY KEY,
    local INTEGER NOT NULL DEFAULT 0,
    upstream INTEGER NOT NULL DEFAULT 0,
    by_model INTEGER NOT NULL DEFAULT 0,
    saved INTEGER NOT NULL DEFAULT 0,
    audits INTEGER NOT NULL DEFAULT 0,
    audits_agreed INTEGER NOT NULL DEFAULT 0,
    reported_wrong INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_audits (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    version INTEGER NOT NULL,
    agreed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS site_audits_by_version ON site_audits (site, version, id);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID;
"""

_TASK_COLUMNS = (
    "id, key_id, type, params, body, status, created_at, deadline_at, cost, ip, expires_at,"
    " started_at,"
    " finished_at, attempts, polls, solver, solution, error_code, error_description,"
    " lease_token, lease_expires_at, verdict"
)
_KEY_COLUMNS = (
    "id, name, key_hash, balance, spent, created_at, dialect, worker, solved, refunds, allow_ips,"
    " site"
)
# Columns added to a table after its first release: (table, column, definition). A
# database made before them gets them on open.
_ADDED_COLUMNS = (
    ("keys", "solved", "INTEGER NOT NULL DEFAULT 0"),
    ("keys", "refunds", "INTEGER NOT NULL DEFAULT 0"),
    ("keys", "allow_ips", "TEXT NOT NULL DEFAULT ''"),
    ("keys", "site", "TEXT"),
)


class _Q:
    """Every SQL statement the store runs, by name."""

    insert_key = (
        "INSERT INTO keys (name, key_hash, balance, created_at, dialect, worker, allow_ips, site)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    key_by_hash = f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_hash = ?"
    key_by_id = f"SELECT {_KEY_COLUMNS} FROM keys WHERE id = ?"
    all_keys = f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY id"
    add_balance = "UPDATE keys SET balance = balance + ? WHERE id = ?"
    balance = "SELECT balance FROM keys WHERE id = ?"
    debit = "UPDATE keys SET balance = balance - ? WHERE id = ?"
    refund = "UPDATE keys SET balance = balance + ? WHERE id = ?"
    charge = "UPDATE keys SET spent = spent + ?1, solved = solved + (?1 > 0) WHERE id = ?2"
    insert_task = (
        "INSERT INTO tasks (key_id, type, params, body, status, created_at, deadline_at, cost, ip,"
        " expires_at, idem_key, idem_hash) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)"
        " RETURNING id"
    )
    # Reads leave the image out: only a lease hands it to a solver.
    task_by_id = f"SELECT {_TASK_COLUMNS.replace('body', 'NULL')} FROM tasks WHERE id = ?"
    idempotent = f"SELECT idem_hash, {_TASK_COLUMNS} FROM tasks WHERE key_id = ? AND idem_key = ?"
    add_polls = "UPDATE tasks SET polls = polls + ? WHERE id = ?"
    # Fair leasing: the keys with queued tasks, one index seek each; each key's oldest.
    next_queued_key = (
        "SELECT key_id FROM tasks WHERE status = 0 AND key_id > ? ORDER BY key_id LIMIT 1"
    )
    queued_of_key = (
        "SELECT id FROM tasks WHERE status = 0 AND key_id = :key AND type IN ({types})"
        " ORDER BY id LIMIT :limit"
    )
    lease = (
        "UPDATE tasks SET status = 1, attempts = attempts + 1,"
        " started_at = coalesce(started_at, :now), lease_token = :token,"
        " lease_expires_at = :expires"
        " WHERE status = 0 AND id IN ({ids})"
        f" RETURNING {_TASK_COLUMNS}"
    )
    held = "id = ? AND status = 1 AND lease_token = ? AND lease_expires_at > ?"
    # The newest tasks, their image bodies left out (NULL in the body column).
    recent = f"SELECT {_TASK_COLUMNS.replace('body', 'NULL')} FROM tasks ORDER BY id DESC LIMIT ?"
    leased_with = (
        f"SELECT {_TASK_COLUMNS} FROM tasks"
        " WHERE status = 1 AND lease_token = ? AND lease_expires_at > ? ORDER BY id"
    )
    extend = f"UPDATE tasks SET lease_expires_at = ?, attempts = attempts + ? WHERE {held}"
    complete = (
        "UPDATE tasks SET status = 2, solution = ?, solver = ?, finished_at = ?, body = NULL,"
        f" lease_token = NULL, lease_expires_at = NULL WHERE {held}"
        " RETURNING key_id, cost, type, ip, params"
    )
    held_task = f"SELECT id, key_id, cost, attempts FROM tasks WHERE {held}"
    held_image = f"SELECT body FROM tasks WHERE {held}"
    requeue = (
        "UPDATE tasks SET status = 0, solver = coalesce(?, solver), lease_token = NULL,"
        " lease_expires_at = NULL WHERE id = ?"
    )
    fail = (
        "UPDATE tasks SET status = 3, error_code = ?, error_description = ?,"
        " solver = coalesce(?, solver), finished_at = ?, body = NULL, lease_token = NULL,"
        " lease_expires_at = NULL WHERE id = ? AND status < 2"
    )
    expired_leases = (
        "SELECT id, key_id, cost, attempts FROM tasks WHERE status = 1 AND lease_expires_at <= ?"
    )
    overdue = (
        "SELECT id, key_id, cost, deadline_at - created_at FROM tasks"
        " WHERE status < 2 AND deadline_at <= ?"
    )
    purge = (
        "DELETE FROM tasks WHERE id IN"
        " (SELECT id FROM tasks WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)"
    )
    queue_depth = "SELECT count(*) FROM tasks WHERE status = 0"
    in_flight = "SELECT count(*) FROM tasks WHERE key_id = ? AND status < 2"
    reportable = (
        "SELECT cost, finished_at, type, ip, params FROM tasks"
        " WHERE id = ? AND key_id = ? AND status = 2 AND verdict IS NULL"
    )
    report_counts = "SELECT refunds, solved FROM keys WHERE id = ?"
    verdict = "UPDATE tasks SET verdict = ? WHERE id = ?"
    uncharge = (
        "UPDATE keys SET balance = balance + ?1, spent = spent - ?1, refunds = refunds + 1"
        " WHERE id = ?2"
    )
    spend = (
        "INSERT INTO spending (key_id, hour, type, ip, soft_id, volume, money)"
        " VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (key_id, hour, type, ip, soft_id)"
        " DO UPDATE SET volume = volume + 1, money = money + excluded.money"
    )
    unspend = (
        "UPDATE spending SET money = money - ?"
        " WHERE key_id = ? AND hour = ? AND type = ? AND ip = ? AND soft_id = ?"
    )
    spending = (
        "SELECT hour, type, ip, soft_id, volume, money FROM spending"
        " WHERE key_id = ? AND hour >= ? AND hour < ? ORDER BY hour, type, ip, soft_id"
    )
    forget_spending = "DELETE FROM spending WHERE hour < ?"
    # Sites (SiteStore).
    seen_site = "INSERT INTO site_counters (site) VALUES (?) ON CONFLICT (site) DO NOTHING"
    put_label = (
        "INSERT INTO site_labels (site, task_id, image, text, created_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (site, task_id) DO UPDATE SET image = excluded.image,"
        " text = excluded.text, created_at = excluded.created_at"
    )
    trim_labels = (
        "DELETE FROM site_labels WHERE site = ?1 AND task_id IN (SELECT task_id FROM site_labels"
        " WHERE site = ?1 ORDER BY task_id DESC LIMIT -1 OFFSET ?2)"
    )
    count_labels = "SELECT count(*) FROM site_labels WHERE site = ?"
    forget_label = "DELETE FROM site_labels WHERE site = ? AND task_id = ?"
    labels = (
        "SELECT task_id, image, text, created_at FROM site_labels WHERE site = ? ORDER BY task_id"
    )
    last_version = "SELECT coalesce(max(version), 0) FROM site_models WHERE site = ?"
    retire = "UPDATE site_models SET state = 'retired' WHERE site = ? AND state = 'serving'"
    insert_model = (
        "INSERT INTO site_models (site, version, state, created_at, threshold, precision, scores)"
        " VALUES (?, ?, 'serving', ?, ?, ?, ?)"
    )
    insert_files = "INSERT INTO site_model_files (site, version, onnx, spec) VALUES (?, ?, ?, ?)"
    drop_files = "DELETE FROM site_model_files WHERE site = ? AND version <= ?"
    drop_audits = "DELETE FROM site_audits WHERE site = ? AND version <= ?"
    demote = (
        "UPDATE site_models SET state = 'demoted'"
        " WHERE site = ? AND version = ? AND state = 'serving'"
    )
    _model_columns = "site, version, state, created_at, threshold, precision, scores"
    serving = f"SELECT {_model_columns} FROM site_models WHERE state = 'serving' ORDER BY site"
    models = f"SELECT {_model_columns} FROM site_models WHERE site = ? ORDER BY version DESC"
    files = "SELECT onnx, spec FROM site_model_files WHERE site = ? AND version = ?"
    event = (
        "INSERT INTO site_history (site, at, kind, version, reason, labels)"
        " VALUES (?, ?, ?, ?, ?, ?)"
    )
    trim_history = (
        "DELETE FROM site_history WHERE site = ?1 AND id <= (SELECT id FROM site_history"
        " WHERE site = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)"
    )
    history = (
        "SELECT site, at, kind, version, reason, labels FROM site_history WHERE site = ?"
        " ORDER BY id DESC LIMIT ?"
    )
    # One statement each: the site's first count inserts its row.
    count_answer = (
        "INSERT INTO site_counters (site, local, upstream, by_model, saved) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (site) DO UPDATE SET local = local + excluded.local,"
        " upstream = upstream + excluded.upstream, by_model = by_model + excluded.by_model,"
        " saved = saved + excluded.saved"
    )
    count_audit = (
        "INSERT INTO site_counters (site, audits, audits_agreed, reported_wrong)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET audits = audits + excluded.audits,"
        " audits_agreed = audits_agreed + excluded.audits_agreed,"
        " reported_wrong = reported_wrong + excluded.reported_wrong"
    )
    audit = "INSERT INTO site_audits (site, version, agreed) VALUES (?, ?, ?)"
    trim_audits = (
        "DELETE FROM site_audits WHERE site = ?1 AND version = ?2 AND id <= (SELECT id"
        " FROM site_audits WHERE site = ?1 AND version = ?2 ORDER BY id DESC LIMIT 1 OFFSET ?3)"
    )
    audits = "SELECT agreed FROM site_audits WHERE site = ? AND version = ? ORDER BY id"
    counters = (
        "SELECT c.site, (SELECT count(*) FROM site_labels l WHERE l.site = c.site), c.local,"
        " c.upstream, c.by_model, c.saved, c.audits, c.audits_agreed, c.reported_wrong"
        " FROM site_counters c ORDER BY c.site"
    )
    # Taken when free, run out, or already this holder's (a renewal).
    hold_lock = (
        "INSERT INTO locks (name, holder, until) VALUES (?1, ?2, ?3 + ?4)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until"
        " WHERE locks.holder = excluded.holder OR locks.until <= ?3"
    )
    release_lock = "DELETE FROM locks WHERE name = ? AND holder = ?"


class _NewTask(NamedTuple):
    """One create waiting for its group commit."""

    key_id: int
    spec: TaskSpec
    cost: int
    ip: str
    now: float
    deadline_at: float
    expires_at: float
    idempotency: tuple[str, bytes] | None
    max_in_flight: int


# A batch of creates and what each of them came to, once committed.
_Batch = list[tuple[_NewTask, asyncio.Future[Task]]]
_Outcomes = list[Task | CapgateError]

# Tasks kept as last read (a Task without its body is about 1 KB).
_READ_CACHE_SIZE = 4096
_CHECKPOINT_SECONDS = 0.25


class SqliteStore(Store):
    """Tasks and keys in one SQLite database file."""

    def __init__(self, path: Path | str, durability: str = "process") -> None:
        """`durability`: what an answered write survives, "process" (a crash of the
        process) or "power" (a power loss too: every commit is fsync'd before it returns)."""
        if durability not in DURABILITIES:
            raise ValueError(f"durability: unknown value {durability!r} (known: process, power)")
        self.path = Path(path)
        self.durability = durability
        self._db: sqlite3.Connection | None = None
        # Creates waiting for the next group commit, with the futures that answer them.
        self._creates: _Batch = []
        # durability="power": batches committed and waiting for the WAL's next fsync, the
        # fsync running now (one at a time), the thread that runs it, the WAL it opened
        # (its descriptor, device and inode).
        self._unsynced: list[tuple[_Batch, _Outcomes]] = []
        self._syncing: asyncio.Future[None] | None = None
        self._syncer: ThreadPoolExecutor | None = None
        self._wal: tuple[int, int, int] | None = None
        # The fsync error that broke the promise: every create after it is refused.
        self._sync_failed: BaseException | None = None
        # SQLite names the WAL after the database file, its links followed.
        self._wal_path = os.path.realpath(self.path) + "-wal"
        # Tasks as last read, for polls (see get_task), and None for ids found missing.
        # This connection's writes drop the tasks they touch (its inserts, the new ids);
        # another connection's commit changes SQLite's data_version, which drops them all.
        self._read: dict[int, Task | None] = {}
        self._data_version = -1
        self._version_checked = False  # in this event-loop turn (see _check_version)
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self._ledger_pruned = -1  # the hour the spending ledger was last pruned in

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are opened explicitly where several statements
        # must be one; single statements commit on their own.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: every COMMIT fsyncs the WAL before it returns (the createTask batches
        # are synced by the sync thread instead; see _commit_creates).
        db.execute(f"PRAGMA synchronous = {'FULL' if self.durability == 'power' else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA wal_autocheckpoint = 0")  # The checkpointer thread does it.
        with _transaction(db):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, column, definition in _ADDED_COLUMNS:
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        self._db = db
        self._closing.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_forever, name="capgate-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()
        self._sync_failed = None
        if self.durability == "power":
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="capgate-sqlite-sync")

    async def close(self) -> None:
        if self._creates:  # Creates of this loop turn: committed (and answered) now.
            self._commit_creates()
        while self._syncing is not None:  # Answer the batches being synced, and the next.
            await asyncio.wait([self._syncing])
        if self._syncer is not None:
            self._syncer.shutdown()
            self._syncer = None
        if self._wal is not None:
            os.close(self._wal[0])
            self._wal = None
        if self._checkpointer is not None:
            self._closing.set()
            self._checkpointer.join()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()  # The last connection to close checkpoints what is left.
            self._db = None

    def _checkpoint_forever(self) -> None:
        """Copy committed WAL frames into the database file a few times a second, off the
        event loop (SQLite releases the GIL while it works). PASSIVE: it never blocks a
        writer or a reader; what it cannot copy now, a later pass does."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 1000")
            while not self._closing.wait(_CHECKPOINT_SECONDS):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # Busy, or a full disk: the next pass tries again.
                    continue
        finally:
            db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    # --- keys -------------------------------------------------------------------------

    async def create_key(
        self,
        name: str,
        key_hash: bytes,
        balance: int,
        now: float,
        dialect: str | None = None,
        worker: bool = False,
        allow_ips: Sequence[str] = (),
        site: str | None = None,
    ) -> Key:
        try:
            cursor = self.db.execute(
                _Q.insert_key,
                (name, key_hash, balance, now, dialect, int(worker), ",".join(allow_ips), site),
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError("a key with this secret exists already") from exc
        key_id = cursor.lastrowid
        assert key_id is not None
        return Key(
            key_id,
            name,
            key_hash,
            balance,
            0,
            now,
            dialect,
            worker,
            allow_ips=list(allow_ips),
            site=site,
        )

    async def key_by_hash(self, key_hash: bytes) -> Key | None:
        row = self.db.execute(_Q.key_by_hash, (key_hash,)).fetchone()
        return None if row is None else _key(row)

    async def get_key(self, key_id: int) -> Key | None:
        row = self.db.execute(_Q.key_by_id, (key_id,)).fetchone()
        return None if row is None else _key(row)

    async def list_keys(self) -> list[Key]:
        return [_key(row) for row in self.db.execute(_Q.all_keys)]

    async def add_balance(self, key_id: int, amount: int) -> Key | None:
        self.db.execute(_Q.add_balance, (amount, key_id))
        return await self.get_key(key_id)

    # --- tasks ------------------------------------------------------------------------

    async def create_task(
        self,
        key_id: int,
        spec: TaskSpec,
        cost: int,
        ip: str,
        now: float,
        deadline_at: float,
        expires_at: float,
        idempotency: tuple[str, bytes] | None = None,
        max_in_flight: int = 0,
    ) -> Task:
        """Group commit: creates that arrive together share one transaction.

        Every create of one event-loop turn joins a batch that is committed once, after
        that turn; each caller is answered only after the commit. A commit costs far
        more than the statements (about 120 µs against 20 µs here), so under load this
        is what keeps createTask fast while every acknowledged task is committed.

        With durability="power" each caller is answered only after the WAL was fsync'd
        too, off the loop (see _sync_creates): while one fsync runs, the loop keeps
        serving and the batches it commits meanwhile share the next fsync.
        """
        loop = asyncio.get_running_loop()
        created: asyncio.Future[Task] = loop.create_future()
        self._creates.append(
            (
                _NewTask(
                    key_id,
                    spec,
                    cost,
                    ip,
                    now,
                    deadline_at,
                    expires_at,
                    idempotency,
                    max_in_flight,
                ),
                created,
            )
        )
        if len(self._creates) == 1:
            loop.call_soon(self._commit_creates)
        return await created

    def _commit_creates(self) -> None:
        batch, self._creates = self._creates, []
        if not batch:  # close() committed them already.
            return
        outcomes: _Outcomes = []
        power = self.durability == "power"
        try:
            if self._sync_failed is not None:  # What is committed may not reach the disk.
                raise OSError(f"an fsync of the WAL failed ({self._sync_failed}); restart")
            db = self.db
            # "power": no fsync inside this COMMIT, on the loop; _sync_creates does it.
            with _no_fsync_in_commit(db) if power else nullcontext(), _transaction(db):
                balances = _Balances(db)
                for new, _ in batch:
                    try:
                        outcomes.append(self._insert(new, balances))
                    except CapgateError as refused:  # Raised before anything was written.
                        outcomes.append(refused)
                balances.write()
        except Exception as failed:  # Nothing of the batch was committed.
            for _, created in batch:
                if not created.done():
                    created.set_exception(failed)
            return
        # The new ids may have been read as missing (a client guessing ahead).
        self._changed(task.id for task in outcomes if isinstance(task, Task))
        if not power:
            _answer(batch, outcomes)
            return
        self._unsynced.append((batch, outcomes))
        if self._syncing is None:
            self._sync_creates()

    def _sync_creates(self) -> None:
        """fsync the WAL on the sync thread, then answer every batch committed before it
        began. Batches committed while it runs wait for the next one: one at a time, so
        under load each fsync covers many batches (group commit across loop turns)."""
        assert self._syncer is not None
        waiting, self._unsynced = self._unsynced, []
        syncing = asyncio.get_running_loop().run_in_executor(self._syncer, self._sync_wal)
        self._syncing = syncing

        def synced(done: asyncio.Future[None]) -> None:
            self._syncing = None
            failed = done.exception() if not done.cancelled() else RuntimeError("not synced")
            if failed is not None:
                # Linux may drop the pages that failed to write and report it once: a
                # later fsync succeeding proves nothing, and the WAL's checksums chain
                # each frame to the ones before. No create is acknowledged after this
                # (batches committed meanwhile included) until the store is reopened.
                log.error("fsync of %s failed: refusing creates until restart", self._wal_path)
                self._sync_failed = failed
                waiting.extend(self._unsynced)
                self._unsynced = []
            for batch, outcomes in waiting:
                if failed is None:
                    _answer(batch, outcomes)
                    continue
                # Committed but perhaps not on disk: answered as a failure ("try again");
                # its tasks may stand all the same, as for a caller that went away.
                for _, created in batch:
                    if not created.done():
                        created.set_exception(failed)
            if self._unsynced:
                self._sync_creates()

        syncing.add_done_callback(synced)

    def _sync_wal(self) -> None:
        """On the sync thread: fsync the WAL file. Every frame written to it so far, by
        any connection, is then on disk, which is what synchronous=FULL does inside a
        COMMIT (fdatasync, as SQLite uses on Linux)."""
        path = self._wal_path
        found = os.stat(path)
        if self._wal is None or self._wal[1:] != (found.st_dev, found.st_ino):
            # A WAL file new to this store (SQLite keeps one while a connection is open;
            # this is insurance): its name in the directory must be on disk too, as
            # SQLite makes it on a WAL's first sync.
            if self._wal is not None:
                os.close(self._wal[0])
                self._wal = None
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            opened = os.fstat(fd)
            self._wal = (fd, opened.st_dev, opened.st_ino)
            folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        os.fdatasync(self._wal[0])

    def _insert(self, new: _NewTask, balances: _Balances) -> Task:
        db, idempotency = self.db, new.idempotency
        if idempotency is not None:
            earlier = db.execute(_Q.idempotent, (new.key_id, idempotency[0])).fetchone()
            if earlier is not None:
                if earlier[0] != idempotency[1]:
                    raise idempotency_conflict(idempotency[0])
                return _task(earlier[1:])
        # Inside the batch's transaction: the count sees the batch's earlier inserts.
        limit = new.max_in_flight
        if limit > 0 and db.execute(_Q.in_flight, (new.key_id,)).fetchone()[0] >= limit:
            raise too_many_in_flight(limit)
        cost = new.cost
        if not balances.debit(new.key_id, cost):
            raise CapgateError(ErrorCode.ZERO_BALANCE, "balance too low for this task")
        spec = new.spec
        (task_id,) = db.execute(
            _Q.insert_task,
            (
                new.key_id,
                spec.type.value,
                _encode(spec.params),
                spec.body,
                new.now,
                new.deadline_at,
                cost,
                new.ip,
                new.expires_at,
                None if idempotency is None else idempotency[0],
                None if idempotency is None else idempotency[1],
            ),
        ).fetchone()
        # The new row is what was sent and the columns' defaults: no need to read it back.
        return Task(
            id=task_id,
            key_id=new.key_id,
            type=spec.type,
            params=spec.params,
            body=spec.body,
            status=TaskStatus.QUEUED,
            created_at=new.now,
            deadline_at=new.deadline_at,
            cost=cost,
            ip=new.ip,
            expires_at=new.expires_at,
        )

    async def get_task(self, task_id: int) -> Task | None:
        """The task without its body, from memory while nothing has written to it.

        A poll is the most frequent request there is; reading the row and building its
        Task costs several times what asking SQLite whether anything changed does, and
        that question is asked once per event-loop turn (see _check_version)."""
        read = self._read
        if not self._version_checked:
            self._check_version()
        if task_id in read:
            task = read[task_id]
        else:
            row = self.db.execute(_Q.task_by_id, (task_id,)).fetchone()
            task = None if row is None else _task(row)
            if len(read) >= _READ_CACHE_SIZE:
                read.clear()
            read[task_id] = task
        # A copy: callers change theirs (polls).
        return None if task is None else msgspec.structs.replace(task)

    def _check_version(self) -> None:
        """Drop every copy if another connection committed since the last check, and
        trust the answer for the rest of this event-loop turn.

        That is exact, not a loose cache: every request served in this turn arrived before
        the turn began, so before the check; a commit that a client saw finish before it
        sent its request is seen. The next turn asks again (a callback scheduled now runs
        before any request that arrives after it). Under load dozens of polls share one
        check, which alone cost a tenth of a poll.
        """
        (version,) = self.db.execute("PRAGMA data_version").fetchone()
        if version != self._data_version:
            self._read.clear()
            self._data_version = version
        self._version_checked = True
        asyncio.get_running_loop().call_soon(self._forget_version_check)

    def _forget_version_check(self) -> None:
        self._version_checked = False

    def _changed(self, task_ids: Iterable[int]) -> None:
        """This connection wrote these tasks: their copies in memory are stale."""
        for task_id in task_ids:
            self._read.pop(task_id, None)

    async def add_polls(self, counts: Mapping[int, int]) -> None:
        if counts:
            self._changed(counts)
            with _transaction(self.db):
                self.db.executemany(_Q.add_polls, [(n, i) for i, n in counts.items()])

    async def report(
        self, task_id: int, key_id: int, correct: bool, limit: RefundLimit | None = None
    ) -> Task | None:
        db = self.db
        self._changed((task_id,))
        with _transaction(db):
            row = db.execute(_Q.reportable, (task_id, key_id)).fetchone()
            if row is not None:
                cost, finished_at, type_, ip, params = row
                refund = not correct and cost > 0
                if refund and limit is not None:
                    refunds, solved = db.execute(_Q.report_counts, (key_id,)).fetchone()
                    if not limit.allows(refunds, solved):
                        raise report_not_recorded(refunds, solved)
                db.execute(_Q.verdict, (int(correct), task_id))
                if refund:
                    db.execute(_Q.uncharge, (cost, key_id))
                    soft_id = soft_id_of(_params_decoder.decode(params))
                    line = (key_id, hour_of(finished_at), type_, ip, soft_id)
                    db.execute(_Q.unspend, (cost, *line))
            found = db.execute(_Q.task_by_id, (task_id,)).fetchone()
        if found is None:
            return None
        task = _task(found)
        return task if task.key_id == key_id else None

    async def lease(
        self,
        types: Collection[TaskType],
        limit: int,
        lease_seconds: float,
        now: float,
        token: str | None = None,
    ) -> list[Lease]:
        if token is not None:
            rows = self.db.execute(_Q.leased_with, (token, now)).fetchall()
            if rows:
                held = [_task(row) for row in rows]
                return [Lease(t, token, t.lease_expires_at or now) for t in held]
        if limit <= 0 or not types:
            return []
        db = self.db
        type_params = {f"t{i}": t.value for i, t in enumerate(types)}
        of_key = _Q.queued_of_key.format(types=", ".join(f":{name}" for name in type_params))
        chosen_token, expires = token or secrets.token_hex(8), now + lease_seconds
        with _transaction(db):
            queues: dict[int, list[int]] = {}
            key_id = -1
            while (row := db.execute(_Q.next_queued_key, (key_id,)).fetchone()) is not None:
                key_id = row[0]
                found = db.execute(of_key, {"key": key_id, "limit": limit, **type_params})
                queues[key_id] = [task_id for (task_id,) in found]
            ids = fair_order(queues, limit)
            if not ids:
                return []
            sql = _Q.lease.format(ids=", ".join(str(int(i)) for i in ids))
            params = {"now": now, "token": chosen_token, "expires": expires}
            self._changed(ids)
            rows = db.execute(sql, params).fetchall()
        tasks = sorted((_task(row) for row in rows), key=lambda t: t.id)
        return [Lease(t, chosen_token, expires) for t in tasks]

    async def extend_lease(
        self,
        task_id: int,
        token: str,
        expires_at: float,
        now: float,
        *,
        count_attempt: bool = False,
    ) -> bool:
        self._changed((task_id,))
        cursor = self.db.execute(
            _Q.extend, (max(expires_at, now), int(count_attempt), task_id, token, now)
        )
        return cursor.rowcount == 1

    async def held_image(self, task_id: int, token: str, now: float) -> bytes | None:
        row = self.db.execute(_Q.held_image, (task_id, token, now)).fetchone()
        return None if row is None else row[0]

    async def complete(
        self, task_id: int, token: str, solution: Solution, solver: str, now: float
    ) -> bool:
        db = self.db
        self._changed((task_id,))
        with _transaction(db):
            row = db.execute(
                _Q.complete, (_encode(solution), solver, now, task_id, token, now)
            ).fetchone()
            if row is None:
                return False
            key_id, cost, type_, ip, params = row
            db.execute(_Q.charge, (cost, key_id))
            if cost > 0:  # The ledger is of money: free answers, which no balance bounds, stay out.
                soft_id = soft_id_of(_params_decoder.decode(params))
                db.execute(_Q.spend, (key_id, hour_of(now), type_, ip, soft_id, cost))
        return True

    async def fail(
        self,
        task_id: int,
        token: str,
        code: ErrorCode,
        description: str,
        solver: str,
        now: float,
        *,
        retry: bool,
        max_attempts: int,
    ) -> bool:
        db = self.db
        self._changed((task_id,))
        with _transaction(db):
            row = db.execute(_Q.held_task, (task_id, token, now)).fetchone()
            if row is None:
                return False
            _, key_id, cost, attempts = row
            if retry and attempts < max_attempts:
                db.execute(_Q.requeue, (solver, task_id))
            else:
                self._fail(task_id, key_id, cost, code, description, solver, now)
        return True

    async def requeue_expired_leases(self, now: float, max_attempts: int) -> list[int]:
        db = self.db
        with _transaction(db):
            rows = db.execute(_Q.expired_leases, (now,)).fetchall()
            for task_id, key_id, cost, attempts in rows:
                if attempts < max_attempts:
                    db.execute(_Q.requeue, (None, task_id))
                else:
                    self._fail(
                        task_id,
                        key_id,
                        cost,
                        ErrorCode.CAPTCHA_UNSOLVABLE,
                        out_of_attempts(attempts),
                        None,
                        now,
                    )
        self._changed(row[0] for row in rows)
        return sorted(row[0] for row in rows)

    async def fail_overdue(self, now: float) -> list[int]:
        db = self.db
        with _transaction(db):
            rows = db.execute(_Q.overdue, (now,)).fetchall()
            for task_id, key_id, cost, deadline_seconds in rows:
                self._fail(
                    task_id,
                    key_id,
                    cost,
                    ErrorCode.TASK_TIMEOUT,
                    timed_out(deadline_seconds),
                    None,
                    now,
                )
        self._changed(row[0] for row in rows)
        return sorted(row[0] for row in rows)

    async def purge(self, now: float, limit: int) -> int:
        purged = self.db.execute(_Q.purge, (now, limit)).rowcount
        if purged:
            self._read.clear()
        # The ledger's old hours go once an hour (the sweep runs every second).
        if hour_of(now) != self._ledger_pruned:
            self._ledger_pruned = hour_of(now)
            self.db.execute(_Q.forget_spending, (hour_of(now - SPENDING_KEEP_SECONDS),))
        return purged

    async def in_flight(self, key_id: int) -> int:
        row = self.db.execute(_Q.in_flight, (key_id,)).fetchone()
        return int(row[0])

    async def queue_depth(self) -> int:
        row = self.db.execute(_Q.queue_depth).fetchone()
        return int(row[0])

    async def recent_tasks(self, limit: int) -> list[Task]:
        rows = self.db.execute(_Q.recent, (max(0, limit),)).fetchall()
        return [_task(row) for row in rows]

    async def spending(self, key_id: int, since: float, until: float) -> list[Spending]:
        rows = self.db.execute(_Q.spending, (key_id, since, until)).fetchall()
        return [
            Spending(hour, TaskType(type_), ip, soft_id, volume, money)
            for hour, type_, ip, soft_id, volume, money in rows
        ]

    # --- sites (SiteStore) ------------------------------------------------------------

    def _seen(self, site: str) -> None:
        assert len(site) <= 255, "a site name is at most 255 characters"
        self.db.execute(_Q.seen_site, (site,))

    def _event(
        self, site: str, at: float, kind: str, version: int, reason: str, labels: int
    ) -> None:
        self.db.execute(_Q.event, (site, at, kind, version, reason, labels))
        self.db.execute(_Q.trim_history, (site, SITE_HISTORY_KEEP))

    async def add_site_label(
        self, site: str, task_id: int, image: bytes, text: str, now: float, keep: int
    ) -> int:
        db = self.db
        with _transaction(db):
            self._seen(site)
            db.execute(_Q.put_label, (site, task_id, image, text, now))
            db.execute(_Q.trim_labels, (site, max(0, keep)))
            (count,) = db.execute(_Q.count_labels, (site,)).fetchone()
        return int(count)

    async def forget_site_label(self, site: str, task_id: int) -> bool:
        return self.db.execute(_Q.forget_label, (site, task_id)).rowcount == 1

    async def site_labels(self, site: str) -> list[SiteLabel]:
        return [SiteLabel(*row) for row in self.db.execute(_Q.labels, (site,))]

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
        db = self.db
        with _transaction(db):
            self._seen(site)
            version = int(db.execute(_Q.last_version, (site,)).fetchone()[0]) + 1
            db.execute(_Q.retire, (site,))
            db.execute(_Q.insert_model, (site, version, now, threshold, precision, _encode(scores)))
            db.execute(_Q.insert_files, (site, version, onnx, spec))
            # The new version serves: every version older than the newest SITE_FILES_KEEP goes.
            db.execute(_Q.drop_files, (site, version - SITE_FILES_KEEP))
            db.execute(_Q.drop_audits, (site, version - SITE_FILES_KEEP))
            self._event(site, now, PROMOTED, version, reason, labels)
        return SiteModel(site, version, SERVING, now, threshold, precision, dict(scores))

    async def reject_candidate(self, site: str, reason: str, now: float, labels: int) -> None:
        db = self.db
        with _transaction(db):
            self._seen(site)
            version = int(db.execute(_Q.last_version, (site,)).fetchone()[0]) + 1
            self._event(site, now, REJECTED, version, reason, labels)

    async def demote_model(self, site: str, version: int, reason: str, now: float) -> bool:
        db = self.db
        with _transaction(db):
            if db.execute(_Q.demote, (site, version)).rowcount != 1:
                return False
            self._event(site, now, DEMOTED, version, reason, 0)
        return True

    async def serving_models(self) -> dict[str, SiteModel]:
        return {row[0]: _site_model(row) for row in self.db.execute(_Q.serving)}

    async def site_models(self, site: str) -> list[SiteModel]:
        return [_site_model(row) for row in self.db.execute(_Q.models, (site,))]

    async def model_files(self, site: str, version: int) -> tuple[bytes, bytes] | None:
        row = self.db.execute(_Q.files, (site, version)).fetchone()
        return None if row is None else (row[0], row[1])

    async def site_history(self, site: str, limit: int = 50) -> list[SiteEvent]:
        rows = self.db.execute(_Q.history, (site, max(0, limit)))
        return [SiteEvent(*row) for row in rows]

    async def count_answer(self, site: str, local: bool, by_model: bool, saved: int) -> None:
        assert len(site) <= 255, "a site name is at most 255 characters"
        counts = (1, 0, int(by_model), saved) if local else (0, 1, 0, 0)
        self.db.execute(_Q.count_answer, (site, *counts))

    async def record_audit(
        self, site: str, version: int, agreed: bool, now: float, window: int, report: bool
    ) -> list[bool]:
        db = self.db
        with _transaction(db):
            assert len(site) <= 255, "a site name is at most 255 characters"
            counts = (0, 0, 1) if report else (1, int(agreed), 0)
            db.execute(_Q.count_audit, (site, *counts))
            if not report:
                db.execute(_Q.audit, (site, version, int(agreed)))
            db.execute(_Q.trim_audits, (site, version, max(0, window)))
            rows = db.execute(_Q.audits, (site, version)).fetchall()
        return [bool(agreed) for (agreed,) in rows]

    async def site_counters(self) -> list[SiteCounters]:
        return [SiteCounters(*row) for row in self.db.execute(_Q.counters)]

    async def hold_lock(self, name: str, holder: str, seconds: float, now: float) -> bool:
        return self.db.execute(_Q.hold_lock, (name, holder, now, seconds)).rowcount == 1

    async def release_lock(self, name: str, holder: str) -> None:
        self.db.execute(_Q.release_lock, (name, holder))

    def _fail(
        self,
        task_id: int,
        key_id: int,
        cost: int,
        code: ErrorCode,
        description: str,
        solver: str | None,
        now: float,
    ) -> None:
        # Called inside a transaction: the status move and the refund commit together.
        if self.db.execute(_Q.fail, (code.value, description, solver, now, task_id)).rowcount:
            self.db.execute(_Q.refund, (cost, key_id))


@contextmanager
def _no_fsync_in_commit(db: sqlite3.Connection) -> Iterator[None]:
    """Commits inside do not fsync the WAL (synchronous=NORMAL): the caller fsyncs it
    before answering anyone. FULL again on the way out, whatever happened."""
    db.execute("PRAGMA synchronous = NORMAL")
    try:
        yield
    finally:
        db.execute("PRAGMA synchronous = FULL")


def _answer(batch: _Batch, outcomes: _Outcomes) -> None:
    """Answer each create of a committed batch with its task or its refusal."""
    for (_, created), outcome in zip(batch, outcomes, strict=True):
        if created.done():  # The caller went away; its task stands all the same.
            continue
        if isinstance(outcome, CapgateError):
            created.set_exception(outcome)
        else:
            created.set_result(outcome)


class _Balances:
    """The balances a batch of creates debits, inside its write transaction: each key's
    read once and its debits written once, at the end, instead of an UPDATE per task (3-7
    µs a task in a bare-SQLite loop, about a tenth of the INSERT). BEGIN IMMEDIATE
    holds the write lock from the first read, so no other connection can change a balance
    between the read and the write; a batch that fails is rolled back whole."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.left: dict[int, int] = {}
        self.debits: dict[int, int] = {}

    def debit(self, key_id: int, cost: int) -> bool:
        """Take `cost` from the key's balance; False if the key is gone or its balance
        is short (a free task needs only the key)."""
        left = self.left.get(key_id)
        if left is None:
            row = self.db.execute(_Q.balance, (key_id,)).fetchone()
            if row is None:
                return False
            left = self.left[key_id] = row[0]
        if cost == 0:
            return True
        if left < cost:
            return False
        self.left[key_id] = left - cost
        self.debits[key_id] = self.debits.get(key_id, 0) + cost
        return True

    def write(self) -> None:
        for key_id, total in self.debits.items():
            self.db.execute(_Q.debit, (total, key_id))


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed on success, rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # The body failed, or COMMIT did (which leaves it open).
            db.execute("ROLLBACK")
        raise


_encoder = msgspec.json.Encoder()
_solution_decoder = msgspec.json.Decoder(Solution)
_params_decoder = msgspec.json.Decoder(dict[str, Any])


def _encode(value: Any) -> bytes:
    return _encoder.encode(value)


def _key(row: tuple[Any, ...]) -> Key:
    (key_id, name, key_hash, balance, spent, created_at, dialect, worker, solved, refunds,
     allow_ips, site) = row  # fmt: skip
    return Key(
        key_id, name, key_hash, balance, spent, created_at, dialect, bool(worker), solved,
        refunds, allow_ips.split(",") if allow_ips else [], site,
    )  # fmt: skip


def _site_model(row: tuple[Any, ...]) -> SiteModel:
    site, version, state, created_at, threshold, precision, scores = row
    return SiteModel(
        site, version, state, created_at, threshold, precision, _params_decoder.decode(scores)
    )


def _task(row: tuple[Any, ...]) -> Task:
    (
        task_id,
        key_id,
        type_,
        params,
        body,
        status,
        created_at,
        deadline_at,
        cost,
        ip,
        expires_at,
        started_at,
        finished_at,
        attempts,
        polls,
        solver,
        solution,
        error_code,
        error_description,
        lease_token,
        lease_expires_at,
        verdict,
    ) = row
    return Task(
        id=task_id,
        key_id=key_id,
        type=TaskType(type_),
        params=_params_decoder.decode(params),
        body=body,
        status=TaskStatus(status),
        created_at=created_at,
        deadline_at=deadline_at,
        cost=cost,
        ip=ip,
        expires_at=expires_at,
        started_at=started_at,
        finished_at=finished_at,
        attempts=attempts,
        polls=polls,
        solver=solver,
        solution=None if solution is None else _solution_decoder.decode(solution),
        error_code=None if error_code is None else ErrorCode(error_code),
        error_description=error_description,
        lease_token=lease_token,
        lease_expires_at=lease_expires_at,
        verdict=None if verdict is None else bool(verdict),
    )
