"""Loaders: each turns one input format into a `RawData` of canonical frames for `prepare`."""
