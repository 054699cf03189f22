"""Data: the named data sets and their splits (``datasets``), pinned downloads (``download``),
duplicate and conflict reports (``leakage``), the figures of notebook 00 (``exploration``), and the
out-of-domain test sets with their class mappings (``out_of_domain``).

May import: ``lib.paths`` only (the bottom layer, beside ``lib.evaluation``).
"""
