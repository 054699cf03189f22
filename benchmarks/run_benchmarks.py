"""Speed benchmarks of the study pipeline; every figure comes from one run, measured side by side.

    STUDY_DATA_DIR=... .venv/bin/python benchmarks/run_benchmarks.py            # full (~10-15 min, 2 cores)
    STUDY_DATA_DIR=... .venv/bin/python benchmarks/run_benchmarks.py --quick    # every code path, < 1 min

Machines are noisy, so what counts are ratios of things measured in the same process, alternated
(A B, B A, ...) or interleaved step by step, and medians over repetitions. Progress goes to stderr,
the table to stdout, and the JSON (sorted keys, written atomically) to benchmarks/latest.json
(full mode), benchmarks/quick.json (--quick) or benchmarks/partial.json (--only) unless --out is given.
See benchmarks/README.md for what each figure measures.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as run_all.sh and lib.training.train set it

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # seed_pipeline.py lives next to this file

from lib.entrypoint import run_main  # noqa: E402
from lib.ownership import check_owned, json_object  # noqa: E402
from lib.training import batching  # noqa: E402
from lib.model import encoders  # noqa: E402
from lib.training.batching import collate, length_grouped_batches, sequential_batches, tokenize  # noqa: E402
from lib.training.config import ExperimentConfig  # noqa: E402
from lib.data.datasets import load_dataset, subsample  # noqa: E402
from lib.model.losses import ArcFaceLoss, TripletLoss, build_loss, format_loss_spec, parse_loss_spec  # noqa: E402
from lib.model.network import EmotionModel, freeze_word_embeddings  # noqa: E402
from lib.training.seeding import seed_everything  # noqa: E402
from lib.training.train import Inputs, _forward, build_optimizer, embed, prepare_data, run_experiment  # noqa: E402
from seed_pipeline import SeedPipeline, seed_triplet_indices, seed_triplet_loss  # noqa: E402

DEVICE = torch.device("cpu")
ENCODER = "minilm"
DATASET = "ed6"
T0 = time.perf_counter()

# Loss configurations of notebooks 01-04, and 04's weight grid (ce, triplet, arcface).
SWEEP_LOSSES = ["ce", "triplet", "ce+triplet", "arcface", "ce+arcface", "combined", "triplet+arcface", "supcon"]
SWEEP_GRID = [[0.15, 0.4, 0.45], [0.34, 0.33, 0.33], [0.6, 0.2, 0.2], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]]

FULL = {
    "batch_size": 32,                          # training batch of every training figure
    "train_n": None, "eval_n": None,          # speedup_vs_seed and bf16 runs: the whole ed6 splits
    "speedup_order": ["ours", "seed", "ours"],  # full epochs; the seed epoch is ~4x longer than ours
    "step_batches": 8, "step_rounds": 3,       # step benchmarks: batches per round, rounds
    "eval_n_sentences": None, "eval_reps": 5,  # eval: the whole validation split
    "sweep_losses": SWEEP_LOSSES + [f"ce={a}+triplet={b}+arcface={c}" for a, b, c in SWEEP_GRID],
    "sweep_seeds": [0, 1, 2], "sweep_epochs": 10, "sweep_train_n": None, "sweep_eval_n": None,
    "mining_sizes": [32, 64, 128, 256, 512, 1024], "mining_classes": [6, 32], "mining_reps": 7,
    "mining_min_seconds": 0.5, "seed_enum_max": 128,
}
QUICK = {
    "batch_size": 16,
    "train_n": 16, "eval_n": 16,
    "speedup_order": ["ours", "seed", "ours"],
    "step_batches": 1, "step_rounds": 2,
    "eval_n_sentences": 16, "eval_reps": 2,
    "sweep_losses": ["ce", "combined"],
    "sweep_seeds": [0, 1], "sweep_epochs": 1, "sweep_train_n": 32, "sweep_eval_n": 16,
    "mining_sizes": [32, 64, 128], "mining_classes": [6, 32], "mining_reps": 3,
    "mining_min_seconds": 0.05, "seed_enum_max": 64,
}
SECTIONS = ("speedup", "steps", "eval", "sweep", "mining", "bf16")
SECTION_TARGETS = {"speedup": ["speedup_vs_seed"], "steps": ["loss_overhead", "step_over_encoder_floor"],
                   "eval": ["eval_over_encoder_forward"], "sweep": ["frozen_sweep_seconds"]}
TARGETS = {  # (comparison, threshold)
    "speedup_vs_seed": (">=", 2.0),
    "loss_overhead": ("<=", 1.10),
    "step_over_encoder_floor": ("<=", 1.15),
    "eval_over_encoder_forward": (">=", 0.9),
    "frozen_sweep_seconds": ("<", 300.0),
}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def median(xs) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------------------------
# helpers shared by the sections

_ENCODER = None
_RUNS: dict[str, dict] = {}


def pristine_encoder():
    """(spec, tokenizer, encoder) loaded once; callers deep-copy the encoder before training it."""
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = encoders.load(ENCODER)
    return _ENCODER


def run_once(cfg: ExperimentConfig, work: Path) -> dict:
    """lib.training.train.run_experiment, memoised by config so sections can share a run."""
    key = json.dumps(cfg.to_dict(), sort_keys=True)
    if key not in _RUNS:
        out = work / f"run{len(_RUNS)}"
        t = time.perf_counter()
        metrics = run_experiment(cfg, out, quiet=True)
        wall = time.perf_counter() - t
        history = pd.read_csv(out / "history.csv").to_dict("records")
        shutil.rmtree(out, ignore_errors=True)
        _RUNS[key] = {"metrics": metrics, "history": history, "wall_seconds": wall}
    return _RUNS[key]


def train_tokens(n: int | None = None, split: str = "train", seed: int = 0):
    _, tokenizer, _ = pristine_encoder()
    frame = subsample(load_dataset(DATASET).split(split), n, seed)
    return tokenize(tokenizer, frame["text"].tolist(), frame["label"].to_numpy(), 128), frame


@dataclasses.dataclass
class OursVariant:
    """Our model, loss and optimizer built as lib.training.train._run builds them (fine-tuned encoder)."""
    name: str
    cfg: ExperimentConfig
    model: EmotionModel
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    trainable: list
    inputs: Inputs


def word_embeddings_frozen(cfg: ExperimentConfig) -> bool:
    spec = pristine_encoder()[0]
    return spec.freeze_word_embeddings if cfg.freeze_word_embeddings is None else cfg.freeze_word_embeddings


def build_ours(name: str, loss: str, tokens, steps: int, bf16: bool = False, fused_adamw: bool = False) -> OursVariant:
    _, _, encoder = pristine_encoder()
    cfg = ExperimentConfig(dataset=DATASET, encoder=ENCODER, loss=loss, bf16=bf16, device="cpu").validate()
    torch.manual_seed(0)  # same head initialisation for every variant
    C = int(tokens.labels.max()) + 1
    model = EmotionModel(copy.deepcopy(encoder), encoder.config.hidden_size, C, cfg.embed_dim, cfg.dropout)
    loss_fn = build_loss(cfg.loss_weights(), C, cfg.embed_dim, triplet_margin=cfg.triplet_margin,
                         triplet_mining=cfg.triplet_mining, triplet_distance=cfg.triplet_distance,
                         arcface_margin=cfg.arcface_margin, arcface_scale=cfg.arcface_scale,
                         supcon_temperature=cfg.supcon_temperature)
    if word_embeddings_frozen(cfg):  # as lib.training.train._run decides (default: only for me5-small)
        freeze_word_embeddings(model.encoder)
    model.to(DEVICE)
    loss_fn.to(DEVICE)
    optimizer, scheduler = build_optimizer(model, loss_fn, cfg, steps)
    if fused_adamw:  # what-if: the same groups and schedule with torch's fused AdamW kernel
        optimizer = torch.optim.AdamW([{"params": g["params"], "lr": g["initial_lr"]} for g in optimizer.param_groups],
                                      weight_decay=cfg.weight_decay, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, scheduler.lr_lambdas[0])
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    model.train()
    loss_fn.train()
    return OursVariant(name, cfg, model, loss_fn, optimizer, scheduler, trainable, Inputs(tokens))


def ours_step(v: OursVariant, index: np.ndarray) -> None:
    """One training step, the body of lib.training.train._run's epoch loop (collate included)."""
    out = _forward(v.model, v.inputs, index, DEVICE, v.cfg.bf16)
    labels = torch.from_numpy(v.inputs.labels[index]).to(DEVICE, non_blocking=True)
    total, parts = v.loss_fn(out["embeddings"].float(), out["logits"].float(), labels)
    if not torch.isfinite(total):
        raise FloatingPointError(f"non-finite loss in benchmark variant {v.name}")
    v.optimizer.zero_grad(set_to_none=True)
    total.backward()
    if v.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(v.trainable, v.cfg.grad_clip)
    v.optimizer.step()
    v.scheduler.step()
    for value in parts.values():  # the loop's per-step loss bookkeeping (a host sync each)
        float(value)
    float(total.detach())


