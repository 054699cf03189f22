"""Study: what the notebooks call (``experiments``: run-or-reuse, run tables), the per-notebook
parameters (``profiles``), the headless runner (``runner``), summaries over seeds (``summary``),
the cross-study table (``report``), figures (``plots``), reproduction checks (``reproduce``), a
study against the published one (``compare``) and executed notebooks without machine paths
(``executed``).

May import: every layer below (``lib.paths``, ``lib.data``, ``lib.evaluation``, ``lib.model``,
``lib.training``).
"""
