"""The node's persistent job queue: one SQLite database (stdlib ``sqlite3``, WAL, ``synchronous=FULL``) in
the spool, so that a node killed at any moment resumes every job where it stopped.

A job is one received series: ``receiving`` -> ``complete`` (the sender released its association and
no instance came for ``stable_seconds``) -> ``denoised`` (the derived series is published in the spool
and its Series Instance UID recorded: from here on every send is of these very files, so a resume can
never make a second output series) -> ``sending`` -> ``sent`` or ``failed``. Each destination of a job
has its own delivery row (``pending`` -> ``sent`` / ``failed``, attempts, next attempt time), so a restart
resends only what no destination acknowledged in full; a delivery is ``sent`` only after the last
instance's C-STORE succeeded and the association was released, never before.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    peer_host TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    last_received REAL NOT NULL,
    instances INTEGER NOT NULL DEFAULT 0,
    derived_series_uid TEXT,
    derived_instances INTEGER,
    error TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_series ON jobs (series_uid, state);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS instances (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    sop_uid TEXT NOT NULL,
    PRIMARY KEY (job_id, sop_uid)
);
CREATE TABLE IF NOT EXISTS deliveries (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    destination TEXT NOT NULL,
    ae_title TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (job_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt);
"""

RECEIVING, COMPLETE, DENOISED, SENDING, SENT, FAILED = "receiving", "complete", "denoised", "sending", "sent", "failed"
DUPLICATE = "duplicate"
"""A series sent again with no instance that an earlier job of it did not already have: no second output."""
STATES = (RECEIVING, COMPLETE, DENOISED, SENDING, SENT, FAILED, DUPLICATE)
FINAL = (SENT, FAILED, DUPLICATE)


@dataclass(frozen=True)
class Job:
    id: int
    study_uid: str
    series_uid: str
    calling_ae: str
    peer_host: str
    state: str
    created: float
    last_received: float
    instances: int
    derived_series_uid: str | None
    derived_instances: int | None
    error: str | None
    updated: float


@dataclass(frozen=True)
class Delivery:
    job_id: int
    destination: str
    ae_title: str
    host: str
    port: int
    state: str
    attempts: int
    next_attempt: float
    last_error: str | None
    updated: float