@dataclasses.dataclass
class FloorVariant:
    """The bare transformers encoder: forward, loss = mean of last hidden state, backward, AdamW step."""
    name: str
    encoder: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: list  # pre-collated, the same padded tensors our collate makes


def build_floor(batches_idx, tokens, like: torch.optim.Optimizer) -> FloorVariant:
    """``like``: our optimizer, whose implementation flags (foreach / fused) the floor copies."""
    _, _, encoder = pristine_encoder()
    cfg = ExperimentConfig()
    enc = copy.deepcopy(encoder).to(DEVICE)
    if word_embeddings_frozen(cfg):
        freeze_word_embeddings(enc)
    enc.train()  # dropout on, as in our training step
    flags = {k: like.defaults[k] for k in ("foreach", "fused") if k in like.defaults}
    opt = type(like)([{"params": [p for p in enc.parameters() if p.requires_grad], "lr": cfg.encoder_lr}],
                     weight_decay=cfg.weight_decay, **flags)
    pre = [collate(tokens, idx) for idx in batches_idx]
    return FloorVariant("encoder_floor", enc, opt, pre)


def floor_step(v: FloorVariant, bi: int) -> None:
    b = v.batches[bi]
    v.optimizer.zero_grad(set_to_none=True)
    hidden = v.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
    hidden.mean().backward()
    v.optimizer.step()


