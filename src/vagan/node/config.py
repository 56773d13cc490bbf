"""The YAML configuration of ``vagan serve``, checked once before the node binds its port.

Every mistake is one :class:`~vagan.errors.ConfigError` naming the key (``error: ...`` on the command
line). Relative ``spool`` and ``model`` paths are taken relative to the config file's folder, so a
service can be started from any working directory.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vagan.config_schema import Section, bounded, build_section, read_yaml_mapping
from vagan.errors import ConfigError
from vagan.inference.engine import EngineName
from vagan.precision import PrecisionName

AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash, at most 16
PEER_SHORTHAND = re.compile(r"^(?P<ae>[^@]+?)(?:@(?P<host>[^:@]+)(?::(?P<port>\d+))?)?$")


def check_ae_title(value: str, where: str) -> str:
    """An AE title: 1-16 printable ASCII characters other than backslash, not only spaces."""
    if not AE_TITLE.match(value) or not value.strip():
        raise ConfigError(f"{where}: {value!r} is not a DICOM AE title (1 to 16 printable ASCII characters, no "
                          "backslash, not only spaces)")
    return value.strip()


@dataclass(frozen=True)
class Peer(Section):
    """A calling AE allowed to send: its title, optionally the address it must come from (``host``) and
    the port it listens on (``port``, needed for ``return_to_sender``)."""

    ae_title: str = ""
    host: str | None = None
    port: int | None = bounded(None, ge=1, le=65535)
    tls: bool = False  # its port speaks DICOM TLS (for return_to_sender)

    def check(self) -> None:
        check_ae_title(self.ae_title, "ae_title")
        if self.host is not None and not self.host.strip():
            raise ConfigError("host: empty; leave it out to accept this AE title from any address")

    @classmethod
    def from_value(cls, value: Any, where: str) -> Peer:
        """``"ORTHANC"`` or ``"ORTHANC@127.0.0.1"`` or ``"ORTHANC@127.0.0.1:4242"``."""
        match = PEER_SHORTHAND.match(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(f"{where}: expected an AE title, 'AE@HOST', 'AE@HOST:PORT' or a mapping "
                              f"{{ae_title, host, port}}, got {value!r}")
        data: dict[str, Any] = {"ae_title": match["ae"]}
        if match["host"]:
            data["host"] = match["host"]
        if match["port"]:
            data["port"] = int(match["port"])
        from vagan.config_schema import build_dataclass

        return build_dataclass(cls, data, where)


@dataclass(frozen=True)
class Destination(Section):
    """A DICOM node (a PACS, Orthanc) that receives every derived series by C-STORE."""

    name: str = ""
    ae_title: str = ""
    host: str = ""
    port: int = bounded(104, ge=1, le=65535)
    tls: bool = False  # reached by DICOM TLS, with the node's tls certificate and CA

    def check(self) -> None:
        check_ae_title(self.ae_title, "ae_title")
        if not self.host.strip():
            raise ConfigError("host: empty; give the destination's address, e.g. 127.0.0.1")
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.name or self.ae_title.strip()):
            raise ConfigError(f"name: {self.name!r}: letters, digits, '_', '.', '-' only (1 to 64)")

    @property
    def label(self) -> str:
        return self.name or self.ae_title.strip()


@dataclass(frozen=True)
class RetryPolicy(Section):
    """How often a destination that fails is tried again: after ``backoff_seconds``, doubling up to
    ``max_backoff_seconds``, ``attempts`` tries in all; then the delivery is reported failed."""

    attempts: int = bounded(6, ge=1, le=10_000)
    backoff_seconds: float = bounded(10.0, gt=0, le=86_400)
    max_backoff_seconds: float = bounded(600.0, gt=0, le=7 * 86_400)

    def check(self) -> None:
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ConfigError(f"max_backoff_seconds: {self.max_backoff_seconds:g} is below backoff_seconds "
                              f"{self.backoff_seconds:g}")

    def delay(self, attempts_made: int) -> float:
        """Seconds to wait after the ``attempts_made``-th failed attempt (1, 2, ...)."""
        return min(self.backoff_seconds * 2.0 ** max(attempts_made - 1, 0), self.max_backoff_seconds)


@dataclass(frozen=True)
class StorageLimits(Section):
    """When the spool refuses data. It never deletes unsent data to make room: a new association is refused
    (A-ASSOCIATE-RJ, transient, local limit exceeded) while the spool holds more than ``max_spool_gb`` less
    ``association_headroom_mb`` or its disk has less than ``min_free_gb`` plus that headroom free, and an
    instance that would cross a limit is answered 0xA700 (Out of Resources). ``keep_sent``: keep a job's
    received and derived files after every destination has them (default: removed then)."""

    max_spool_gb: float = bounded(50.0, gt=0)
    min_free_gb: float = bounded(1.0, ge=0)
    association_headroom_mb: float = bounded(512.0, ge=0)
    max_instance_mb: float = bounded(256.0, gt=0)
    keep_sent: bool = False


@dataclass(frozen=True)
class Timeouts(Section):
    """Bounds on every network wait, in seconds: an idle or stuck peer is dropped, never waited for."""

    network: float = bounded(60.0, gt=0, le=3600)
    acse: float = bounded(30.0, gt=0, le=3600)
    dimse: float = bounded(60.0, gt=0, le=3600)
    connect: float = bounded(10.0, gt=0, le=600)


@dataclass(frozen=True)
class TLSConfig(Section):
    """DICOM over TLS (PS3.15 Annex B; TLS 1.2 or later, BCP 195). ``certificate``/``private_key``: the
    node's own (PEM; the key unencrypted, readable by the node only); ``ca``: the PEM bundle that peers'
    and destinations' certificates must chain to. ``listen``: the node's port speaks TLS only;
    ``require_peer_certificate``: a peer must present a certificate signed by ``ca`` (mutual TLS, on by
    default); ``check_hostname``: a destination's certificate must name the host it is reached at."""

    certificate: str = ""
    private_key: str = ""
    ca: str = ""
    listen: bool = False
    require_peer_certificate: bool = True
    check_hostname: bool = True

    def check(self) -> None:
        given = [k for k in ("certificate", "private_key", "ca") if getattr(self, k).strip()]
        if given and len(given) < 3:
            missing = sorted({"certificate", "private_key", "ca"} - set(given))
            raise ConfigError(f"{', '.join(missing)}: missing; DICOM TLS needs the node's certificate, its private "
                              "key and the CA bundle its peers are checked against")
        if self.listen and not given:
            raise ConfigError("listen: true needs certificate, private_key and ca")


