"""Ingest step: raw DC taxi trip files -> typed, partitioned Parquet + quarantine.

``core`` holds the logic (:func:`components.ingest.core.run`), ``__main__`` the CLI
(``python -m components.ingest`` / ``fareflow ingest``), ``component`` the kfp wrapper.
"""
