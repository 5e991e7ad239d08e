"""Who may take a replica's memory and engine time: bodies within a byte budget and a deadline,
work only while it can still be answered in time.

A request costs memory while its body arrives and engine time once decoded. Connections that
are still sending their body hold no queue slot (so a slow client cannot block a fast one); the
bytes they have sent so far count against `max_buffered_bytes`. A decoded request is admitted
only while the replica holds fewer than `max_queue` such requests *and* the work ahead of it is
estimated to finish within `max_wait_s` (requests ahead × the measured engine time per image),
so an admitted request is answered in about `max_wait_s` plus its own run, and the rest get a
503 with `Retry-After` at once instead of a late answer.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from .codec import Limits, RequestError, body_too_large, check_content_length

__all__ = ["Admission", "RETRY_AFTER_S"]

RETRY_AFTER_S = 1
# Weight of the newest batch in the engine-time estimate: adapts within ~10 batches.
EWMA_WEIGHT = 0.2


class Admission:
    """One replica's admission state: bodies being read, requests held, engine time per image."""

    def __init__(self, limits: Limits):
        self._limits = limits
        self.held = 0  # requests with a decoded image, not yet answered
        self.buffered = 0  # bytes of bodies being read
        self._seconds_per_image: float | None = None

    async def read_body(self, request: Request) -> bytes:
        """The whole body within the size, time and byte-budget limits (413, 408, 503)."""
        limits = self._limits
        check_content_length(request.headers.get("content-length"), limits.max_body_bytes)
        chunks: list[bytes] = []
        size = 0

        async def read() -> None:
            nonlocal size
            async for chunk in request.stream():
                if size + len(chunk) > limits.max_body_bytes:
                    raise body_too_large(limits.max_body_bytes, size + len(chunk))
                if self.buffered + len(chunk) > limits.max_buffered_bytes:
                    raise _busy(
                        f"serve: replica busy: expected request bodies in transit to hold at "
                        f"most {limits.max_buffered_bytes} bytes, got {self.buffered} "
                        "already; retry later"
                    )
                size += len(chunk)
                self.buffered += len(chunk)
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), limits.body_timeout_s)
        except TimeoutError:
            raise RequestError(
                408,
                f"serve: request body: expected the whole body within "
                f"{limits.body_timeout_s:g} s, got {size} bytes",
                {"Connection": "close"},
            ) from None
        finally:
            self.buffered -= size
        return b"".join(chunks)

    def estimated_wait_s(self) -> float:
        """Seconds the work already admitted needs from the engine (0 before any is measured)."""
        return self.held * (self._seconds_per_image or 0.0)

    def admit(self) -> None:
        """Take a queue slot, or refuse with 503 when the queue is full of work (count or time)."""
        limits = self._limits
        if self.held >= limits.max_queue:
            raise _busy(
                f"serve: replica busy: expected fewer than {limits.max_queue} requests in "
                "progress, got that many; retry later"
            )
        wait = self.estimated_wait_s()
        if wait > limits.max_wait_s:
            raise _busy(
                f"serve: replica busy: expected the work ahead to take at most "
                f"{limits.max_wait_s:g} s, got about {wait:.2f} s ({self.held} requests); "
                "retry later"
            )
        self.held += 1

    def release(self) -> None:
        """Give back a queue slot (the request was answered or failed)."""
        self.held -= 1

    def record_batch(self, images: int, seconds: float) -> None:
        """Fold one engine call's time into the per-image estimate."""
        if images <= 0:
            return
        per_image = seconds / images
        previous = self._seconds_per_image
        self._seconds_per_image = (
            per_image if previous is None else previous + EWMA_WEIGHT * (per_image - previous)
        )


def _busy(message: str) -> RequestError:
    return RequestError(503, message, {"Retry-After": str(RETRY_AFTER_S)})
