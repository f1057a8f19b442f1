"""GUIM-bench: a GLUE-like suite of downstream tasks scoring frozen user and item embeddings."""
