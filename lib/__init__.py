"""Deep metric learning losses for fine-grained emotion recognition.

Modules: ``datasets`` (named data sets and splits), ``encoders`` (pretrained Transformers),
``model`` (pooling, embedding head, classifier), ``losses`` (one loss per module),
``train`` (one experiment from a config), ``evaluate`` (metrics and prediction rules),
``results`` (run folders and aggregation), ``run`` (the command line).
"""

__version__ = "0.1.0"
