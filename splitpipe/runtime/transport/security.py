"""Trust: the shared secret, per-stream HMAC tokens and mutual-TLS credentials."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = [
    "TlsConfig", "load_secret", "SECRET_ENV", "NODE_KEY", "TOKEN_KEY",
    "auth_metadata", "authenticate", "server_credentials", "channel_credentials",
]

#: Environment variable holding the shared secret when no --secret-file is given.
SECRET_ENV = "SPLITPIPE_SECRET"
#: gRPC metadata keys carrying the sender's claimed name and its HMAC token.
NODE_KEY, TOKEN_KEY = "splitpipe-node", "splitpipe-token"


@dataclass(frozen=True)
class TlsConfig:
    """PEM files for mutual TLS: this node's certificate and key, and the CA that signed every node."""

    cert: Path
    key: Path
    ca: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            try:
                out.append(Path(path).read_bytes())
            except OSError as exc:
                raise ValueError(f"cannot read TLS {what} file '{path}': {exc.strerror}") from None
        return out[0], out[1], out[2]


def load_secret(path_or_env: str | os.PathLike[str] | None = None) -> bytes:
    """The shared secret: from the file `path_or_env` (--secret-file), else from $SPLITPIPE_SECRET.

    Surrounding whitespace is stripped (a trailing newline in a file is not part of the secret).
    """
    if path_or_env is not None and str(path_or_env) != "":
        path = Path(path_or_env)
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file '{path}': {exc.strerror}") from None
        if not secret:
            raise ValueError(f"secret file '{path}' is empty")
        return secret
    secret = os.environ.get(SECRET_ENV, "").strip().encode()
    if not secret:
        raise ValueError(f"no shared secret: pass --secret-file or set ${SECRET_ENV}")
    return secret


def _token(secret: bytes, node: str) -> str:
    return hmac.new(secret, node.encode(), hashlib.sha256).hexdigest()


def auth_metadata(secret: bytes, node: str) -> tuple[tuple[str, str], ...]:
    """Metadata a sender attaches to each stream: its name and HMAC-SHA256(secret, name)."""
    return ((NODE_KEY, node), (TOKEN_KEY, _token(secret, node)))


def authenticate(secret: bytes, metadata: Sequence[tuple[str, str | bytes]] | None) -> tuple[str, bool]:
    """(claimed node name, whether its token is right) for the metadata of an incoming stream."""
    values = dict(metadata or ())
    node, token = values.get(NODE_KEY, ""), values.get(TOKEN_KEY, "")
    if not isinstance(node, str) or not isinstance(token, str) or not node:
        return str(node), False
    return node, hmac.compare_digest(_token(secret, node).encode(), token.encode())


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    cert, key, ca = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    cert, key, ca = tls.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
