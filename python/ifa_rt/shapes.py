"""Input sizes written as text ("512x1024"), parsed one way for every command."""

from __future__ import annotations

__all__ = ["parse_shape", "parse_shapes"]


def parse_shape(text: str) -> tuple[int, int]:
    """'512x1024' -> (512, 1024) (height × width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"bench: 'shape': expected HEIGHTxWIDTH like 512x1024, got {text!r}")
    return int(parts[0]), int(parts[1])


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'360x480,720x960' -> [(360, 480), (720, 960)]."""
    return [parse_shape(s) for s in text.split(",")]
