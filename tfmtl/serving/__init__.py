"""Serving: the wire contract (``signatures``), the typed gRPC ``Client`` and the local ``LocalServer``."""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "LocalServer"]


def __getattr__(name: str) -> Any:
    # Lazy: the contract module is imported by export code that needs no gRPC.
    if name == "Client":
        from tfmtl.serving.client import Client

        return Client
    if name == "LocalServer":
        from tfmtl.serving.server import LocalServer

        return LocalServer
    raise AttributeError(f"module 'tfmtl.serving' has no attribute {name!r}")
