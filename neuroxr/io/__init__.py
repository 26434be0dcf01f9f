"""Reading and writing study stores (Zarr), and readers for outside data formats."""
