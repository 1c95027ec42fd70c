"""Real `digest` server processes for tests and benchmarks (no pytest here: the benchmarks
run without the test extras)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Processes started by tests read digest.toml from their folder, whatever the outer shell has set.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            errors = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"{process.args} exited: {errors}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{process.args} did not start listening")


def start_digest_server(
    args: list[str], port: int, cwd: Path | str, env: Mapping[str, str] = CLEAN_ENV
) -> subprocess.Popen:
    """`python -m digest ARGS --port PORT` (serve, studio) as a real process, once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", *args, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_listening(port, process)
    except BaseException:
        process.kill()
        process.communicate(timeout=10)
        raise
    return process


@dataclass
class DigestServer:
    """A `digest` server running on `port`; what it printed is here once it has stopped."""

    port: int
    process: subprocess.Popen
    stdout: str = ""
    stderr: str = ""


@contextmanager
def digest_server(
    *args: str, cwd: Path | str, env: Mapping[str, str] = CLEAN_ENV
) -> Iterator[DigestServer]:
    """`start_digest_server` on a free port, stopped (and its output read) when the block ends."""
    port = free_port()
    server = DigestServer(port, start_digest_server(list(args), port, cwd, env))
    try:
        yield server
    finally:
        server.process.terminate()
        server.stdout, server.stderr = server.process.communicate(timeout=30)
