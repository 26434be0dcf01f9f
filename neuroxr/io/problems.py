"""Findings of store verification (:class:`Problem`), shared by the manifest and chunk checks."""
from __future__ import annotations

from dataclasses import asdict, dataclass

#: problems that make a store untrustworthy (the others are warnings)
ERROR_KINDS = ("corrupt", "unreadable", "metadata", "lost", "altered", "inconsistent", "schema")


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`neuroxr.io.integrity.verify_store`.

    ``kind`` is an error (``corrupt``, ``unreadable``, ``metadata``, ``lost``, ``altered``,
    ``inconsistent``, ``schema``) or a warning (``missing``, ``no-checksum``, ``no-manifest``, ``stale``,
    ``in-progress``).
    """

    store: str
    variable: str | None
    chunk: str | None
    kind: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_KINDS

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["ERROR_KINDS", "Problem"]
