"""Liveness: heartbeats, and polls of a peer waited for too long, so that a dead or stalled process
or a cut network fails the run within seconds, naming the node, instead of at a phase's timeout.

Heartbeats: each node tells the nodes it depends on that it is alive (a silent one is gone after
`--silence` seconds). Polls: a running segment that waits for a peer's message longer than twice
its running average batch time asks that peer, which answers from its transport's receiving
thread; no answer within a few seconds, and the peer is reported failed (a slow one answers)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from splitpipe.runtime.transport import Transport, TransportError

__all__ = ["Heartbeat", "HEARTBEAT_S", "SILENCE_S", "Polls", "Pace", "answer_probes", "PeerLost"]

log = logging.getLogger("splitpipe.runtime")

#: Seconds between two heartbeats.
HEARTBEAT_S = 1.0
#: Seconds without a word from a watched node before it counts as gone: ten heartbeats missed in a row
#: (a stalled process, or a network cut without a reset; a dead process breaks its streams at once).
#: Five proved too few on a loaded 2-core host with ten nodes in one process (`--silence` sets it).
SILENCE_S = 10 * HEARTBEAT_S
#: How a failure was found, as the report's failure event says (`detected`): a stream that broke (or a
#: send that failed), the silence limit, a liveness poll a waiting node's peer did not answer, or a node's
#: own word (an error it reported about itself).
BROKEN, SILENCE, BACKWARD_TIMEOUT, REPORTED = "broken stream", "silence", "backward timeout", "reported"
DETECTIONS = frozenset({BROKEN, SILENCE, BACKWARD_TIMEOUT, REPORTED})


class PeerLost(RuntimeError):
    """A message to `node` could not be delivered, or it did not answer a liveness poll: its process
    or the network to it is gone. `detected`: how that was found (BROKEN, BACKWARD_TIMEOUT)."""

    def __init__(self, node: str, message: str, detected: str = BROKEN) -> None:
        super().__init__(f"node {node} is unreachable: {message}")
        self.node, self.detected = node, detected


class Heartbeat:
    """Sends {"type": "alive"} to `peers` every `interval` seconds from a thread of its own.

    The transport's sends are thread-safe; a peer that cannot be reached is written into
    `lost` (peer -> why), which the node's mailbox reads: a broken stream names a dead peer
    within seconds, sooner than its silence would.
    """

    def __init__(self, transport: Transport, peers: Iterable[str] = (), interval: float = HEARTBEAT_S,
                 lost: dict[str, str] | None = None) -> None:
        self.transport = transport
        self.lost = {} if lost is None else lost
        self.interval = interval
        self.peers = set(peers)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"splitpipe-heartbeat-{transport.name}", daemon=True)
        self._thread.start()

    def add(self, peer: str) -> None:
        with self._lock:
            self.peers.add(peer)

    def remove(self, peer: str) -> None:
        with self._lock:
            self.peers.discard(peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.interval)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                peers = sorted(self.peers)
            for peer in peers:
                try:
                    self.transport.send_control(peer, {"type": "alive"})
                except Exception as exc:  # noqa: BLE001 - the mailbox decides what it means
                    log.debug("%s: heartbeat to %s failed: %s", self.transport.name, peer, exc)
                    self.lost[peer] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- liveness polls: a peer that a running segment waits for too long is asked whether it lives ------------
#
#   node (waiting for a peer's message)                 peer (its transport's receiving thread)
#     (1) waited FACTOR x the running average batch time (at least WAIT_FLOOR_S)
#     (2) probe(seq) ---------------------------------->  answered at once, whatever compute does
#     (3) probe_ack(seq) or anything else from the peer <-  (a stalled process or a cut network: nothing)
#     (4) answered: slow, not dead; ask again later, each gap twice the last (at most GAP_MAX_S)
#     (5) nothing within the answer limit (ANSWER_FLOOR_S, or more where the measured RTT is long):
#         PeerLost(peer, detected="backward timeout"), handled as a send that failed

#: The wait, as a multiple of the running average batch time, after which the awaited peer is polled.
FACTOR = 2.0
#: The shortest wait before a poll, so that tiny batches do not cause a storm of polls.
WAIT_FLOOR_S = 0.5
#: The longest gap between two polls of a peer that keeps answering while the wait goes on.
GAP_MAX_S = 8.0
#: Seconds a polled peer has to answer (more where its measured round trip is long): a loaded
#: 2-core host with many nodes per process may hold a thread for a second or more.
ANSWER_FLOOR_S = 3.0
#: The answer limit as a multiple of the longest round trip a poll of that peer measured.
ANSWER_RTT_FACTOR = 10.0


def answer_probes(transport: Transport, nodes: Iterable[str] | None = None) -> None:
    """Answer each {"type": "probe"} on the thread that receives it, before compute could hold it up.

    The transport hands every control message to this handler as it arrives (Transport.on_control);
    a probe from a node of the run (any, when `nodes` is None) is answered and not queued.
    """
    known = None if nodes is None else frozenset(nodes)

    def handle(src: str, body: dict) -> bool:
        if body.get("type") != "probe":
            return False
        if known is None or src in known:
            try:
                transport.send_control(src, {"type": "probe_ack", "seq": body.get("seq")})
            except Exception as exc:  # noqa: BLE001 - the prober finds out by the missing answer
                log.debug("%s: could not answer %s's probe: %s", transport.name, src, exc)
        return True
    transport.on_control = handle


class Pace:
    """The running average of this node's batch time: the gap between two of its backward passes."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self.average: float | None = None

    def record(self, seconds: float) -> None:
        self.average = seconds if self.average is None else (1 - self.weight) * self.average + self.weight * seconds

    @property
    def patience(self) -> float:
        """How long a wait for a peer's message may last before that peer is polled."""
        return max(WAIT_FLOOR_S, FACTOR * (self.average or 0.0))