@dataclass(frozen=True)
class NodeConfig(Section):
    """A ``vagan serve`` node: where it listens, whom it accepts, which model runs, where results go."""

    ae_title: str = "VAGAN"
    host: str = "127.0.0.1"
    port: int = bounded(11112, ge=1, le=65535)
    spool: str = ""
    model: str = ""
    engine: EngineName = "auto"
    device: str = "cpu"
    precision: PrecisionName = "auto"
    batch_size: int | None = bounded(None, ge=1, le=4096)
    allowed_peers: tuple[Peer, ...] = ()
    destinations: tuple[Destination, ...] = ()
    return_to_sender: bool = False
    stable_seconds: float = bounded(10.0, gt=0, le=86_400)
    max_associations: int = bounded(8, ge=1, le=256)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    limits: StorageLimits = field(default_factory=StorageLimits)
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TLSConfig = field(default_factory=TLSConfig)

    def check(self) -> None:
        check_ae_title(self.ae_title, "ae_title")
        if not self.host.strip():
            raise ConfigError("host: empty; give the address to listen on, e.g. 127.0.0.1")
        if not self.spool.strip():
            raise ConfigError("spool: missing; give a folder for received instances, jobs and derived series")
        if not self.model.strip():
            raise ConfigError("model: missing; give a shipped model's name (`vagan models`) or a run/checkpoint "
                              "folder")
        low = self.model.strip().lower()
        if low in ("ldct", "ndct") or low.startswith(("bm3d", "bm3d-psd")):
            raise ConfigError(f"model: {self.model!r}: the node runs trained networks only (a shipped model's name or "
                              "a run/checkpoint folder); BM3D is not offered here")
        if not self.allowed_peers:
            raise ConfigError("allowed_peers: empty; list the calling AE titles that may send, e.g. [ORTHANC]")
        if not self.destinations and not self.return_to_sender:
            raise ConfigError("destinations: empty and return_to_sender is false; derived series would go nowhere")
        labels = [d.label for d in self.destinations]
        dup = sorted({n for n in labels if labels.count(n) > 1})
        if dup:
            raise ConfigError(f"destinations: the names {dup} are used twice; give each destination its own name")
        over_tls = [d.label for d in self.destinations if d.tls] + [p.ae_title for p in self.allowed_peers if p.tls]
        if over_tls and not self.tls.certificate.strip():
            raise ConfigError(f"tls: {', '.join(over_tls)} is reached by DICOM TLS, but tls has no certificate, "
                              "private_key and ca")
        if self.return_to_sender:
            no_port = [p.ae_title for p in self.allowed_peers if p.port is None]
            if no_port:
                raise ConfigError(f"allowed_peers: return_to_sender needs the port each peer listens on; "
                                  f"{', '.join(no_port)} has none (write AE@HOST:PORT)")
            no_host = [p.ae_title for p in self.allowed_peers if p.host is None]
            if no_host:
                raise ConfigError(f"allowed_peers: return_to_sender needs each peer's host; {', '.join(no_host)} has "
                                  "none (write AE@HOST:PORT)")

    def peer(self, ae_title: str, address: str) -> Peer | None:
        """The allowed peer matching a calling AE title and address, or ``None``."""
        for peer in self.allowed_peers:
            if peer.ae_title == ae_title.strip() and (peer.host is None or peer.host == address):
                return peer
        return None

    def targets(self, calling_ae: str, address: str) -> list[Destination]:
        """Where a series from ``calling_ae`` goes: the destinations, then the sender itself if asked."""
        out = list(self.destinations)
        peer = self.peer(calling_ae, address) if self.return_to_sender else None
        if peer is not None and peer.port is not None and peer.host is not None:
            back = Destination(name=f"sender-{_safe(peer.ae_title)}", ae_title=peer.ae_title, host=peer.host,
                               port=peer.port, tls=peer.tls)
            if all((d.ae_title, d.host, d.port) != (back.ae_title, back.host, back.port) for d in out):
                out.append(back)
        return out


    def reached_by_tls(self, label: str) -> bool | None:
        """Whether the destination named ``label`` is reached by TLS, as the config says now (a destination
        switched to TLS between a failed attempt and its retry is retried by TLS); ``None`` when the config
        no longer has it (the caller fails closed)."""
        for dest in self.destinations:
            if dest.label == label:
                return dest.tls
        for peer in self.allowed_peers:
            if label == f"sender-{_safe(peer.ae_title)}":
                return peer.tls
        return None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text.strip())[:50] or "peer"


