"""Node-to-node messaging for the distributed runtime: in-process and gRPC transports."""

from splitpipe.runtime.transport.base import Message, Payload, Transport, TransportError
from splitpipe.runtime.transport.factory import TRANSPORT_KINDS, make_transports
from splitpipe.runtime.transport.grpc_transport import GrpcTransport
from splitpipe.runtime.transport.local import make_local_transports
from splitpipe.runtime.transport.security import TlsConfig, load_secret

__all__ = [
    "Message", "Payload", "Transport", "TransportError",
    "make_transports", "TRANSPORT_KINDS", "make_local_transports", "GrpcTransport", "TlsConfig", "load_secret",
]
