"""The gateway: the v1 gRPC API as HTTP/JSON (transcoded from the protos), server-sent events,
and the white-label web portal."""
