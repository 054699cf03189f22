"""Evaluation: classification and retrieval metrics, prediction rules (``evaluate``); intervals and
paired t-tests over seeds (``seed_tests``); the two-level bootstrap over seeds and test sentences
(``bootstrap``); verdicts against a claimed gain (``margin``) and how firmly they stand
(``verdict_sensitivity``: bootstrap re-draws, leave one seed out); p-value printing and Holm's
adjustment (``pvalues``); the minimum detectable effect (``power``). Computes on arrays and run
tables, never reads files (run folders are read by ``lib.study.run_files``).

May import: ``lib.paths`` only (the bottom layer, beside ``lib.data``).
"""
