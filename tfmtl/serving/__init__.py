"""Serving: the wire contract (signatures), and later the gRPC client and the local server."""