# ----------------------------------------------------------------------------------------------
# 1. speedup_vs_seed: a full epoch of ours (lib.training.train.run_experiment) against the seed pipeline

def speedup_config(P, seed: int = 0, bf16: bool = False) -> ExperimentConfig:
    return ExperimentConfig(dataset=DATASET, encoder=ENCODER, loss="combined", epochs=1, batch_size=P["batch_size"],
                            seed=seed,
                            max_train_samples=P["train_n"], max_eval_samples=P["eval_n"], bf16=bf16,
                            device="cpu").validate()


def padding_stats(tokens, batch_size: int = 32, seed: int = 0) -> dict:
    lengths = tokens.lengths
    gen = torch.Generator()
    gen.manual_seed(seed)
    padded = sum(len(b) * int(lengths[b].max()) for b in length_grouped_batches(lengths, batch_size, gen))
    real = int(lengths.sum())
    return {"real_tokens": real, "ours_padded_tokens": int(padded), "seed_padded_tokens": 128 * len(lengths),
            "ours_real_fraction": real / padded, "seed_real_fraction": real / (128 * len(lengths)),
            "mean_length": float(lengths.mean()), "max_length": int(lengths.max())}


def bench_speedup(P, work: Path) -> dict:
    """Epochs in the order P["speedup_order"] (default ours, seed, ours: the slow seed epoch is
    bracketed by ours, so a drift in machine speed hits both sides alike)."""
    _, tokenizer, encoder = pristine_encoder()
    epochs = []
    counts = {"ours": 0, "seed": 0}
    seed_data = None
    for which in P["speedup_order"]:
        k = counts[which]
        counts[which] += 1
        row = {"which": which, "position": len(epochs)}
        if which == "ours":
            cfg = speedup_config(P, seed=k)  # a new seed per ours epoch (and a new run, not a memoised one)
            run = run_once(cfg, work)
            h = run["history"][0]
            row.update(seed=k, sentences=int(run["metrics"]["data"]["sizes"]["train"]),
                       sentences_per_second=h["sentences_per_second"], epoch_seconds=h["train_seconds"],
                       valid_macro_f1=run["metrics"]["valid_macro_f1"], run_wall_seconds=run["wall_seconds"])
        else:
            if seed_data is None:
                bundle = prepare_data(speedup_config(P, seed=0))  # the sentences of our seed-0 run
                seed_data = (bundle.train["text"].tolist(), bundle.train["label"].to_numpy(), bundle.num_classes)
            texts, labels, C = seed_data
            torch.manual_seed(k)
            pipe = SeedPipeline(encoder, tokenizer, C, batch_size=P["batch_size"])
            res = pipe.train_epoch(texts, labels, seed=k)
            del pipe
            row.update(seed=k, sentences=res["sentences"], sentences_per_second=res["sentences_per_second"],
                       epoch_seconds=res["seconds"], triplets_per_step=res["triplets_per_step"])
        epochs.append(row)
        log(f"speedup_vs_seed epoch {len(epochs)}/{len(P['speedup_order'])}: {which} "
            f"{row['sentences_per_second']:.1f} sent/s ({row['epoch_seconds']:.1f} s)")
    ours = median(r["sentences_per_second"] for r in epochs if r["which"] == "ours")
    seed = median(r["sentences_per_second"] for r in epochs if r["which"] == "seed")
    texts, labels, _ = seed_data
    toks = tokenize(tokenizer, texts, labels, 128)
    return {
        "speedup_vs_seed": ours / seed,
        "details": {
            "what": "sentences/s over one epoch, ours = lib.training.train.run_experiment (its history.csv timing of the "
                    "epoch loop: collate, forward, loss, backward, clipping, AdamW, scheduler) vs "
                    "benchmarks/seed_pipeline.py (per-item tokenising DataLoader, padding to 128, Python triplet "
                    "enumeration, softmax before CE, mean over padding, np.vstack of embeddings, RAdam); "
                    "combined loss, fp32; value = median(ours) / median(seed) over the epochs below",
            "epochs": epochs,
            "ours_sentences_per_second_median": ours,
            "seed_sentences_per_second_median": seed,
            "batch_size": P["batch_size"],
            "padding": padding_stats(toks, P["batch_size"]),
        },
    }