class Queue:
    """The job table; every method is one transaction, safe to call from any thread."""

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
        else:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- jobs --------------------------------------------------------------------------------------
    def receiving_job(self, study_uid: str, series_uid: str, calling_ae: str, peer_host: str) -> tuple[Job, bool]:
        """The job receiving this series, created if there is none; and whether it was created."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE series_uid=? AND state=? ORDER BY id DESC LIMIT 1",
                             (series_uid, RECEIVING)).fetchone()
            if row is not None:
                return Job(**row), False
            cur = db.execute("INSERT INTO jobs (study_uid, series_uid, calling_ae, peer_host, state, created, "
                             "last_received, updated) VALUES (?,?,?,?,?,?,?,?)",
                             (study_uid, series_uid, calling_ae, peer_host, RECEIVING, now, now, now))
            row = db.execute("SELECT * FROM jobs WHERE id=?", (cur.lastrowid,)).fetchone()
            return Job(**row), True

    def received(self, job_id: int, new_instance: bool, sop_uid: str) -> None:
        with self._tx() as db:
            now = time.time()
            db.execute("UPDATE jobs SET last_received=?, updated=?, instances=instances+? WHERE id=?",
                       (now, now, 1 if new_instance else 0, job_id))
            db.execute("INSERT OR IGNORE INTO instances (job_id, sop_uid) VALUES (?,?)", (job_id, sop_uid))

    def add_sops(self, job_id: int, sop_uids: list[str]) -> None:
        """Record instances of a job found on disk (after a crash) or joined from an earlier job."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO instances (job_id, sop_uid) VALUES (?,?)",
                           [(job_id, uid) for uid in sop_uids])

    def sop_uids(self, job_id: int) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT sop_uid FROM instances WHERE job_id=?", (job_id,)).fetchall()
        return {row["sop_uid"] for row in rows}

    def touch(self, job_id: int) -> None:
        """Count a receiving job's stable time from now (a restart: its sender may be about to send again)."""
        with self._tx() as db:
            now = time.time()
            db.execute("UPDATE jobs SET last_received=?, updated=? WHERE id=? AND state=?", (now, now, job_id,
                                                                                              RECEIVING))

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return Job(**row) if row is not None else None

    def jobs(self, states: tuple[str, ...] = STATES, limit: int | None = None) -> list[Job]:
        marks = ",".join("?" * len(states))
        sql = f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id"
        if limit is not None:
            sql = f"SELECT * FROM ({sql.replace('ORDER BY id', 'ORDER BY id DESC')} LIMIT {int(limit)}) ORDER BY id"
        with self._lock:
            return [Job(**row) for row in self._db.execute(sql, states).fetchall()]

    def series_jobs(self, series_uid: str) -> list[Job]:
        """Every job of one series, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE series_uid=? ORDER BY id", (series_uid,)).fetchall()
        return [Job(**row) for row in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {row["state"]: row["n"] for row in rows}

    def set_state(self, job_id: int, state: str, *, expect: tuple[str, ...] | None = None, error: str | None = None,
                  derived_series_uid: str | None = None, derived_instances: int | None = None,
                  instances: int | None = None) -> bool:
        """Move a job to ``state`` (only from one of ``expect``, when given); whether it moved."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None or (expect is not None and row["state"] not in expect):
                return False
            sets, args = ["state=?", "updated=?"], [state, time.time()]
            for key, value in (("error", error), ("derived_series_uid", derived_series_uid),
                               ("derived_instances", derived_instances), ("instances", instances)):
                if value is not None:
                    sets.append(f"{key}=?")
                    args.append(value)
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", (*args, job_id))
            return True

    def drop_empty(self, job_id: int) -> bool:
        """Forget a job that still receives and holds no instance (every instance of it was refused)."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM jobs WHERE id=? AND state=? AND NOT EXISTS "
                             "(SELECT 1 FROM deliveries WHERE job_id=?)", (job_id, RECEIVING, job_id))
            return cur.rowcount == 1

    # -- deliveries --------------------------------------------------------------------------------
    def add_deliveries(self, job_id: int, targets: list[tuple[str, str, str, int]]) -> None:
        """One pending delivery per (name, AE title, host, port), created with the job's move to ``sending``."""
        now = time.time()
        with self._tx() as db:
            for name, ae, host, port in targets:
                db.execute("INSERT OR IGNORE INTO deliveries (job_id, destination, ae_title, host, port, state, "
                           "next_attempt, updated) VALUES (?,?,?,?,?,?,?,?)",
                           (job_id, name, ae, host, port, "pending", now, now))
            db.execute("UPDATE jobs SET state=?, updated=? WHERE id=? AND state=?", (SENDING, now, job_id, DENOISED))

    def deliveries(self, job_id: int | None = None) -> list[Delivery]:
        with self._lock:
            if job_id is None:
                rows = self._db.execute("SELECT * FROM deliveries ORDER BY job_id, destination").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM deliveries WHERE job_id=? ORDER BY destination",
                                        (job_id,)).fetchall()
        return [Delivery(**row) for row in rows]

    def due_deliveries(self, now: float) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM deliveries WHERE state='pending' AND next_attempt<=? "
                                    "ORDER BY next_attempt, job_id", (now,)).fetchall()
        return [Delivery(**row) for row in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) AS t FROM deliveries WHERE state='pending'").fetchone()
        return row["t"]

    def delivered(self, job_id: int, destination: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE deliveries SET state='sent', attempts=attempts+1, last_error=NULL, updated=? "
                       "WHERE job_id=? AND destination=?", (time.time(), job_id, destination))

    def delivery_failed(self, job_id: int, destination: str, error: str, retry_at: float | None) -> int:
        """Record a failed attempt: pending again at ``retry_at``, or failed for good (``None``). The attempts made."""
        with self._tx() as db:
            db.execute("UPDATE deliveries SET state=?, attempts=attempts+1, next_attempt=?, last_error=?, updated=? "
                       "WHERE job_id=? AND destination=?",
                       ("pending" if retry_at is not None else "failed", retry_at or 0.0, error[:500], time.time(),
                        job_id, destination))
            row = db.execute("SELECT attempts FROM deliveries WHERE job_id=? AND destination=?",
                             (job_id, destination)).fetchone()
        return int(row["attempts"])

    def retry_failed(self, job_id: int | None = None) -> tuple[int, int]:
        """Failed jobs queued again: failed deliveries pending from attempt 0 (their jobs back to ``sending``),
        and jobs that failed before any delivery (a failed denoise) back to ``complete``, or to ``denoised``
        when their derived series was recorded, unless a later job of their series took it over.
        (jobs resent, jobs to denoise again)."""
        now = time.time()
        only = " AND job_id=?" if job_id is not None else ""
        args = (job_id,) if job_id is not None else ()
        with self._tx() as db:
            rows = db.execute(f"SELECT DISTINCT job_id FROM deliveries WHERE state='failed'{only}", args).fetchall()
            db.execute(f"UPDATE deliveries SET state='pending', attempts=0, next_attempt=?, updated=? "
                       f"WHERE state='failed'{only}", (now, now, *args))
            for row in rows:
                db.execute("UPDATE jobs SET state=?, error=NULL, updated=? WHERE id=? AND state=?",
                           (SENDING, now, row["job_id"], FAILED))
            # not a job whose series a later job took over (the series sent again made one derived series of
            # it all, see Node._merge_earlier): denoising it again would make a second output series
            undelivered = db.execute(
                f"SELECT id, derived_series_uid FROM jobs WHERE state=? {only.replace('job_id', 'id')} AND NOT EXISTS "
                "(SELECT 1 FROM deliveries WHERE deliveries.job_id=jobs.id) AND NOT EXISTS "
                "(SELECT 1 FROM jobs AS later WHERE later.series_uid=jobs.series_uid AND later.id>jobs.id AND NOT "
                "(later.state=? AND later.derived_series_uid IS NULL))", (FAILED, *args, FAILED)).fetchall()
            for row in undelivered:
                db.execute("UPDATE jobs SET state=?, error=NULL, updated=? WHERE id=?",
                           (DENOISED if row["derived_series_uid"] else COMPLETE, now, row["id"]))
        return len(rows), len(undelivered)

    def snapshot(self, limit: int = 200) -> dict:
        """The queue as plain data (the status file and ``vagan serve --status``)."""
        jobs = self.jobs(limit=limit)
        ids = {job.id for job in jobs}
        deliveries: dict[int, list[dict]] = {}
        with self._lock:
            rows = self._db.execute("SELECT * FROM deliveries WHERE job_id>=? ORDER BY job_id, destination",
                                    (min(ids, default=0),)).fetchall()
        for d in (Delivery(**row) for row in rows):
            if d.job_id in ids:
                deliveries.setdefault(d.job_id, []).append(
                    {"destination": d.destination, "ae_title": d.ae_title, "host": d.host, "port": d.port,
                     "state": d.state, "attempts": d.attempts, "next_attempt": d.next_attempt,
                     "last_error": d.last_error})
        return {"counts": self.counts(),
                "jobs": [{**job.__dict__, "deliveries": deliveries.get(job.id, [])} for job in jobs]}


def to_json(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True)
