"""Mutual authentication of a new socket connection: each end proves who it is over the other's fresh challenge.

    dialer                                            acceptor
      | -- {node: D, to: A, mode, challenge: cD} ------> |  (1) D must be a node A knows
      | <-- {node: A, challenge: cA, proof: A on cD} --- |  (2) A proves itself first ...
      | -- {proof: D on cA} ---------------------------> |  (3) ... D checks it is the A it dialled
      | <-- {ok: true} or {error: why} ----------------- |  (4) A checks D; the dialer learns the verdict

A proof is HMAC-SHA256(shared secret, transcript) or, with per-node keys, an Ed25519 signature
(identity.py) over a transcript of the challenge, the prover's name and the other end's name.
Each challenge is new for every connection, so a recorded handshake cannot be replayed; the
challenge carries which end proves ("dial:" or "accept:"), so an acceptor's proof can never be
passed off as a dialer's. `mode` says which way the connection carries messages: "push" (the
dialer writes) or "pull" (the acceptor writes: how a node that does not listen receives).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Protocol

from splitpipe.runtime.transport.codec import Decoded
from splitpipe.runtime.transport.identity import Identity, new_challenge
from splitpipe.runtime.transport.limits import CodecError
from splitpipe.runtime.transport.wire import Ended, Reader, encode_control, read_message

__all__ = ["Prover", "SharedSecret", "HandshakeError", "dial_handshake", "accept_handshake", "MODES",
           "HANDSHAKE_BYTES"]

MODES = ("push", "pull")
#: Largest handshake message; anything bigger is not a handshake.
HANDSHAKE_BYTES = 4096
#: Writes one message's buffers to the connection.
Write = Callable[[list[memoryview | bytes]], None]


class Prover(Protocol):
    """What a node proves itself with, and checks others against: SharedSecret or identity.Identity."""

    name: str

    def sign(self, challenge: str, receiver: str) -> str: ...

    def verify(self, sender: str, challenge: str, signature: object) -> bool: ...

    def knows(self, node: str) -> bool: ...


class SharedSecret:
    """Proofs by HMAC-SHA256 under the secret every node holds: anyone with it may claim any name."""

    def __init__(self, name: str, secret: bytes) -> None:
        self.name, self._secret = name, secret

    def _mac(self, challenge: str, sender: str, receiver: str) -> str:
        transcript = b"\0".join([b"splitpipe-socket-v1", challenge.encode(), sender.encode(), receiver.encode()])
        return hmac.new(self._secret, transcript, hashlib.sha256).hexdigest()

    def sign(self, challenge: str, receiver: str) -> str:
        return self._mac(challenge, self.name, receiver)

    def verify(self, sender: str, challenge: str, signature: object) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(
            self._mac(challenge, sender, self.name).encode(), signature.encode())

    def knows(self, node: str) -> bool:
        return bool(node)


class KeyedIdentity:
    """An identity.Identity as a Prover: only nodes with a public key are known."""

    def __init__(self, identity: Identity) -> None:
        self.identity, self.name = identity, identity.name

    def sign(self, challenge: str, receiver: str) -> str:
        return self.identity.sign(challenge, receiver)

    def verify(self, sender: str, challenge: str, signature: object) -> bool:
        return self.identity.verify(sender, challenge, signature)

    def knows(self, node: str) -> bool:
        return node in self.identity.peers


class HandshakeError(ConnectionError):
    """The other end did not prove who it is (or refused us); `public` is safe to tell the other end."""

    def __init__(self, message: str, public: str = "authentication failed") -> None:
        super().__init__(message)
        self.public = public
        self.claimed = ""   # the node name the other end claimed, if it got that far


def _next(reader: Reader, keys: set[str]) -> dict:
    try:
        item = read_message(reader, 0, HANDSHAKE_BYTES, 0)
    except Ended:
        raise HandshakeError("the connection closed during the handshake") from None
    if isinstance(item, CodecError) or not isinstance(item, Decoded) or item.control is None:
        raise HandshakeError(f"handshake message is malformed: {item}")
    body = item.control
    if not set(body) <= keys or not all(isinstance(v, (str, bool)) for v in body.values()):
        raise HandshakeError(f"handshake message has unexpected fields {sorted(body)[:8]}")
    return body


def dial_handshake(reader: Reader, write: Write, prover: Prover, peer: str, mode: str) -> None:
    """(1)-(4) as the dialer of `peer`: HandshakeError unless `peer` proved itself and accepted us."""
    challenge = new_challenge()
    write(encode_control({"node": prover.name, "to": peer, "mode": mode, "challenge": challenge}))
    reply = _next(reader, {"node", "challenge", "proof", "error"})
    if "error" in reply:
        raise HandshakeError(f"peer '{peer}' refused the connection: {str(reply['error'])[:200]}")
    if reply.get("node") != peer or not prover.verify(peer, "accept:" + challenge, reply.get("proof")):
        raise HandshakeError(f"the node at the address of peer '{peer}' did not prove to be '{peer}' "
                             f"(it says '{str(reply.get('node'))[:64]}'; is the shared secret or key the same?)")
    write(encode_control({"proof": prover.sign("dial:" + str(reply.get("challenge", "")), peer)}))
    verdict = _next(reader, {"ok", "error"})
    if verdict.get("ok") is not True:
        raise HandshakeError(f"peer '{peer}' refused the connection: {str(verdict.get('error'))[:200]}")


def accept_handshake(reader: Reader, write: Write, prover: Prover,
                     admit: Callable[[str, str], str | None] = lambda sender, mode: None) -> tuple[str, str]:
    """(1)-(4) as the acceptor: the authenticated (sender name, mode); HandshakeError (told to it) otherwise.

    `admit(sender, mode)` may still refuse a sender that proved itself (too many connections): it
    returns why, or None.
    """
    hello = _next(reader, {"node", "to", "mode", "challenge"})
    sender, mode = str(hello.get("node", "")), hello.get("mode")
    try:
        if hello.get("to") != prover.name:
            raise HandshakeError(f"it dialled node '{str(hello.get('to'))[:64]}', not this one",
                                 f"this is node '{prover.name}'")
        if mode not in MODES or not isinstance(hello.get("challenge"), str):
            raise HandshakeError(f"its hello is malformed (mode {str(mode)[:20]!r})", "malformed hello")
        if not prover.knows(sender):
            raise HandshakeError("no key for that node")
        challenge = new_challenge()
        write(encode_control({"node": prover.name, "challenge": challenge,
                              "proof": prover.sign("accept:" + str(hello["challenge"]), sender)}))
        answer = _next(reader, {"proof"})
        if not prover.verify(sender, "dial:" + challenge, answer.get("proof")):
            raise HandshakeError("missing or wrong proof (is the shared secret or key the same on both nodes?)")
        refused = admit(sender, str(mode))
        if refused is not None:
            raise HandshakeError(refused, "too many connections")
    except HandshakeError as exc:
        exc.claimed = sender
        try:
            write(encode_control({"error": exc.public}))
        except OSError:
            pass
        raise
    write(encode_control({"ok": True}))
    return sender, str(mode)
