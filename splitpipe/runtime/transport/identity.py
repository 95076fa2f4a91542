"""Per-node identity: an Ed25519 key per node, and a fresh challenge per stream so no handshake can be replayed.

With an Identity, a stream is accepted only when its sender signs, with the key of the node it
claims to be, a challenge the receiver made for that stream alone:

    sender                                   receiver
      | -- metadata: splitpipe-node = NAME --> |  (1) NAME must have a public key here
      | <-- initial metadata: challenge ------ |  (2) 32 random bytes, new for every stream
      | -- message 0: {"splitpipe-auth": sig}->|  (3) sig = Ed25519(NAME's key, transcript)
      |                                        |  (4) verified before any other message counts

The transcript names the challenge, the sender and the receiver, so a signature is good for one
stream to one node only.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["Identity", "CHALLENGE_KEY", "AUTH_FIELD", "make_keys", "load_identity", "new_challenge", "new_keys",
           "identity_from"]

#: Initial-metadata key of the receiver's challenge (2).
CHALLENGE_KEY = "splitpipe-challenge"
#: Key of the signature in the sender's first control message (3).
AUTH_FIELD = "splitpipe-auth"
#: File of every node's public key, beside each node's own private key file NAME.key.
PUBLIC_FILE = "public.json"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.startswith("."):
        raise ValueError(f"node name '{name[:80]}' must be 1-64 letters, digits, '_', '-' or '.' (not leading)")
    return name


def new_challenge() -> str:
    """(2) A challenge no stream has had before."""
    return secrets.token_hex(32)


def _transcript(challenge: str, sender: str, receiver: str) -> bytes:
    return b"\0".join([b"splitpipe-stream-v1", challenge.encode(), sender.encode(), receiver.encode()])


@dataclass(frozen=True)
class Identity:
    """This node's name and private key, and the public keys of the nodes it accepts streams from."""

    name: str
    key: Ed25519PrivateKey = field(repr=False)
    peers: Mapping[str, Ed25519PublicKey] = field(repr=False)

    def sign(self, challenge: str, receiver: str) -> str:
        """(3) The signature this node sends on a stream to `receiver` that was challenged with `challenge`."""
        return self.key.sign(_transcript(challenge, self.name, receiver)).hex()

    def verify(self, sender: str, challenge: str, signature: object) -> bool:
        """(4) Whether `signature` is `sender`'s, over this stream's challenge, to this node."""
        public = self.peers.get(sender)
        if public is None or not isinstance(signature, str) or len(signature) != 128:
            return False
        try:
            public.verify(bytes.fromhex(signature), _transcript(challenge, sender, self.name))
        except (InvalidSignature, ValueError):
            return False
        return True


def _raw(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def make_keys(names: Iterable[str], out: str | os.PathLike[str]) -> list[Path]:
    """A key pair per node: OUT/NAME.key (private, mode 0600, never overwritten) and OUT/public.json."""
    names = [_check_name(n) for n in names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--nodes must name distinct nodes, got {names}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    public_path = folder / PUBLIC_FILE
    publics = json.loads(public_path.read_text()) if public_path.exists() else {}
    written = []
    for name in names:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        path = folder / f"{name}.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ValueError(f"key file {path} already exists; remove it to make a new key for '{name}'") from None
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        publics[name] = _raw(key.public_key())
        written.append(path)
    public_path.write_text(json.dumps(publics, indent=2, sort_keys=True) + "\n")
    return [*written, public_path]


def load_identity(name: str, folder: str | os.PathLike[str]) -> Identity:
    """Node `name`'s identity from a folder made by make_keys (its NAME.key and public.json)."""
    folder = Path(folder)
    try:
        pem = (folder / f"{_check_name(name)}.key").read_bytes()
        publics = json.loads((folder / PUBLIC_FILE).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the keys of node '{name}' in {folder}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"the keys of node '{name}' in {folder} are not splitpipe keys: {exc}") from None
    return identity_from(name, pem, publics, where=str(folder))


def new_keys(names: Iterable[str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Fresh keys held in memory only (a launcher's): each node's private PEM, and every public key."""
    keys = {_check_name(n): Ed25519PrivateKey.generate() for n in names}
    pems = {n: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()) for n, k in keys.items()}
    return pems, {n: _raw(k.public_key()) for n, k in keys.items()}


def identity_from(name: str, pem: bytes, publics: Mapping[str, object], where: str = "memory") -> Identity:
    """Node `name`'s identity from its private key (PEM) and the public keys (name -> base64) it trusts."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
        peers = {str(n): Ed25519PublicKey.from_public_bytes(base64.b64decode(str(v))) for n, v in publics.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"the keys of node '{name}' in {where} are not splitpipe keys: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"the key of node '{name}' in {where} is not an Ed25519 key")
    return Identity(_check_name(name), key, peers)
