"""Run profiles of the study: notebook parameters per profile (one source for run_all.sh and the tests)."""
from __future__ import annotations

TRAINING_NOTEBOOKS = ("01_baseline_ce", "02_triplet", "03_arcface", "04_combined")
NOTEBOOKS = ("00_data_exploration",) + TRAINING_NOTEBOOKS + ("05_tsne_analysis", "06_summary")

# run_all.sh --freeze-encoder: only the heads train, on cached encoder outputs, so an epoch costs
# milliseconds; larger batches and more epochs (stopped early on validation) suit them.
FROZEN_TRAINING = {"FREEZE_ENCODER": True, "EPOCHS": 30, "PATIENCE": 5, "BATCH_SIZE": 128}

# PROTOCOL.md's training budget of a fine-tuned run (section 4): at most 15 epochs, early stopping.
PROTOCOL_TRAINING = {"EPOCHS": 15, "PATIENCE": 3}

PROFILES: dict[str, dict] = {
    # CI: every notebook end to end in minutes, on tiny subsamples. Numbers mean nothing. fp32: on
    # batches this small bf16 autocast costs more than it saves (nbval 132 s against 107 s here);
    # tests/test_train.py trains with bf16.
    "smoke": {
        "dataset": "ed6", "encoder": "minilm", "seeds": [0, 1],
        "training": {"EPOCHS": 1, "BATCH_SIZE": 16, "MAX_LENGTH": 32, "MAX_TRAIN_SAMPLES": 64,
                     "MAX_EVAL_SAMPLES": 48, "BF16": False},
        "notebook": {"04_combined": {"GRID": [[0.15, 0.4, 0.45], [0.6, 0.2, 0.2]], "GRID_EPOCHS": 2},
                     "05_tsne_analysis": {"TSNE_PERPLEXITY": 10.0},
                     "06_summary": {"N_BOOT": 200}},
        "results": "results/smoke/{dataset}-{encoder}",
    },
    # A laptop CPU: the full notebook set on ed6 with MiniLM, trained as the published ed6 study was
    # (paper-secondary below) but on its first seed only, so that it stays under an hour on 2 cores and
    # its numbers can be set beside the published ones (one seed gives no intervals between losses).
    "default": {
        "dataset": "ed6", "encoder": "minilm", "seeds": [0],
        "training": dict(PROTOCOL_TRAINING),
        "notebook": {},
        "results": "results/{dataset}-{encoder}",
    },
    # The confirmatory study of PROTOCOL.md: Korean set, Korean-capable encoder, 10 seeds, at most
    # 15 epochs with early stopping (patience 3). CPU hours; GPU recommended.
    "paper": {
        "dataset": "ko6", "encoder": "me5-small", "seeds": list(range(10)),
        "training": dict(PROTOCOL_TRAINING),
        "notebook": {"06_summary": {"PROVENANCE": "clean"}},
        # The primary comparison is CE against combined; with --freeze-encoder (a secondary study:
        # every loss, PROTOCOL.md section 5) this part does not apply.
        "fine_tuned": {"notebooks": ("00_data_exploration", "01_baseline_ce", "04_combined", "05_tsne_analysis",
                                     "06_summary"),
                       "notebook": {"04_combined": {"LOSSES": ["combined"]}}},
        "results": "results/{dataset}-{encoder}",
    },
    # The secondary studies of PROTOCOL.md (section 5): the same budget, seeds 0-4, every notebook.
    # ed6 (default here): every loss; ed32: --dataset ed32 --notebooks 00_data_exploration,01_baseline_ce,
    # 04_combined,05_tsne_analysis,06_summary --set 'LOSSES=["combined"]'; frozen studies: --freeze-encoder
    # with --dataset ko6 --encoder me5-small, --dataset ed32, --dataset goemo27.
    "paper-secondary": {
        "dataset": "ed6", "encoder": "minilm", "seeds": [0, 1, 2, 3, 4],
        "training": dict(PROTOCOL_TRAINING),
        "notebook": {"06_summary": {"PROVENANCE": "clean"}},
        "results": "results/{dataset}-{encoder}",
    },
}


# run_all.sh --profile tune (lib/study/tuning.py): named search settings. Every method of a setting gets
# the same budget: trials, maximum epochs (ASHA's horizon; each trial samples its own epochs up to it),
# seeds per trial. "training": the fixed notebook parameters every trial starts from (the Study 1 recipe);
# "smoke" is CI's: a frozen encoder on 64 training sentences, seconds per trial, numbers meaningless.
# Its notebook is not one of NOTEBOOKS: run_all.sh's profiles never execute it.
TUNING_NOTEBOOK = "07_tuning"
TUNING: dict[str, dict] = {
    # fp32: on CPUs without AVX512 bf16 autocast is emulated, about 30x slower (lib.training.train.slow_bf16_warning),
    # and the machine a session gets is not ours to choose; trial 1 is the Study 1 recipe's fp32 twin.
    "finetune": {"trials": 24, "max_epochs": 15, "grace_epochs": 2, "startup_trials": 8, "seeds": [100, 101],
                 "confirm_seeds": [200, 201], "training": {**PROTOCOL_TRAINING, "BF16": False},
                 "results": "results/tuning/{dataset}-{encoder}"},
    "frozen": {"trials": 40, "max_epochs": 30, "grace_epochs": 2, "startup_trials": 10, "seeds": [100, 101],
               "confirm_seeds": [200, 201], "training": {**PROTOCOL_TRAINING, **FROZEN_TRAINING},
               "results": "results/tuning/{dataset}-{encoder}-frozen"},
    "smoke": {"trials": 3, "max_epochs": 3, "grace_epochs": 2, "startup_trials": 2, "seeds": [100, 101],
              "confirm_seeds": [200, 201],
              "training": {**FROZEN_TRAINING, "EPOCHS": 3, "PATIENCE": 2, "BATCH_SIZE": 16, "MAX_LENGTH": 32,
                           "MAX_TRAIN_SAMPLES": 64, "MAX_EVAL_SAMPLES": 48, "BF16": False},
              "results": "results/smoke/tuning/{dataset}-{encoder}-frozen"},
}


def profile_notebooks(profile: str, frozen: bool = False) -> tuple[str, ...]:
    """The notebooks a profile runs by default (a frozen-encoder study: all of them)."""
    p = PROFILES[profile]
    return NOTEBOOKS if frozen else p.get("fine_tuned", {}).get("notebooks", NOTEBOOKS)


def notebook_parameters(profile: str, notebook: str, dataset: str, encoder: str, seed: int, results: str,
                        columns: dict | None = None, frozen: bool = False) -> dict:
    """The papermill parameters of one notebook execution (``columns``: TEXT_COLUMN/LABEL_COLUMN of a CSV;
    ``frozen``: a frozen-encoder study, where a profile's fine-tuned-only parameters do not apply)."""
    p = PROFILES[profile]
    params = {"RESULTS_DIR": results}
    if notebook == "00_data_exploration":
        params.update(DATASET=dataset, ENCODER=encoder, **(columns or {}))
    elif notebook in TRAINING_NOTEBOOKS:
        params.update(DATASET=dataset, ENCODER=encoder, SEED=seed, **(columns or {}), **p["training"])
    elif notebook == "05_tsne_analysis":
        params.update(SEED=seed)
    params.update(p["notebook"].get(notebook, {}))
    if not frozen:
        params.update(p.get("fine_tuned", {}).get("notebook", {}).get(notebook, {}))
    return params
