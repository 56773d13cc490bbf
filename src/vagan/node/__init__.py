"""``vagan serve``: a DICOM node (pynetdicom) that denoises received CT series and sends the derived
series on. See docs/node.md; the modules: :mod:`.config` (the YAML schema), :mod:`.spool` (durable
writes, space limits), :mod:`.queue` (the persistent job queue), :mod:`.sender` (C-STORE with
retries), :mod:`.server` (the node itself)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from vagan.errors import ConfigError
from vagan.node.config import NodeConfig, load_node_config

__all__ = ["NodeConfig", "load_node_config", "retry_failed_deliveries", "run_node", "status_lines"]


def run_node(config_path: Path, overrides: list[str] | None = None) -> None:
    """Check the config, take the spool, load the model, then bind and serve until SIGTERM or Ctrl-C.
    Nothing is bound before every check passed; a port that cannot be bound is one ConfigError."""
    from vagan.node.server import Node

    config = load_node_config(config_path, overrides)
    for handler in logging.getLogger().handlers:  # a service's log lines carry their time
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # the node says one line per bad connection
    node = Node(config)
    node.prepare()
    try:
        node.start()
    except OSError as err:
        node.stop()
        raise ConfigError(f"port: cannot listen on {config.host}:{config.port} ({err.strerror or err})") from None
    try:
        node.wait()
    except KeyboardInterrupt:
        logging.getLogger("vagan.node").info("vagan serve: stopping (Ctrl-C)")
    except SystemExit:
        logging.getLogger("vagan.node").info("vagan serve: stopping (signal)")
        node.stop()
        raise
    node.stop()


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def status_lines(config: NodeConfig) -> list[str]:
    """The queue of the node on ``config``'s spool, read from its database (also when the node is down)."""
    from vagan.node.queue import Queue
    from vagan.node.spool import Spool

    spool = Spool(config.spool, config.limits)
    db = spool.root / "queue.sqlite"
    if not db.is_file():
        return [f"no queue in {spool.root}: this node has not received anything yet"]
    holder = spool.holder()
    queue = Queue(db, readonly=True)
    try:
        snapshot = queue.snapshot(limit=100)
    finally:
        queue.close()
    running = f"running (pid {holder})" if holder else "not running"
    counts = ", ".join(f"{state} {n}" for state, n in sorted(snapshot["counts"].items())) or "no jobs"
    lines = [f"node {config.ae_title} on {config.host}:{config.port}: {running}; spool {spool.root}",
             f"jobs: {counts}",
             "job | state | series | instances | derived series | deliveries | updated | error"]
    for job in snapshot["jobs"]:
        deliveries = ", ".join(
            f"{d['destination']} {d['state']}" + (f" ({d['attempts']} tries)" if d["attempts"] > 1 else "")
            + (f" next {_when(d['next_attempt'])}" if d["state"] == "pending" and d["attempts"] else "")
            for d in job["deliveries"]) or "-"
        lines.append(f"{job['id']} | {job['state']} | {job['series_uid']} | {job['instances']} | "
                     f"{job['derived_series_uid'] or '-'} | {deliveries} | {_when(job['updated'])} | "
                     f"{job['error'] or ''}".rstrip(" |"))
    return lines


def retry_failed_deliveries(config: NodeConfig) -> str:
    """Failed jobs queued again: failed deliveries from attempt 0, failed denoising from the received
    series; what was done."""
    from vagan.node.queue import Queue

    db = Path(config.spool) / "queue.sqlite"
    if not db.is_file():
        raise ConfigError(f"spool: no queue in {config.spool}: this node has not received anything yet")
    queue = Queue(db)
    try:
        resent, redone = queue.retry_failed()
    finally:
        queue.close()
    if not resent and not redone:
        return "no failed job to retry"
    done = [f"{resent} job(s) with failed deliveries queued to send again"] if resent else []
    done += [f"{redone} job(s) that failed before sending queued to denoise again"] if redone else []
    return "; ".join(done) + "; a running node takes them now, a stopped one at its next start"
