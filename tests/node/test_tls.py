"""`vagan serve` over DICOM TLS (PS3.15 Annex B), on 127.0.0.1 with a throw-away CA: mutual TLS in and
out, every peer without a trusted certificate refused, a silent connection that cannot stall the node,
a destination whose certificate is not trusted, and certificate mistakes caught before the port binds."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import yaml
from node_support import HOST, Receiver, free_port, make_series, node_config, send, wait_for
from typer.testing import CliRunner

from vagan.cli import app
from vagan.node.queue import SENT
from vagan.node.server import Node

tls_support = pytest.importorskip("tls_support", reason="needs the test extra's cryptography")
runner = CliRunner()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The hospital's CA with the node's, a modality's and the PACS's certificates; a stranger CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca = tls_support.CertificateAuthority(folder / "hospital")
    stranger = tls_support.CertificateAuthority(folder / "stranger", name="someone else's CA")
    return {"node": ca.issue("node"), "modality": ca.issue("modality"), "pacs": ca.issue("pacs"),
            "intruder": stranger.issue("intruder")}


def _tls(identity, **extra) -> dict:
    return {"certificate": str(identity.certificate), "private_key": str(identity.private_key),
            "ca": str(identity.ca), **extra}


@pytest.fixture
def tls_node(tmp_path, tiny_denoiser, tiny_run, pki):
    """A node listening by TLS only, sending by TLS to a PACS that listens by TLS."""
    pacs = Receiver().start(ssl_context=pki["pacs"].context(server=True))
    config = node_config(tmp_path, pacs, str(tiny_run), tls=_tls(pki["node"], listen=True),
                         destinations=({"name": "pacs", "ae_title": "PACS", "host": HOST, "port": pacs.port,
                                        "tls": True},))
    node = Node(config, denoiser=tiny_denoiser)
    node.start()
    yield node, pacs
    node.stop()
    pacs.stop()


def test_a_series_over_tls_in_and_out(tmp_path, tls_node, pki, caplog):
    node, pacs = tls_node
    files = make_series(tmp_path / "in", 3)
    assert send(files, node.port, tls=pki["modality"].context(server=False)) == [0, 0, 0]
    wait_for(lambda: sum(map(len, pacs.series().values())) == 3, 30, what="the derived series at the PACS")
    wait_for(lambda: [j.state for j in node.queue.jobs()] == [SENT], 10, what="the job sent")


@pytest.mark.parametrize("who", ["plain", "no certificate", "intruder"])
def test_a_peer_without_a_trusted_certificate_gets_no_association(tmp_path, tls_node, pki, who, caplog):
    """Plain DICOM on the TLS port, TLS without a client certificate, and a certificate signed by another CA:
    no association, nothing stored, and the node keeps serving a trusted peer."""
    import ssl

    node, pacs = tls_node
    if who == "plain":
        tls = None
    elif who == "no certificate":
        tls = ssl.create_default_context(cafile=str(pki["node"].ca))
    else:
        tls = pki["intruder"].context(server=False)
        tls.load_verify_locations(cafile=str(pki["node"].ca))  # it trusts the node; the node does not trust it
    files = make_series(tmp_path / "in", 2)
    with caplog.at_level(logging.INFO, logger="vagan.node"):
        assert send(files, node.port, tls=tls) is None
        wait_for(lambda: "closed without a DICOM association" in caplog.text, 10, what="the node's log line")
    assert "a TLS handshake that failed" in caplog.text
    assert node.queue.jobs() == [] and not list(node.spool.root.glob("jobs/*/received/*.dcm"))
    assert send(files, node.port, tls=pki["modality"].context(server=False)) == [0, 0]


def test_a_silent_connection_cannot_stall_the_node(tmp_path, tiny_denoiser, tiny_run, pki):
    """A peer that connects and never starts its TLS handshake holds only its own thread (until the network
    timeout): a trusted peer is served meanwhile."""
    receiver = Receiver().start()
    config = node_config(tmp_path, receiver, str(tiny_run), tls=_tls(pki["node"], listen=True),
                         timeouts={"network": 30, "acse": 10, "dimse": 10, "connect": 3})
    node = Node(config, denoiser=tiny_denoiser)
    node.start()
    try:
        with socket.create_connection((HOST, node.port), timeout=5):
            started = time.monotonic()
            files = make_series(tmp_path / "in", 2)
            assert send(files, node.port, tls=pki["modality"].context(server=False)) == [0, 0]
            assert time.monotonic() - started < 10  # not after the silent peer's 30 s
    finally:
        node.stop()
        receiver.stop()


def test_a_destination_whose_certificate_is_not_trusted_is_not_sent_to(tmp_path, tiny_denoiser, tiny_run, pki,
                                                                        caplog):
    """The PACS presents a certificate of another CA: the delivery fails (retried, then failed), nothing is
    sent in the clear, and the series stays in the spool."""
    impostor = Receiver().start(ssl_context=pki["intruder"].context(server=True))
    config = node_config(tmp_path, impostor, str(tiny_run), tls=_tls(pki["node"]),
                         destinations=({"name": "pacs", "ae_title": "PACS", "host": HOST, "port": impostor.port,
                                        "tls": True},),
                         retries={"attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.1})
    node = Node(config, denoiser=tiny_denoiser)
    node.start()
    try:
        with caplog.at_level(logging.INFO, logger="vagan.node"):
            assert send(make_series(tmp_path / "in", 2), node.port) == [0, 0]
            wait_for(lambda: [j.state for j in node.queue.jobs()] == ["failed"], 30, what="the delivery to fail")
        assert impostor.stores == 0 and "TLS handshake failed" in caplog.text
        assert len(node.spool.derived_files(1)) == 2
    finally:
        node.stop()
        impostor.stop()


def _config_file(tmp_path, tiny_run, **changes) -> tuple:
    port = free_port()
    values = {"port": port, "spool": str(tmp_path / "spool"), "model": str(tiny_run), "engine": "torch",
              "allowed_peers": ["MODALITY"],
              "destinations": [{"name": "pacs", "ae_title": "PACS", "host": HOST, "port": 11112}], **changes}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, port


@pytest.mark.parametrize("case, message", [
    ("no key", "private_key: missing"),
    ("listen without certificate", "listen: true needs certificate, private_key and ca"),
    ("tls destination without certificate", "pacs is reached by DICOM TLS, but tls has no certificate"),
    ("key of another certificate", "tls.certificate/private_key: cannot load"),
    ("not a CA file", "tls.ca: cannot load the CA certificates"),
])
def test_certificate_mistakes_are_one_error_line_before_the_port_binds(tmp_path, tiny_run, pki, case, message):
    node, other = pki["node"], pki["modality"]
    tls = {"no key": {"certificate": str(node.certificate), "ca": str(node.ca)},
           "listen without certificate": {"listen": True},
           "tls destination without certificate": {},
           "key of another certificate": _tls(node, private_key=str(other.private_key), listen=True),
           "not a CA file": _tls(node, ca=str(tiny_run / "config.yaml"), listen=True)}[case]
    extra = {"destinations": [{"name": "pacs", "ae_title": "PACS", "host": HOST, "port": 11112, "tls": True}]} \
        if case == "tls destination without certificate" else {}
    path, port = _config_file(tmp_path, tiny_run, tls=tls, **extra)
    result = runner.invoke(app, ["serve", str(path)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        result.output
    assert not (tmp_path / "spool").exists()
    with socket.socket() as s:
        s.bind((HOST, port))  # never bound by the node


def test_relative_certificate_paths_are_taken_from_the_config_folder(tmp_path, tiny_run, pki):
    from vagan.node.config import load_node_config

    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("certificate", "private_key", "ca"):
        src = getattr(pki["node"], name)
        (folder / src.name).write_bytes(src.read_bytes())
    path = folder / "node.yaml"
    path.write_text(yaml.safe_dump({"spool": "spool", "model": str(tiny_run), "allowed_peers": ["M"],
                                    "destinations": [{"name": "p", "ae_title": "P", "host": HOST, "port": 1}],
                                    "tls": {"certificate": "node.pem", "private_key": "node.key", "ca": "ca.pem",
                                            "listen": True}}))
    config = load_node_config(path)
    assert config.tls.certificate == str(folder / "node.pem") and config.tls.ca == str(folder / "ca.pem")


def test_destinations_are_checked_against_tls_ca_only(pki):
    """The sending side trusts the configured CA bundle, never the system's certificate authorities."""
    from vagan.node.config import TLSConfig
    from vagan.node.tls import client_context, server_context

    tls = TLSConfig(**_tls(pki["node"], listen=True))
    client = client_context(tls)
    assert [c["subject"] for c in client.get_ca_certs()] == [((("commonName", "vagan test CA"),),)]
    assert client.check_hostname and client.verify_mode.name == "CERT_REQUIRED"
    server = server_context(tls, 12.0)
    assert len(server.get_ca_certs()) == 1 and server.handshake_timeout == 12.0