# ----------------------------------------------------------------------------------------------
# 2, 3 and the speed half of 7: step times on the same batches, interleaved step by step

def bench_steps(P) -> dict:
    tokens, _ = train_tokens(P["train_n"])
    gen = torch.Generator()
    gen.manual_seed(0)
    batches = length_grouped_batches(tokens.lengths, P["batch_size"], gen)[:P["step_batches"]]
    steps = 10 * (P["step_rounds"] + 1) * len(batches)  # a long schedule: the LR never reaches 0 here
    variants = {
        "combined": build_ours("combined", "combined", tokens, steps),
        "ce": build_ours("ce", "ce", tokens, steps),
        "combined_bf16": build_ours("combined_bf16", "combined", tokens, steps, bf16=True),
        "combined_fused_adamw": build_ours("combined_fused_adamw", "combined", tokens, steps, fused_adamw=True),
    }
    variants["encoder_floor"] = build_floor(batches, tokens, like=variants["combined"].optimizer)
    names = list(variants)

    def step(name, bi):
        v = variants[name]
        if isinstance(v, FloorVariant):
            floor_step(v, bi)
        else:
            ours_step(v, batches[bi])

    for name in names:  # warm-up: first-call costs (allocator, kernels) are not step costs
        step(name, 0)
    log(f"steps: {len(batches)} batches x {P['step_rounds']} rounds x {len(names)} variants")
    totals = {n: [0.0] * P["step_rounds"] for n in names}
    per_step = {n: [] for n in names}
    for r in range(P["step_rounds"]):
        for bi in range(len(batches)):
            k = (r * len(batches) + bi) % len(names)
            for name in names[k:] + names[:k]:  # rotate who goes first
                t = time.perf_counter()
                step(name, bi)
                dt = time.perf_counter() - t
                totals[name][r] += dt
                per_step[name].append(dt)
        log(f"steps round {r + 1}/{P['step_rounds']}: " + ", ".join(f"{n} {totals[n][r]:.2f}s" for n in names))

    def ratio(a, b):
        return median(x / y for x, y in zip(totals[a], totals[b]))

    tok = [int(len(b) * tokens.lengths[b].max()) for b in batches]
    details = {
        "batches": len(batches), "rounds": P["step_rounds"], "batch_size": P["batch_size"],
        "padded_tokens_per_batch": tok,
        "median_step_ms": {n: 1000 * median(per_step[n]) for n in names},
        "round_seconds": totals,
        "what": "same length-grouped ed6 batches; per batch the four variants run back to back in rotating order; "
                "ratio per round of summed step times, median over rounds. ours = lib.training.train._forward + "
                "WeightedSumLoss + zero_grad + backward + clip_grad_norm_ + AdamW + LambdaLR + loss .item()s; "
                "floor = bare encoder on pre-collated tensors, mean(last_hidden_state).backward(), AdamW step "
                "(same implementation flags as ours); combined_fused_adamw = ours with torch.optim.AdamW(fused=True), "
                "a what-if for lib.training.train.build_optimizer",
    }
    return {
        "loss_overhead": ratio("combined", "ce"),
        "step_over_encoder_floor": ratio("combined", "encoder_floor"),
        "ce_step_over_encoder_floor": ratio("ce", "encoder_floor"),
        "bf16_step_speedup": ratio("combined", "combined_bf16"),
        "fused_adamw_step_speedup": ratio("combined", "combined_fused_adamw"),
        "details": details,
    }


