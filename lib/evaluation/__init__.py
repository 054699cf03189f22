"""Evaluation: classification and retrieval metrics, prediction rules (``evaluate``), intervals
and paired tests over seeds and test sentences (``stats``).

May import: ``lib.paths`` only (the bottom layer, beside ``lib.data``).
"""
