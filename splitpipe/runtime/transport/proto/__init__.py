"""Generated protobuf and gRPC modules for the transport (see splitpipe.proto); nothing hand-written."""
