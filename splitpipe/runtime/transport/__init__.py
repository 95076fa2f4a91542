"""Node-to-node messaging for the distributed runtime: in-process, socket (TCP/TLS) and gRPC transports."""

from splitpipe.runtime.transport.base import Message, Payload, Transport, TransportError
from splitpipe.runtime.transport.factory import TRANSPORT_KINDS, make_transports
from splitpipe.runtime.transport.grpc_transport import GrpcTransport
from splitpipe.runtime.transport.local import make_local_transports
from splitpipe.runtime.transport.security import TlsConfig, load_secret
from splitpipe.runtime.transport.socket_transport import SocketTransport

__all__ = [
    "Message", "Payload", "Transport", "TransportError",
    "make_transports", "TRANSPORT_KINDS", "make_local_transports", "GrpcTransport", "SocketTransport", "TlsConfig", "load_secret",
]