# ----------------------------------------------------------------------------------------------
# 4. eval_over_encoder_forward

def bench_eval(P) -> dict:
    _, _, encoder = pristine_encoder()
    tokens, _ = train_tokens(P["eval_n_sentences"], split="valid")
    cfg = ExperimentConfig(device="cpu").validate()
    C = 6
    model = EmotionModel(copy.deepcopy(encoder), encoder.config.hidden_size, C, cfg.embed_dim, cfg.dropout)
    inputs = Inputs(tokens)
    n = len(tokens)
    pre = [collate(tokens, idx) for idx in sequential_batches(n, cfg.eval_batch_size, tokens.lengths)]

    @torch.no_grad()
    def raw():
        model.encoder.eval()
        for b in pre:
            model.encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state

    def ours():
        embed(model, inputs, cfg, DEVICE)

    ours()
    raw()  # warm-up
    rows = []
    for r in range(P["eval_reps"]):
        row = {}
        for which in (("ours", "raw") if r % 2 == 0 else ("raw", "ours")):
            t = time.perf_counter()
            ours() if which == "ours" else raw()
            row[which + "_seconds"] = time.perf_counter() - t
        row["ratio"] = row["raw_seconds"] / row["ours_seconds"]  # = our throughput / raw throughput
        rows.append(row)
    log(f"eval: {n} sentences, ratio median {median(r['ratio'] for r in rows):.3f}")
    return {
        "eval_over_encoder_forward": median(r["ratio"] for r in rows),
        "details": {"sentences": n, "eval_batch_size": cfg.eval_batch_size, "reps": rows,
                    "ours_sentences_per_second_median": n / median(r["ours_seconds"] for r in rows),
                    "raw_sentences_per_second_median": n / median(r["raw_seconds"] for r in rows),
                    "what": "lib.training.train.embed (eval, no_grad, collate + pooling + heads + scatter) vs the bare "
                            "encoder forward under no_grad on the same pre-collated length-sorted batches; "
                            "alternated, median of per-rep ratios"},
    }


# ----------------------------------------------------------------------------------------------
# 5. frozen_sweep_seconds

def sweep_configs(P) -> tuple[list[str], list[str]]:
    seen, unique, dropped = set(), [], []
    for loss in P["sweep_losses"]:
        key = format_loss_spec(parse_loss_spec(loss))
        (dropped if key in seen else unique).append(loss)
        seen.add(key)
    return unique, dropped


