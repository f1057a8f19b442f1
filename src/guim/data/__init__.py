"""Data layer: read event logs, validate them, map raw ids to indices, split, write a dataset dir."""
