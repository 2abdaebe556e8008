"""The local server's safe defaults: loopback only, no path tricks in model names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfmtl.serving.server import LocalServer


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from /proc/net/tcp and tcp6 (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


def test_the_server_binds_loopback_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = LocalServer(tmp_path, "toy", port=0, log=False)
    server.start()
    try:
        assert server.address.startswith("127.0.0.1:")
        found = listening_addresses(server.port)
        loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
        assert found and found <= loopback, found  # 127.0.0.1 (maybe as ::ffff:127.0.0.1) or ::1, nothing else
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["../toy", "toy/../../etc", "/abs", "..", "a\\b"])
def test_model_names_with_path_tricks_are_refused(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="model name"):
        LocalServer(tmp_path, name, port=0, log=False)
