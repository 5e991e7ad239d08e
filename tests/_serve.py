"""Helpers of the `ifa-rt serve` tests: start the real command on loopback, talk HTTP to it."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

HAVE_RAY = all(importlib.util.find_spec(m) is not None for m in ("ray", "starlette"))
START_TIMEOUT = 60  # s: Ray + Serve + one replica on a loaded 2-core machine
REQUEST_TIMEOUT = 20


def encoded(image: np.ndarray, fmt: str) -> bytes:
    """The image encoded by Pillow in `fmt` (PNG, JPEG, GIF, ...)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def listening_sockets(session: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of the processes in
    `session` (the service and everything Ray started for it), read from /proc."""
    inodes: dict[str, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                inodes[fields[9]] = (_proc_address(address), int(port, 16))
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getsid(int(proc.name)) != session:
                continue
            name = (proc / "comm").read_text().strip()
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except (OSError, ProcessLookupError):
            continue  # ended meanwhile
        for link in links:
            inode = link.removeprefix("socket:[").removesuffix("]")
            if link.startswith("socket:[") and inode in inodes:
                found.append((*inodes[inode], name))
    return found


def _proc_address(hex_address: str) -> str:
    """/proc/net/tcp{,6}'s hex address (host byte order per 32-bit word) as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a POST (body given) or GET; HTTP errors are results too."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@contextlib.contextmanager
def running_server(log: Path, artifact: str, args: list[str], env: dict[str, str] | None = None):
    """`ifa-rt serve ARTIFACT ARGS` on a free loopback port; yields (url, process).

    Stopped with SIGINT on exit (its whole process group killed if that hangs).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "ifa_rt.cli", "serve", artifact, "--port", str(port), *args]
    with open(log, "w") as out:
        # Own session: its Ray processes can be found (and, on failure, ended) as one group.
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while "ifa-rt serve: " + artifact + " on " not in log.read_text():
            assert proc.poll() is None, f"serve exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"serve not up in {START_TIMEOUT} s"
            time.sleep(0.25)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
