"""Training: one experiment from a validated config (``config``, ``train``), its batches
(``batching``), cached encoder outputs (``features``), seeding (``seeding``), the loss-free
baselines (``baselines``) and the run folders it writes (``results``).

May import: ``lib.paths``, ``lib.data``, ``lib.evaluation``, ``lib.model``.
"""
