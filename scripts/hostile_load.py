"""Hostile load on `ifa-rt serve`: slow and idle connections beside bursts of good requests.

    python scripts/hostile_load.py                        # starts `ifa-rt serve camvid` itself
    python scripts/hostile_load.py --url http://127.0.0.1:8000/ --token T
    python scripts/hostile_load.py --seconds 60 --json docs/bench/hostile-load.json

For `--seconds`, three kinds of hostile client hold connections open (loopback only, counts
bounded by the flags): slow headers (a header line, then one byte a second, never finished),
slow bodies (whole headers announcing a 200 KB body, then one byte a second) and idle
keep-alive connections (one good request, then silence). Meanwhile `--good` clients send
bursts of real CamVid frames (5 back to back, then a pause; after a busy 503 they wait the
second its `Retry-After` asks for). The report gives the good
requests' statuses and latency percentiles (`ifa_rt.bench.percentile`, nearest rank), when the
server cut each kind of slow connection, and the service's resident memory. The verdict
passes when good requests keep p99 ≤ `--p99-goal-s` and get no answer other than 200 or the
replica's documented busy 503 (a queue genuinely full of work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from host import host_info, loadavg  # noqa: E402

from ifa_rt.bench import percentile  # noqa: E402

SLOW_BODY_BYTES = 200_000
BURST = 5
BURST_PAUSE_S = 0.5
READ_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1.0  # what the service's busy 503 says


@dataclass
class Tally:
    """What the clients saw."""

    good_latency_s: list[float] = field(default_factory=list)
    good_status: Counter = field(default_factory=Counter)
    good_errors: list[str] = field(default_factory=list)
    cut_after_s: dict[str, list[float]] = field(default_factory=dict)
    held_to_end: Counter = field(default_factory=Counter)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    return status, await reader.readexactly(length)


def _request(host: str, body: bytes, token: str | None, keep_alive: bool) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"POST / HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: {len(body)}\r\n"
        f"Connection: {connection}\r\n\r\n"
    ).encode() + body


async def _hold(kind: str, reader, writer, trickle: bool, stop_at: float, tally: Tally) -> None:
    """Send a byte a second (or nothing) until the server closes the connection or time ends."""
    opened = time.monotonic()
    try:
        while time.monotonic() < stop_at:
            if trickle:
                writer.write(b"a")
                await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                continue
            if not data:  # the server closed it
                tally.cut_after_s.setdefault(kind, []).append(time.monotonic() - opened)
                return
            # A reply (e.g. 408) came: the connection closes after it; keep reading to EOF.
    except (ConnectionError, OSError):
        tally.cut_after_s.setdefault(kind, []).append(time.monotonic() - opened)
        return
    finally:
        writer.close()
    tally.held_to_end[kind] += 1


async def _slow_client(kind: str, host: str, port: int, args, frame: bytes, stop_at, tally):
    reader, writer = await asyncio.open_connection(host, port)
    auth = f"Authorization: Bearer {args.token}\r\n" if args.token else ""
    if kind == "slow_headers":
        writer.write(f"POST / HTTP/1.1\r\nHost: {host}\r\n{auth}X-Slow: ".encode())
        await _hold(kind, reader, writer, True, stop_at, tally)
    elif kind == "slow_body":
        writer.write(
            f"POST / HTTP/1.1\r\nHost: {host}\r\n{auth}"
            f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n".encode()
        )
        await _hold(kind, reader, writer, True, stop_at, tally)
    else:  # idle keep-alive: one good request, then silence
        writer.write(_request(host, frame, args.token, keep_alive=True))
        await writer.drain()
        await _read_response(reader)
        await _hold(kind, reader, writer, False, stop_at, tally)


async def _good_client(host: str, port: int, args, frame: bytes, stop_at: float, tally: Tally):
    while time.monotonic() < stop_at:
        for _ in range(BURST):
            start = time.monotonic()
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(_request(host, frame, args.token, keep_alive=False))
                await writer.drain()
                status, body = await asyncio.wait_for(_read_response(reader), READ_TIMEOUT_S)
                writer.close()
            except (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                tally.good_status["no answer"] += 1
                tally.good_errors.append(f"{type(exc).__name__}: {exc}")
                continue
            tally.good_status[str(status)] += 1
            if status == 200:
                tally.good_latency_s.append(time.monotonic() - start)
            elif status == 503 and b"replica busy" in body:
                await asyncio.sleep(RETRY_AFTER_S)  # a good client honours Retry-After
            else:
                tally.good_errors.append(f"{status}: {body[:200]!r}")
        await asyncio.sleep(BURST_PAUSE_S)


async def _run(url: str, args, frame: bytes, session: int | None, rss: list[float]) -> Tally:
    """Every client (and, with the service's session, an RSS sampler) until the time is up."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"hostile_load: --url: expected a loopback URL, got {url}")
    tally = Tally()
    stop_at = time.monotonic() + args.seconds
    slow = [("slow_headers", args.slow_headers), ("slow_body", args.slow_bodies)]
    slow.append(("idle_keep_alive", args.idle))
    tasks = [
        asyncio.create_task(_slow_client(kind, host, port, args, frame, stop_at, tally))
        for kind, count in slow
        for _ in range(count)
    ]
    if session:
        tasks.append(asyncio.create_task(_sample_rss(session, rss, stop_at)))
    await asyncio.sleep(1.0)  # the hostile connections are in before the good traffic starts
    tasks += [
        asyncio.create_task(_good_client(host, port, args, frame, stop_at, tally))
        for _ in range(args.good)
    ]
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            tally.good_errors.append(f"client task: {type(result).__name__}: {result}")
    return tally


def report(tally: Tally, args, rss_mb: dict[str, float] | None) -> dict:
    """The measured figures and the verdict as one JSON-able dict."""
    lat = sorted(tally.good_latency_s)
    p99 = percentile(lat, 0.99) if lat else float("inf")
    return {
        "seconds": args.seconds,
        "hostile": {
            "slow_headers": args.slow_headers,
            "slow_bodies": args.slow_bodies,
            "idle_keep_alive": args.idle,
        },
        "good_clients": args.good,
        "good_status": dict(tally.good_status),
        "good_latency_ms": {
            f"p{q}": round(1000 * percentile(lat, q / 100), 1) for q in (50, 90, 99)
        }
        if lat
        else {},
        "unexpected_answers": tally.good_errors[:20],
        "unexpected_count": len(tally.good_errors),
        "cut_after_s": {
            kind: {"count": len(v), "median": round(percentile(sorted(v), 0.5), 1)}
            for kind, v in tally.cut_after_s.items()
        },
        "held_to_end": dict(tally.held_to_end),
        "rss_mb": rss_mb,
        "passed": bool(lat) and p99 <= args.p99_goal_s and not tally.good_errors,
    }


def service_rss_mb(session: int) -> float:
    """Resident memory (MB) of every process in the service's session."""
    total = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getsid(int(proc.name)) == session:
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except (OSError, ProcessLookupError):
                continue
    return total / 1024


async def _sample_rss(session: int, samples: list[float], stop_at: float) -> None:
    """The service's RSS every second until the load ends."""
    while time.monotonic() < stop_at:
        samples.append(service_rss_mb(session))
        await asyncio.sleep(1.0)


def run(url: str, args, frame: bytes, session: int | None = None) -> dict:
    """Run the load against `url`; the report (with RSS when the service's session is known)."""
    before = service_rss_mb(session) if session else None
    load_before = loadavg()
    samples: list[float] = []
    tally = asyncio.run(_run(url, args, frame, session, samples))
    rss = None
    if session:
        after = service_rss_mb(session)
        half = samples[len(samples) // 2 :] or [after]
        rss = {
            "before": round(before, 1),
            "peak": round(max(samples + [after]), 1),
            "after": round(after, 1),
            "last_half_range": round(max(half) - min(half), 1),
        }
    result = report(tally, args, rss)
    result["load_before"], result["load_after"] = load_before, loadavg()
    return result


def build_parser() -> argparse.ArgumentParser:
    """The script's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="a running service on loopback (default: start one)")
    p.add_argument("--model", default="camvid", help="model to serve when starting one")
    p.add_argument("--token", default=None)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--slow-headers", type=int, default=70)
    p.add_argument("--slow-bodies", type=int, default=70)
    p.add_argument("--idle", type=int, default=60)
    p.add_argument("--good", type=int, default=50)
    p.add_argument("--image", type=Path, default=None, help="the good requests' image file")
    p.add_argument("--p99-goal-s", type=float, default=2.0)
    p.add_argument(
        "--serve-args",
        default="--precision fp32 --runtime jit --num-cpus 2",
        help="extra flags of the started `ifa-rt serve`",
    )
    p.add_argument("--json", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the load (starting the service unless --url), print the report; 0 when it passed."""
    args = build_parser().parse_args(argv)
    frame = _frame(args.image)
    if args.url:
        result = run(args.url, args, frame)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from _serve import running_server

        log = Path("/tmp") / f"hostile_load_serve_{time.time_ns()}.log"
        with running_server(log, args.model, args.serve_args.split()) as (url, proc):
            result = run(url, args, frame, session=proc.pid)
    result["command"] = shlex.join(["python", "scripts/hostile_load.py", *(argv or sys.argv[1:])])
    result["host"] = host_info()
    if not args.url:
        from ifa_rt.bundled import resolve
        from ifa_rt.side_files import file_sha256

        result["model"] = args.model
        result["serve_args"] = args.serve_args
        result["weights_sha256"] = file_sha256(resolve(args.model))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result["passed"] else 1


def _frame(image: Path | None) -> bytes:
    """The good requests' body: the given file, else the first CamVid val frame."""
    if image is not None:
        return image.read_bytes()
    from ifa_rt.data.folders import require_data_root

    frames = sorted((require_data_root() / "camvid" / "images" / "val").iterdir())
    return frames[0].read_bytes()


if __name__ == "__main__":
    sys.exit(main())
