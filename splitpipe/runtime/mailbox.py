"""A node's mailbox over its transport: data messages by tag, control messages in order."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Collection

from splitpipe.runtime.liveness import (
    BROKEN,
    DETECTIONS,
    HEARTBEAT_S,
    REPORTED,
    SILENCE,
    SILENCE_S,
    PeerLost,
    Polls,
    answer_probes,
)
from splitpipe.runtime.protocol import ORDERS, accepts, check_body
from splitpipe.runtime.senders import Senders
from splitpipe.runtime.transport import Message, Transport
from splitpipe.runtime.transport.ratelimit import RateLimitedLog
from splitpipe.schedules.ir import Schedule, Tag

__all__ = ["Mailbox", "RemoteFailure", "PhaseTimeout", "PeerLost", "EpochAborted"]

log = logging.getLogger("splitpipe.runtime")


class RemoteFailure(RuntimeError):
    """Another node failed (it said so, or the coordinator aborted the run because of it)."""

    def __init__(self, node: str, message: str, reporter: str | None = None, detected: str = REPORTED) -> None:
        super().__init__(f"node {node} failed: {message}"
                         + (f" (as node {reporter} says)" if reporter not in (None, node) else ""))
        self.node = node
        self.reason = message
        self.reporter = node if reporter is None else reporter  # who said so
        self.detected = detected  # how (liveness.DETECTIONS)


class PhaseTimeout(RuntimeError):
    """Nothing that a phase of the run waits for came in time."""


class EpochAborted(RuntimeError):
    """The coordinator called the epoch off (a node died): redo it without the `dead` nodes."""

    def __init__(self, epoch: int, dead: list[str]) -> None:
        super().__init__(f"epoch {epoch} aborted; dead nodes: {', '.join(dead)}")
        self.epoch, self.dead = epoch, dead


class Mailbox:
    """What a node received and has not used yet.

    Data messages wait under their tag until a Recv takes them (a Tag names one message
    per epoch); every data message is also kept in `arrivals` for the link spans. Control
    messages queue in order, except `error` and `abort`, which raise RemoteFailure at once,
    heartbeats and liveness polls' answers (`polls`; this node's transport answers polls itself). A watched node whose stream broke (the transport says so), or one not heard from for `silence_s` seconds, or one that
    `unreachable` names (the heartbeat could not reach it), raises RemoteFailure.

    With `coordinator` named, a control message the protocol does not let its sender send to
    this node (protocol.accepts: an order not from the coordinator, a report not to it) is
    dropped with a warning; so is anything from a node not among `nodes` (a made-up name the
    shared secret let in), and a data message from a node the plan does not have send that
    tag to this node (senders.py), once `expect` gave the epoch's schedule.

    After a failure: `rewind` raises EpochAborted; a `fence` from a node says it sent nothing
    more of the aborted attempt, so its data filed so far is dropped; `forget` ignores a dead node,
    but for its `hello` if it is restarted (kept in `returning` until `rejoin` hears it again).
    """

    def __init__(self, transport: Transport, silence_s: float = SILENCE_S, coordinator: str | None = None,
                 nodes: Collection[str] | None = None) -> None:
        self.transport = transport
        self.name = transport.name
        self.coordinator = coordinator
        self.nodes = None if nodes is None else frozenset(nodes)
        self.senders = Senders(self.name, coordinator, tuple(nodes or ())) if coordinator is not None else None
        self._refusals = RateLimitedLog(log)
        self.silence_s = silence_s
        self.data: dict[Tag, Message] = {}
        self.controls: deque[Message] = deque()
        self.arrivals: list[Message] = []
        self.last_heard: dict[str, float] = {}
        self.unreachable: dict[str, str] = {}  # written by the heartbeat's thread
        self.fenced: set[str] = set()
        self.broken: set[str] = set()  # peers whose stream to this node broke (dead, or cut off)
        self.gone: set[str] = set()
        self.returning: dict[str, Message] = {}  # the hello of a forgotten node, restarted
        self.discarded: set[Tag] = set()  # data to drop when it comes (late updates left out of an average)
        self.on_return: Callable[[str, str], None] | None = None  # (node, address), as its hello is filed
        self.seen: dict[str, float] = {}  # node -> arrival of the last message from it
        self.polls = Polls(transport, self.heard_from)
        answer_probes(transport, nodes)

    def watch(self, node: str, *, from_first_word: bool = False) -> None:
        """From now on, fail if `node` falls silent (its process died, or the network between us).

        With `from_first_word`, silence counts only once `node` said something: a coordinator
        starts its heartbeats to a node only when it has read that node's hello.
        """
        self.last_heard[node] = math.inf if from_first_word else time.time()

    def poll(self, timeout: float | None) -> bool:
        """File the next message, waiting up to `timeout` seconds; False if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = left if not self.last_heard else min(HEARTBEAT_S, HEARTBEAT_S if left is None else left)
            message = self.transport.receive(wait)
            if message is not None:
                self.file(message)
                # The inbox is in order of arrival: whatever came before this message is filed.
                self._check_silence(message.received_at)
                return True
            self._check_silence(time.time())
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def drain(self) -> None:
        """File everything that has already arrived."""
        while self.poll(0):
            pass

    def file(self, message: Message) -> None:
        if self.nodes is not None and message.src not in self.nodes:
            self._refusals.warning(message.src, "%s ignored a message from %s, which is not a node of this run",
                                   self.name, message.src)
            return
        if message.src in self.gone:
            body = message.control or {}
            if body.get("type") == "hello" and check_body(body, message.src) and body["name"] == message.src:
                self.returning[message.src] = message
                if self.on_return is not None:
                    self.on_return(message.src, str(body["address"]))
            return
        if message.control is None or message.control.get("type") != "broken":
            self.broken.discard(message.src)  # it streams again
            self.seen[message.src] = max(self.seen.get(message.src, 0.0), message.received_at)
        if message.src in self.last_heard:
            heard = self.last_heard[message.src]
            self.last_heard[message.src] = message.received_at if heard == math.inf else max(heard, message.received_at)
        if message.control is not None:
            kind = check_body(message.control, message.src)
            body = message.control
            if self.coordinator is not None and not accepts(kind, message.src, self.name, self.coordinator):
                only = "sends" if kind in ORDERS else "receives"
                self._refusals.warning(message.src, "%s ignored '%s' from %s: only %s %s it", self.name, kind,
                                       message.src, self.coordinator, only)
                return
            if kind == "alive" or (kind == "error" and body["node"] in self.gone):
                return
            if kind == "probe_ack":
                self.polls.answered(message.src, body["seq"], message.received_at)
                return
            if kind == "probe":  # a transport without Transport.on_control: answered here
                self.transport.send_control(message.src, {"type": "probe_ack", "seq": body["seq"]})
                return
            if kind == "error":
                detected = body.get("detected", REPORTED)
                raise RemoteFailure(str(body["node"]), str(body["message"]), reporter=message.src,
                                    detected=detected if detected in DETECTIONS else REPORTED)
            if kind == "abort":
                raise RemoteFailure(str(body["node"]), str(body["message"]))
            if kind == "broken" and message.src in self.last_heard:
                raise RemoteFailure(message.src, "its stream broke (its process or the network to it died)",
                                    detected=BROKEN)
            if kind == "broken":  # a peer's stream ended: nothing more of it follows, as after a fence
                self.broken.add(message.src)
                return
            if kind == "hello" and message.src in self.last_heard:  # it restarted before its death was noticed
                self.returning[message.src] = message
                raise RemoteFailure(message.src, "it restarted")
            if kind == "rewind":
                raise EpochAborted(int(body["epoch"]), [str(n) for n in body["dead"]])
            if kind == "fence":
                self.fenced.add(message.src)
                self._drop_from(message.src)
                return
            self.controls.append(message)
            return
        tag = message.tag
        assert tag is not None
        refused = self.senders.refusal(message.src, tag) if self.senders is not None else None
        if refused is not None:
            self._refusals.warning(message.src, "%s refused %s from %s: %s", self.name, tag, message.src, refused)
            return
        if tag in self.discarded:
            self.discarded.discard(tag)
            return
        if tag in self.data:
            raise RuntimeError(f"node {message.src} sent {tag} to {self.name} twice")
        self.data[tag] = message
        self.arrivals.append(message)

    def expect(self, schedule: Schedule) -> None:
        """Take data messages as `schedule` pairs them (call before its epoch's data can arrive)."""
        if self.senders is not None:
            self.senders.expect(schedule)

    def control(self, timeout: float, waiting_for: str) -> Message:
        """The next control message; PhaseTimeout after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while not self.controls:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(f"{self.name} waited {timeout:g} s for {waiting_for}")
            self.poll(left)
        return self.controls.popleft()

    def take_data(self, tag: Tag, timeout: float, waiting_for: str) -> Message:
        """The data message `tag`, waiting for it; PhaseTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while tag not in self.data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(f"{self.name} waited {timeout:g} s for {waiting_for}")
            self.poll(left)
        return self.data.pop(tag)

    def forget(self, node: str) -> None:
        """`node` is out of the run: stop watching it, drop what it sent and ignore what it sends."""
        self.gone.add(node)
        self.last_heard.pop(node, None)
        self.unreachable.pop(node, None)
        self._drop_from(node)

    def await_fences(self, nodes: set[str], timeout: float) -> None:
        """Wait until each of `nodes` sent its fence; then nothing of the aborted attempt is left to come."""
        deadline = time.monotonic() + timeout
        while not nodes <= self.fenced | self.broken:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = ", ".join(sorted(nodes - self.fenced - self.broken))
                raise PhaseTimeout(f"{self.name} waited {timeout:g} s for the fences of {missing}")
            self.poll(left)
        self.fenced -= nodes

    def discard(self, tag: Tag) -> None:
        """Drop data message `tag`: now if it is in, else when it comes (a late update left out of an average)."""
        if self.data.pop(tag, None) is None:
            self.discarded.add(tag)

    def clear_data(self) -> None:
        """Forget every data message (after a rewind: all of them belong to the aborted attempt)."""
        self.data.clear()
        self.discarded.clear()
        self.arrivals = []

    def _drop_from(self, node: str) -> None:
        self.data = {tag: m for tag, m in self.data.items() if m.src != node}
        self.arrivals = [m for m in self.arrivals if m.src != node]

    def _check_silence(self, now: float) -> None:
        """Fail if a watched node was silent for silence_s up to `now` (with everything until `now` filed):
        no message and, where the transport tells (progress.py), no byte of one still coming in."""
        for node, reason in list(self.unreachable.items()):
            if node in self.last_heard:
                raise RemoteFailure(node, f"unreachable ({reason})", detected=BROKEN)
        for node, heard in self.last_heard.items():
            if now - heard > self.silence_s and now - (self.transport.heard(node) or heard) > self.silence_s:
                raise RemoteFailure(node, f"nothing heard from it for {now - heard:.0f} s "
                                          "(its process or the network to it is down)", detected=SILENCE)

    def heard_from(self, node: str) -> float:
        """When anything last came from `node`: a message filed, or a byte of one still coming in."""
        return max(self.seen.get(node, 0.0), self.transport.heard(node) or 0.0)

    def add_peer(self, name: str, address: str, *, moved: bool = False) -> None:
        """Tell the transport where `name` listens ("": it listens nowhere and dials this node)."""
        self.transport.add_peer(name, address, moved=moved)

    def rejoin(self, node: str, address: str) -> None:
        """A forgotten node is back (restarted, listening at `address`): hear it again."""
        self.gone.discard(node)
        self.broken.discard(node)
        self.unreachable.pop(node, None)
        self.returning.pop(node, None)
        self.add_peer(node, address, moved=True)