@pytest.mark.slow
def test_orthanc_sends_and_receives_over_dicom_tls(tmp_path, tiny_run, pki):
    """A real Orthanc with DICOM TLS on (its SCP TLS-only, the node as a TLS modality) sends a series to the
    node over TLS and receives the derived series back over TLS."""
    import pydicom
    from node_support import NodeProcess
    from orthanc_support import ORTHANC, Orthanc

    if ORTHANC is None:
        pytest.skip("Orthanc is not installed (apt-get install -y orthanc)")
    orthanc_id = pki["pacs"]
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", {"vagan": {"AET": "VAGAN", "Host": HOST, "Port": node_port,
                                                        "UseDicomTls": True}},
                      extra={"DicomTlsEnabled": True, "DicomTlsCertificate": str(orthanc_id.certificate),
                             "DicomTlsPrivateKey": str(orthanc_id.private_key),
                             "DicomTlsTrustedCertificates": str(orthanc_id.ca),
                             "DicomTlsRemoteCertificateRequired": True}).start()
    node = NodeProcess(tmp_path / "node", {
        "ae_title": "VAGAN", "host": HOST, "port": node_port, "spool": str(tmp_path / "spool"), "model": str(tiny_run),
        "engine": "torch", "precision": "fp32", "allowed_peers": [f"ORTHANC@{HOST}"],
        "destinations": [{"name": "orthanc", "ae_title": "ORTHANC", "host": HOST, "port": orthanc.dicom_port,
                          "tls": True}],
        "tls": _tls(pki["node"], listen=True), "stable_seconds": 1.0,
        "retries": {"attempts": 5, "backoff_seconds": 0.5, "max_backoff_seconds": 1.0},
        "timeouts": {"network": 15, "acse": 10, "dimse": 15, "connect": 3}})
    try:
        node.start()
        files = make_series(tmp_path / "series", 4, 64, seed=3)
        answers = orthanc.upload(files)
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        study, source = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        orthanc.store_to("vagan", [answers[0]["ParentSeries"]], timeout=30)

        def derived():
            held = {u: n for u, n in orthanc.series_in_study(study).items() if u != source}
            return held if list(held.values()) == [4] else None

        assert len(wait_for(derived, 60, step=0.2, what="the derived series in Orthanc, over TLS")) == 1
        assert "(DICOM TLS)" in node.log.read_text()
    finally:
        node.stop()
        orthanc.stop()