def bench_sweep(P, work: Path) -> dict:
    losses, dropped = sweep_configs(P)
    cache = Path(tempfile.mkdtemp(prefix="sweep-cache-", dir=work))
    old_cache = os.environ.get("STUDY_CACHE_DIR")
    os.environ["STUDY_CACHE_DIR"] = str(cache)  # fresh: the one-time encoding is really counted
    batching._TOKEN_CACHE.clear()  # and tokenising, as in a fresh notebook process
    runs = []
    try:
        t0 = time.perf_counter()
        for seed in P["sweep_seeds"]:
            for loss in losses:
                cfg = ExperimentConfig(dataset=DATASET, encoder=ENCODER, loss=loss, seed=seed, freeze_encoder=True,
                                       epochs=P["sweep_epochs"], max_train_samples=P["sweep_train_n"],
                                       max_eval_samples=P["sweep_eval_n"], device="cpu")
                out = work / "sweep" / format_loss_spec(parse_loss_spec(loss)).replace("=", "").replace("+", "_") \
                    / f"seed{seed}"
                t = time.perf_counter()
                m = run_experiment(cfg, out, quiet=True)
                runs.append({"loss": loss, "seed": seed, "wall_seconds": time.perf_counter() - t,
                             "valid_macro_f1": m["valid_macro_f1"], **{k: float(v) for k, v in m["timings"].items()}})
                log(f"sweep {len(runs)}/{len(losses) * len(P['sweep_seeds'])}: {loss} seed {seed} "
                    f"{runs[-1]['wall_seconds']:.1f}s")
        total = time.perf_counter() - t0
    finally:
        if old_cache is None:
            os.environ.pop("STUDY_CACHE_DIR", None)
        else:
            os.environ["STUDY_CACHE_DIR"] = old_cache
        shutil.rmtree(work / "sweep", ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    sums = {k: sum(r.get(k, 0.0) for r in runs) for k in ("load_seconds", "train_seconds", "eval_seconds")}
    return {
        "frozen_sweep_seconds": total,
        "frozen_sweep_encode_seconds": runs[0].get("encode_seconds"),
        "details": {"runs": runs, "configs": losses, "seeds": P["sweep_seeds"], "epochs": P["sweep_epochs"],
                    "n_runs": len(runs), "sum_of_run_timings": sums,
                    "dropped_duplicates": dropped,
                    "note": "a config equal to an earlier one (e.g. combined == ce=0.15+triplet=0.4+arcface=0.45) "
                            "is run once, as lib.study.experiments.run_or_load would reuse it; includes data and encoder "
                            "loading per run, the one-time encoding into a fresh STUDY_CACHE_DIR and tokenising"},
    }


# ----------------------------------------------------------------------------------------------
# 6. mining_scaling

def peak_torch_bytes(fn) -> int:
    """Peak of live bytes allocated through torch's CPU allocator while ``fn`` runs.

    From torch.profiler(profile_memory=True): the running sum of its allocation/free events,
    in time order. Tensors alive before the call (inputs, parameters) are not counted.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and str(e.device_type()).endswith("CPU"))
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return int(peak)


def bench_mining(P) -> dict:
    gen = torch.Generator()
    gen.manual_seed(0)
    losses = {
        "triplet_all": TripletLoss(0.3, "all"),
        "triplet_semihard": TripletLoss(0.3, "semihard"),
        "triplet_hard": TripletLoss(0.3, "hard"),
    }
    out = {}
    for C in P["mining_classes"]:
        mods = dict(losses, arcface=ArcFaceLoss(C, 128, 0.5, 8.0))
        table = {name: {} for name in mods}
        seed_table = {}
        for B in P["mining_sizes"]:
            x = torch.randn(B, 128, generator=gen)
            y = torch.randint(0, C, (B,), generator=gen)
            emb = x.clone().requires_grad_(True)

            def once(mod):
                def f():
                    mod(emb, y).backward()
                    emb.grad = None
                    for p in mod.parameters():
                        p.grad = None
                return f

            fns = {name: once(mod) for name, mod in mods.items()}
            for f in fns.values():
                f()  # warm-up
            times = {name: [] for name in fns}
            names = list(fns)
            r, start = 0, time.perf_counter()  # at least mining_reps rounds, more while they are cheap
            while r < P["mining_reps"] or (time.perf_counter() - start < P["mining_min_seconds"] and r < 200):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    t = time.perf_counter()
                    fns[name]()
                    times[name].append(time.perf_counter() - t)
                r += 1
            for name in names:
                table[name][str(B)] = {"ms": 1000 * median(times[name]), "min_ms": 1000 * min(times[name]),
                                       "reps": len(times[name]), "peak_bytes": peak_torch_bytes(fns[name])}
            if B <= P["seed_enum_max"]:  # the seed study's Python enumeration, for contrast
                e = x.clone().requires_grad_(True)
                tracemalloc.start()
                t = time.perf_counter()
                idx = seed_triplet_indices(y, C)
                seed_triplet_loss(e, idx).backward()
                dt = time.perf_counter() - t
                _, py_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                seed_table[str(B)] = {"ms": 1000 * dt, "python_peak_bytes": int(py_peak), "triplets": int(len(idx[0]))}
            log(f"mining C={C} B={B}: " + ", ".join(f"{n} {table[n][str(B)]['ms']:.1f}ms" for n in names))
        lo, hi = str(P["mining_sizes"][0]), str(P["mining_sizes"][-1])
        growth = {}
        for name in table:
            t_ratio = table[name][hi]["ms"] / table[name][lo]["ms"]
            m_lo = max(table[name][lo]["peak_bytes"], 1)
            growth[name] = {"time_ratio": t_ratio, "peak_bytes_ratio": table[name][hi]["peak_bytes"] / m_lo,
                            "time_exponent": math.log(t_ratio) / math.log(int(hi) / int(lo))}
        out[f"classes_{C}"] = {"by_batch_size": table, "growth": growth, "seed_python_enumeration": seed_table,
                               "growth_sizes": [int(lo), int(hi)]}
    out["what"] = ("forward+backward of lib.model.losses.TripletLoss (all/semihard/hard, euclidean, margin 0.3) and "
                   "ArcFaceLoss (margin 0.5, scale 8) on random 128-d embeddings; ms = median over reps; peak_bytes "
                   "= peak of live bytes allocated by torch during one forward+backward (torch.profiler "
                   "profile_memory events, inputs excluded); growth = value(largest B)/value(smallest B), "
                   "time_exponent = log(time ratio)/log(size ratio) (1 = linear, 2 = quadratic). "
                   "seed_python_enumeration: benchmarks/seed_pipeline.py's itertools/pandas mining + loss, "
                   "one call, Python/numpy peak from tracemalloc")
    return {"mining_scaling": out}


# ----------------------------------------------------------------------------------------------
# 7. bf16_vs_fp32: validation macro-F1 after one epoch (the speed ratio comes from bench_steps)

def bench_bf16(P, work: Path) -> dict:
    res = {}
    for bf16 in (False, True):  # fp32 is usually shared with speedup_vs_seed's first run
        run = run_once(speedup_config(P, seed=0, bf16=bf16), work)
        res["bf16" if bf16 else "fp32"] = run
        log(f"bf16={bf16}: valid macro-F1 {run['metrics']['valid_macro_f1']:.4f}, "
            f"{run['history'][0]['sentences_per_second']:.1f} sent/s")
    f32, b16 = res["fp32"], res["bf16"]
    return {
        "valid_macro_f1_fp32": f32["metrics"]["valid_macro_f1"],
        "valid_macro_f1_bf16": b16["metrics"]["valid_macro_f1"],
        "valid_macro_f1_diff": b16["metrics"]["valid_macro_f1"] - f32["metrics"]["valid_macro_f1"],
        "epoch_speedup": b16["history"][0]["sentences_per_second"] / f32["history"][0]["sentences_per_second"],
        "epoch_sentences_per_second": {"fp32": f32["history"][0]["sentences_per_second"],
                                       "bf16": b16["history"][0]["sentences_per_second"]},
        "train_sentences": P["train_n"] or "all",
    }


# ----------------------------------------------------------------------------------------------

def machine_info() -> dict:
    cpu = None
    flags = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu is None:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "lib"], cwd=HERE.parent,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    import transformers

    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(), "cpu_model": cpu,
        "cpu_flags_of_interest": sorted(f for f in flags if "bf16" in f or "amx" in f or f in ("avx2", "avx512f")),
        "git_commit": commit, "lib_dirty": dirty,
        "mkldnn_bf16_supported": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()),
    }


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def judge(name: str, value, quick: bool) -> str:
    if value is None:
        return "ERROR"
    if name == "frozen_sweep_seconds" and quick:
        return "n/a (quick)"
    op, thr = TARGETS[name]
    ok = {">=": value >= thr, "<=": value <= thr, "<": value < thr}[op]
    return "yes" if ok else "no"


def table(result: dict, quick: bool) -> str:
    rows = []
    for name in TARGETS:
        v = result.get(name)
        op, thr = TARGETS[name]
        if v is None and name not in result.get("expected", []):
            continue  # its section was not run (--only)
        shown = "error" if v is None else (f"{v:.1f} s" if name.endswith("seconds") else f"{v:.3f}")
        rows.append((name, shown, f"{op} {thr:g}" + (" s" if name.endswith("seconds") else ""),
                     judge(name, v, quick)))
    if result.get("frozen_sweep_encode_seconds") is not None:
        rows.append(("  of which encoding (first run)", f"{result['frozen_sweep_encode_seconds']:.1f} s", "-", "info"))
    ms = result.get("mining_scaling")
    if ms:
        for key in sorted(k for k in ms if k.startswith("classes_")):
            lo, hi = ms[key]["growth_sizes"]
            for loss, g in ms[key]["growth"].items():
                rows.append((f"mining {loss} C={key[8:]} t({hi})/t({lo})",
                             f"{g['time_ratio']:.1f}x (mem {g['peak_bytes_ratio']:.0f}x)", "-", "info"))
    bf = result.get("bf16_vs_fp32") or {}
    if "step_speedup" in bf:
        rows.append(("bf16_vs_fp32 step speedup (fp32 time / bf16 time)", f"{bf['step_speedup']:.3f}", "-", "info"))
    fused = (result.get("details") or {}).get("steps", {}).get("fused_adamw_step_speedup")
    if fused is not None:
        rows.append(("what-if: fused AdamW step speedup", f"{fused:.3f}", "-", "info"))
    if "valid_macro_f1_diff" in bf:
        rows.append(("bf16_vs_fp32 valid macro-F1 (bf16 - fp32)", f"{bf['valid_macro_f1_diff']:+.4f}", "-", "info"))
    w = [max(len(r[i]) for r in rows + [("metric", "value", "target", "met")]) for i in range(4)]
    lines = [" | ".join(h.ljust(w[i]) for i, h in enumerate(("metric", "value", "target", "met"))),
             "-+-".join("-" * x for x in w)]
    lines += [" | ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    if quick:
        lines.append("(quick mode: tiny sizes, one thread: the figures are noise; only a full run counts)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: every code path in well under a minute")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default: benchmarks/latest.json; quick.json with --quick; partial.json "
                         "with --only)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice; 1 with --quick)")
    args = ap.parse_args(argv)
    sections = SECTIONS if args.only is None else tuple(s.strip() for s in args.only.split(","))
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    # latest.json only ever holds a complete full run
    out = args.out or HERE / ("quick.json" if args.quick else "partial.json" if args.only else "latest.json")
    # --out replaces only a result file of ours: refused now, not after 14 minutes of measuring.
    check_owned(out, lambda p: json_object(p, "mode", "sections") is not None, "a benchmark result (JSON)")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads must be a positive integer, got {args.threads}")
    # Quick mode checks code paths and should stay light on a busy machine: one thread unless told.
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    if "STUDY_DATA_DIR" not in os.environ:
        log("STUDY_DATA_DIR is not set: data is looked up in data/ (and downloaded if missing)")
    P = QUICK if args.quick else FULL
    seed_everything(0)  # lib's global flags (deterministic algorithms) for every measurement alike
    load_start = os.getloadavg()
    result: dict = {"mode": "quick" if args.quick else "full", "sections": list(sections), "sizes": P,
                    "machine": machine_info(), "loadavg_start": list(load_start), "errors": {}}
    log(f"mode {result['mode']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load_start[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="study-bench-"))
    section_seconds = {}
    try:
        for name in sections:
            t = time.perf_counter()
            log(f"--- {name}")
            try:
                if name == "speedup":
                    r = bench_speedup(P, work)
                    result["speedup_vs_seed"] = r["speedup_vs_seed"]
                    result.setdefault("details", {})["speedup_vs_seed"] = r["details"]
                elif name == "steps":
                    r = bench_steps(P)
                    for k in ("loss_overhead", "step_over_encoder_floor"):
                        result[k] = r[k]
                    result.setdefault("details", {})["steps"] = dict(
                        r["details"], ce_step_over_encoder_floor=r["ce_step_over_encoder_floor"],
                        fused_adamw_step_speedup=r["fused_adamw_step_speedup"])
                    result.setdefault("bf16_vs_fp32", {})["step_speedup"] = r["bf16_step_speedup"]
                elif name == "eval":
                    r = bench_eval(P)
                    result["eval_over_encoder_forward"] = r["eval_over_encoder_forward"]
                    result.setdefault("details", {})["eval"] = r["details"]
                elif name == "sweep":
                    r = bench_sweep(P, work)
                    result["frozen_sweep_seconds"] = r["frozen_sweep_seconds"]
                    result["frozen_sweep_encode_seconds"] = r["frozen_sweep_encode_seconds"]
                    result.setdefault("details", {})["frozen_sweep"] = r["details"]
                elif name == "mining":
                    result["mining_scaling"] = bench_mining(P)["mining_scaling"]
                elif name == "bf16":
                    result.setdefault("bf16_vs_fp32", {}).update(bench_bf16(P, work))
            except Exception as e:  # record, keep going: the other figures are still worth having
                result["errors"][name] = f"{type(e).__name__}: {e}"
                log(f"{name} FAILED: {type(e).__name__}: {e}")
            section_seconds[name] = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["section_seconds"] = section_seconds
    result["total_seconds"] = time.perf_counter() - T0
    result["loadavg_end"] = list(os.getloadavg())
    result["targets"] = {k: f"{op} {thr:g}" for k, (op, thr) in TARGETS.items()}
    result["expected"] = [k for s in sections for k in SECTION_TARGETS.get(s, [])]
    result["met"] = {k: judge(k, result.get(k), args.quick) for k in result["expected"]}
    write_json_atomic(out, result)
    print(table(result, args.quick))
    print(f"\nwrote {out} in {result['total_seconds']:.1f} s ({result['mode']} mode)")
    if result["errors"]:
        print("errors: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
