"""Torch-free project knowledge, importable by every layer and by the tools without loading torch:
``meta.methods`` (each method's data from ``configs/trainers/<Trainer>/method.yaml``), ``meta.protocols``
(benchmark protocols and their datasets), ``meta.runs`` (run-folder markers, the log's result block,
atomic small-file writes)."""
