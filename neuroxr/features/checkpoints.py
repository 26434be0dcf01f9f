"""Reading torch checkpoints safely: tensors only (``weights_only=True``), failures as one line.

Every checkpoint neuroxr reads (``--weights PATH``, the Taskonomy encoders, SimCLR checkpoints
given to ``domains``) goes through :func:`read_checkpoint`: the file's size is checked against
the memory this process may use before it is read, nothing is unpickled, and a pickled
checkpoint (a whole model or optimizer saved with ``torch.save(model)``) or a damaged file is a
:class:`CheckpointReadError` saying what it is and how to save one neuroxr reads.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

from ..errors import MissingDataError, NeuroxrError
from ..io.reader import check_allocation

#: how to write a checkpoint neuroxr can read
SAVE_HINT = "save the weights alone: torch.save(model.state_dict(), PATH)"


class CheckpointReadError(NeuroxrError, ValueError):
    """A checkpoint that cannot be read as tensors only: pickled Python objects, or a damaged file."""


def read_checkpoint(path, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` on the CPU; raises :class:`CheckpointReadError` naming the file.

    Parameters
    ----------
    path : path-like
    what : str
        What the file is meant to be (in the messages), e.g. ``"SimCLR checkpoint"``.
    """
    import torch  # heavy; the catalog listing imports this module without it

    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: {what} does not exist")
    check_allocation(path.stat().st_size, f"{path} ({what})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.findall(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointReadError(
                f"{path}: a pickled {what} (it holds a {found[0]} object), not weights alone; neuroxr reads "
                f"tensors only (torch.load with weights_only=True) and never unpickles objects (they can run "
                f"code): load it in a session you trust and {SAVE_HINT}"
            ) from None
        raise _damaged(path, what, "not tensors alone, read with weights_only=True") from None
    except Exception as exc:  # noqa: BLE001 - zip/format errors of a damaged or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _damaged(path, what, f"{type(exc).__name__}: {first}") from None


def _damaged(path, what: str, why: str) -> CheckpointReadError:
    return CheckpointReadError(f"{path}: cannot be read as a torch {what} ({why}); the file is damaged or of "
                               f"another kind: {SAVE_HINT}")


__all__ = ["read_checkpoint", "CheckpointReadError", "SAVE_HINT"]
