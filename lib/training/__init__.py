"""Training: one experiment from a validated config (``config``, ``train``), its batches
(``batching``), cached encoder outputs (``features``), seeding (``seeding``), the loss-free
baselines (``baselines``), the run folders it writes (``results``) and training progress on a
terminal or in a log (``progress``).

May import: ``lib.paths``, ``lib.data``, ``lib.evaluation``, ``lib.model``.
"""
