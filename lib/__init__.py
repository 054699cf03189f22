"""Deep metric learning losses for fine-grained emotion recognition.

Layers, bottom to top; a module imports only from its own layer or the ones below it
(tests/test_layering.py checks this):

- ``lib.paths``       project-anchored folders (data, cache, results); imported by every layer
- ``lib.data``        named data sets and splits, downloads, leakage, exploration figures,
                      out-of-domain sets
- ``lib.evaluation``  metrics, prediction rules, statistics over seeds and sentences
- ``lib.model``       encoders, the network (pooling, embedding head, classifier), ``losses/``
- ``lib.training``    config, batching, feature cache, seeding, the training loop, baselines,
                      run folders
- ``lib.study``       experiments as the notebooks see them, the notebook runner, summaries,
                      the cross-study report, figures, reproduction checks
- ``lib.run``, ``lib.report``, ``lib.runner``  the command lines
"""

import warnings as _warnings

__version__ = "0.1.0"

# transformers imports tqdm.auto, which in a Jupyter kernel without ipywidgets warns "IProgress not
# found" (a red box in every notebook) and falls back to plain bars: the fallback is what we want.
_warnings.filterwarnings("ignore", message="IProgress not found")
