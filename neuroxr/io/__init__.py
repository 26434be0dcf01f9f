"""Reading and writing study stores (Zarr), and readers for outside data formats.

Layout, as xarray's backends: one module per input format on one hardened reader.

- ``store``: the one atomic writer (``write_dataset``, ``transaction`` / ``replace_stores`` for several
  stores as one unit, ``append_variables``, ``check_writable``), ``open_dataset``, provenance, hashes.
- ``journal``: the journal that makes a multi-store change all-or-nothing; recovery after a kill.
- ``paths``: URL normalisation, temporary siblings and their owners.
- ``integrity``: checksummed chunk reads, ``verify_store`` / ``verify_study``.
- ``reader``: the hardened reader: ``.npy`` header parsing, cgroup-aware memory limit, checked float32 casts.
- ``npy``, ``tables``, ``labelled``, ``brainio``: the formats (numpy, CSV, netCDF/Zarr, BrainIO).
- ``formats``: ``FILE[:key]`` dispatched to its format; provenance entries of input files.
- ``builders``: the contract Datasets (responses, stimuli, RDMs) and metadata validation.
- ``ingest``: ``ingest_arrays``, ``ingest_rdms``; ``allen``: the Allen cache and ``ingest_allen``.
- ``fetch``: downloads of the Allen data; ``arrays``: the public names of the array modules in one place.
"""
