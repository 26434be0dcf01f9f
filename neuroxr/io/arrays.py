"""Bring your own data: the public names of the array readers, builders and ingest in one place.

The work is done by one module per concern: :mod:`~neuroxr.io.ingest` (study-level ingest),
:mod:`~neuroxr.io.builders` (contract Datasets), :mod:`~neuroxr.io.formats` (``FILE[:key]``
dispatch) and the format readers :mod:`~neuroxr.io.npy`, :mod:`~neuroxr.io.tables`,
:mod:`~neuroxr.io.labelled`, :mod:`~neuroxr.io.brainio`, all on the hardened reader
:mod:`~neuroxr.io.reader`.
"""
from __future__ import annotations

from .brainio import read_brainio_assembly
from .builders import (
                       RESPONSES_CHUNKS,
                       STIMULI_CHUNKS,
                       build_rdms_dataset,
                       build_responses_dataset,
                       build_stimuli_dataset,
                       rechunk_responses,
                       write_responses_dataset,
)
from .formats import parse_source, read_array, read_ids, read_rdms
from .ingest import ingest_arrays, ingest_rdms
from .tables import read_neuron_table

__all__ = [
    "ingest_arrays", "ingest_rdms", "read_brainio_assembly", "read_array", "read_rdms", "read_ids",
    "parse_source", "read_neuron_table", "build_responses_dataset", "build_stimuli_dataset",
    "build_rdms_dataset", "write_responses_dataset", "rechunk_responses", "RESPONSES_CHUNKS", "STIMULI_CHUNKS",
]
