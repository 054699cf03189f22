"""Training: one experiment from a validated config (``config``, ``train``), the prediction rule
fixed before any result (``rules``), its batches (``batching``), cached encoder outputs
(``features``), seeding (``seeding``), the loss-free baselines (``baselines``), the run folders it
writes (``results``), a trained model kept for prediction (``saved_model``), scoring on
out-of-domain sets (``out_of_domain``) and training progress on a terminal or in a log
(``progress``).

May import: ``lib.paths``, ``lib.data``, ``lib.evaluation``, ``lib.model``.
"""