class Polls:
    """This node's liveness polls of the peers it waits for (see the picture above).

    `heard(peer)` says when anything last came from `peer` (a message filed, or where the
    transport tracks it, a byte of one still coming in): that answers a poll as well as its ack.
    """

    def __init__(self, transport: Transport, heard: Callable[[str], float]) -> None:
        self.transport, self.heard = transport, heard
        self.pace = Pace()
        self.rtt: dict[str, float] = {}  # the longest round trip a poll of that peer measured
        self.asked: dict[str, tuple[int, float]] = {}  # peer -> (seq, when) of its poll not answered yet
        self._seq = 0
        self._wait: float | None = None  # the start of the wait the gaps below belong to
        self._next: dict[str, float] = {}  # peer -> when it is polled next in this wait
        self._gap: dict[str, float] = {}
        self._polled: set[str] = set()  # peers polled in this wait whose answer was not looked at yet
        self.slow: set[str] = set()  # peers that answered a poll (logged once)

    def limit(self, peer: str) -> float:
        """Seconds `peer` has to answer a poll."""
        return max(ANSWER_FLOOR_S, ANSWER_RTT_FACTOR * self.rtt.get(peer, 0.0))

    def ask(self, peer: str) -> None:
        """Send `peer` a probe (unless one is out); PeerLost if it cannot be sent."""
        if peer in self.asked:
            return
        self._seq += 1
        self.asked[peer] = (self._seq, time.time())
        try:
            self.transport.send_control(peer, {"type": "probe", "seq": self._seq})
        except TransportError as exc:
            raise PeerLost(peer, str(exc), detected=BROKEN) from None

    def answered(self, peer: str, seq: object, received_at: float) -> None:
        """`peer`'s probe_ack came in (filed by the mailbox)."""
        asked = self.asked.get(peer)
        if asked is not None and asked[0] == seq:
            del self.asked[peer]
            self.rtt[peer] = max(self.rtt.get(peer, 0.0), received_at - asked[1])

    def state(self, peer: str, now: float) -> bool | None:
        """Whether `peer` answered its poll (True), failed to within the limit (False), or may still (None)."""
        asked = self.asked.get(peer)
        if asked is None:
            return True
        if self.heard(peer) >= asked[1]:  # anything that came after the probe left answers it
            del self.asked[peer]
            return True
        return False if now - asked[1] > self.limit(peer) else None

    def check(self, waits: dict[str, str], since: float) -> float:
        """During a wait that began at `since` (the last progress) for `waits` (peer -> what is awaited):
        poll each peer once the wait passed the patience, then again with growing gaps while it answers;
        PeerLost (detected: backward timeout) for one that does not. Returns seconds until the next check."""
        now = time.time()
        if self._wait != since:  # a new wait: every peer gets the full patience again
            self._wait, self._next, self._gap, self._polled = since, {}, {}, set()
            self.asked.clear()
        patience = self.pace.patience
        due = []
        for peer, what in waits.items():
            self._next.setdefault(peer, since + patience)
            answer = self.state(peer, now) if peer in self._polled else None
            if answer is not None:
                self._polled.discard(peer)
            if answer is False:
                raise PeerLost(peer, f"no answer to a liveness poll within {self.limit(peer):.1f} s after waiting "
                                     f"{now - since:.1f} s for {what} (backward timeout: {patience:.1f} s, "
                                     f"{FACTOR:g}x the running average batch time)", detected=BACKWARD_TIMEOUT)
            if answer is True:  # slow, not dead: ask again later
                if peer not in self.slow:  # said once per peer and run
                    self.slow.add(peer)
                    log.info("%s: waited %.1f s for %s from %s (more than %.1f s, %gx the average batch time); "
                             "it answers a liveness poll: slow, not dead", self.transport.name, now - since, what,
                             peer, patience, FACTOR)
                self._gap[peer] = min(GAP_MAX_S, 2 * self._gap.get(peer, patience))
                self._next[peer] = now + self._gap[peer]
            if peer not in self.asked and now >= self._next[peer]:
                self.ask(peer)
                self._polled.add(peer)
            asked = self.asked.get(peer)
            due.append(asked[1] + self.limit(peer) if asked is not None else self._next[peer])
        return max(0.01, min(due, default=now + HEARTBEAT_S) - now)

    def confirm(self, peer: str, within: float, poll: Callable[[float], bool]) -> bool:
        """Whether `peer` is gone: it does not answer a poll sent now, or `poll(seconds)`, which files what
        comes in meanwhile, says so (its stream broke). False once it answers, or after `within` seconds."""
        self.asked.pop(peer, None)
        try:
            self.ask(peer)
        except PeerLost:
            return True
        deadline = time.time() + within
        while (answer := self.state(peer, time.time())) is None and time.time() < deadline:
            if poll(min(HEARTBEAT_S, max(0.0, deadline - time.time()))):
                return True
        return answer is False
