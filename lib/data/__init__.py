"""Data: the named data sets and their splits (``datasets``), pinned downloads (``download``),
duplicate and conflict reports (``leakage``), and the figures of notebook 00 (``exploration``).

May import: ``lib.paths`` only (the bottom layer, beside ``lib.evaluation``).
"""