def load_node_config(path: Path | str, overrides: list[str] | None = None) -> NodeConfig:
    """The node's config from a YAML file; relative ``spool`` and ``model`` paths are relative to the file."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    config: NodeConfig = build_section(NodeConfig, raw, list(overrides or []))
    base = path.resolve().parent
    spool = Path(config.spool).expanduser()
    changes: dict[str, Any] = {}
    if not spool.is_absolute():
        changes["spool"] = str(base / spool)
    model = Path(config.model).expanduser()
    if not model.is_absolute() and (base / model).exists():
        changes["model"] = str(base / model)
    from vagan.node.tls import resolve_paths

    tls = resolve_paths(config.tls, base)
    if tls:
        changes["tls"] = dataclasses.replace(config.tls, **tls)
    if changes:
        config = dataclasses.replace(config, **changes)
    return config


def check_model_spec(spec: str) -> Path:
    """The folder of the node's model: a shipped model's (checksums verified) or an existing path."""
    from vagan.inference.pretrained import resolve_model, shipped_models

    folder = resolve_model(spec)
    if folder is not None:
        return folder
    path = Path(spec).expanduser()
    if not path.exists():
        shipped = ", ".join(sorted(shipped_models())) or "none in this version"
        raise ConfigError(f"model: {spec!r} is neither a shipped model ({shipped}) nor an existing run or "
                          "checkpoint folder")
    return path
