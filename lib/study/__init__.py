"""Study: everything above one run.

- What the notebooks call: ``experiments`` (run or reuse, run tables, the notebooks' checks), the
  runs each training notebook trains (``plan``), a notebook's parameters cell (``parameters_cell``),
  the run profiles (``profiles``).
- Running them: the headless runner (``runner``), its ``--ray`` options (``ray_options``) and the
  Ray fan-out of runs (``fanout``), results folders that are ours to write (``results_folder``),
  executed notebooks without machine paths (``executed``).
- Reading them: summaries over seeds (``summary``), each method against the baseline with its
  margin verdict and how firmly it stands (``baseline_comparison``), run folders' predictions
  (``run_files``), when each run finished (``run_times``), the published studies (``studies``),
  the cross-study table and figure (``report``), figures (``plots``), a study against the published
  one (``compare``), reproduction checks (``reproduce``).
- Tuning: the declared search spaces (``search_spaces``), the Ray Tune search (``tuning``) and its
  tables and figures (``tuning_report``); training at the tuned recipes (``tuned_recipes``); Study 2's
  seed count from Study 1's variance (``design_power``); tuned against Study 1's recipe, method by
  method (``recipe_effect``).

May import: every layer below (``lib.paths``, ``lib.data``, ``lib.evaluation``, ``lib.model``,
``lib.training``).
"""
