"""Fixtures for transport tests: throwaway mutual-TLS certificates made with the openssl command, a listening
socket transport."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from splitpipe.runtime.transport import SocketTransport, TlsConfig

#: The shared secret of the socket transports these tests start beside `rx`.
SECRET = b"socket-test-secret"

#: Each node's certificate names the node (a DNS alternative name), as splitpipe checks.
EXT = "subjectAltName=DNS:{node},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(tmp: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=tmp)


def _make_node(tmp: Path, ca: str, node: str, serial: int) -> TlsConfig:
    (tmp / f"{node}.cnf").write_text(EXT.format(node=node))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{node}.key", "-out", f"{node}.csr", "-subj", f"/CN={node}", cwd=tmp)
    _openssl("x509", "-req", "-in", f"{node}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-set_serial", str(serial), "-days", "2", "-out", f"{node}.pem", "-extfile", f"{node}.cnf", cwd=tmp)
    return TlsConfig(cert=tmp / f"{node}.pem", key=tmp / f"{node}.key", ca=tmp / f"{ca}.pem")


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed node certificates n0..n2, and a foreign CA that signed 'intruder'."""
    if shutil.which("openssl") is None:
        pytest.skip("cannot make test certificates: the openssl command is not installed "
                    "(the cryptography package is not a dependency of this project)")
    tmp = tmp_path_factory.mktemp("tls")
    _make_ca(tmp, "ca")
    _make_ca(tmp, "other-ca")
    for i in range(3):
        _make_node(tmp, "ca", f"n{i}", 10 + i)
    _make_node(tmp, "other-ca", "intruder", 99)
    return tmp


@pytest.fixture(scope="session")
def tls_for(tls_dir: Path) -> Callable[[str], TlsConfig]:
    """TlsConfig of a node: n0, n1, n2 or any other name (trusted CA, made on first use) or intruder (another CA)."""
    def config(node: str) -> TlsConfig:
        if not (tls_dir / f"{node}.pem").exists():
            _make_node(tls_dir, "ca", node, 100 + len(list(tls_dir.glob("*.pem"))))
        return TlsConfig(cert=tls_dir / f"{node}.pem", key=tls_dir / f"{node}.key",
                         ca=tls_dir / ("other-ca.pem" if node == "intruder" else "ca.pem"))
    return config


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """True once `condition()` holds; False after `timeout` s. A client hears a stream's end before the server's handler unwinds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def wait_for() -> Callable[..., bool]:
    return _wait_for


@pytest.fixture
def rx() -> Iterator[SocketTransport]:
    """A started socket transport named rx on loopback (SECRET, 5 s connect timeout), closed afterwards."""
    t = SocketTransport("rx", "127.0.0.1:0", {}, SECRET, connect_timeout=5.0)
    t.start()
    yield t
    t.close()
