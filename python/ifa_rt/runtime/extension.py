"""Refuse to load the compiled extension under a torch it was not built against."""

from __future__ import annotations


def check_torch_matches(built_with: str, running: str) -> None:
    """Raise ImportError if the running torch is not the one the extension was built with."""
    if built_with != running:
        raise ImportError(
            f"ifa_rt: the compiled extension was built against torch {built_with}, "
            f"but torch {running} is installed. Rebuild it against the installed torch: "
            "pip install --no-build-isolation --force-reinstall --no-deps ."
        )
