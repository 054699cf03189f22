"""Run one experiment from an :class:`ExperimentConfig`: train, select on validation, test once."""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lib.training.progress import progress  # a bar on a terminal, a line per tenth of an epoch in a log

from lib.model import encoders
from lib.training.baselines import run_baseline
from lib.training.batching import TokenizedSplit, balanced_batches, collate, length_grouped_batches, sequential_batches, tokenize
from lib.training.config import ConfigError, ExperimentConfig
from lib.data.datasets import LANGUAGE, NAMED, DataBundle, load_dataset, subsample
from lib.evaluation.evaluate import (RULES, class_centroids, centroid_predict, classification_metrics, expected_calibration_error,
                       knn_predict, retrieval_metrics, silhouette_cosine)
from lib.training.features import pooled_features
from lib.training import out_of_domain  # the out-of-domain test sets of config ood
from lib.data.leakage import drop_cross_split_duplicates, leakage_report
from lib.data.resplit import resplit
from lib.model.losses import build_loss, enabled_rules, loss_rules
from lib.model.network import EmotionModel, freeze, freeze_word_embeddings
from lib.training.rules import apriori_rule
from lib.training.results import (RunDir, check_writable, cpu_info, device_info, environment_info, hardware_of, run_target,
                                  write_csv, write_json, write_npy)
from lib.training import checkpoint
from lib.training.seeding import rng_state, seed_everything, set_rng_state


class NonFiniteLossError(FloatingPointError):
    """A loss part became NaN or infinite during training."""


SLOW_CPU_BF16 = ("DEFAULT", "AVX2", "NO AVX")  # torch's CPU kernels without AVX512: bf16 is emulated
_warned_slow_bf16 = False


def slow_bf16_warning(capability: str) -> str | None:
    """What to tell a user whose CPU emulates bfloat16 (None where it does not). On an AVX2 CPU (AMD EPYC, 2
    threads) one 512x384 @ 384x1536 matmul took 632 ms under bf16 autocast against 20 ms in fp32; fine-tuning
    ran slower by the same order. AVX512 CPUs ran bf16 1.3-1.45x faster than fp32 (PROTOCOL.md amendment 1)."""
    if capability not in SLOW_CPU_BF16:
        return None
    return (f"bf16 autocast on this CPU (torch capability {capability}, no AVX512) is emulated: about 30x slower "
            "than fp32 here. Set BF16 = False (notebooks; run_all.sh --set BF16=False) or --bf16 false (lib.run) "
            "unless you need bf16's numbers (PROTOCOL.md, pilot P1: on one ed6 seed per loss, bf16 - fp32 validation "
            "macro-F1 was +0.0020 for CE and +0.0045 for the combined loss)")


def pick_device(name: str, bf16: bool = False) -> torch.device:
    global _warned_slow_bf16
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name}: torch sees no CUDA GPU here (torch {torch.__version__}); use --device "
                          "cpu or auto")
    if bf16 and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        # Pre-Ampere GPUs (V100, T4) have no bfloat16 units (torch would emulate it, slowly): say so.
        raise ConfigError(f"bf16 autocast needs a GPU with bfloat16 support; {torch.cuda.get_device_name(device)} "
                          "has none: set BF16 = False (notebooks) or drop --bf16 (lib.run)")
    if bf16 and device.type == "cpu" and not _warned_slow_bf16:
        # Not refused: the run is right, only slow, and a published study's bf16 numbers may be what is wanted.
        message = slow_bf16_warning(torch.backends.cpu.get_cpu_capability())
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            _warned_slow_bf16 = True
    return device


def default_encoder(cfg: ExperimentConfig) -> str:
    return cfg.encoder or encoders.DEFAULT_FOR_LANGUAGE.get(LANGUAGE.get(cfg.dataset, "en"), "minilm")


def prepare_data(cfg: ExperimentConfig, validation_only: bool = False) -> DataBundle:
    if cfg.dataset in NAMED:
        bundle = load_dataset(cfg.dataset)
    else:  # a user's file: one fixed split for every seed, so seeds and methods stay comparable
        bundle = load_dataset(cfg.dataset, seed=0, text_column=cfg.text_column, label_column=cfg.label_column,
                              empty_texts=cfg.empty_texts)
    # Tuning (lib.study.tuning) replaces the test split, unread, before anything uses it; a redraw
    # (resplit) pools it with training first, so there it goes once this seed's test set is drawn.
    if validation_only and not cfg.resplit:
        bundle.test = bundle.train.iloc[:0]
    # On the data set's own split, before any redraw: with resplit too every seed then keeps the same
    # validation sentences (dropped after a redraw, they would depend on the seed's training set).
    if cfg.drop_cross_split_duplicates:
        bundle = drop_cross_split_duplicates(bundle)
    if cfg.resplit:  # before anything else reads the splits: this seed's own test set (lib/data/resplit.py)
        bundle = resplit(bundle, cfg.seed)
    if validation_only:
        bundle.test = bundle.train.iloc[:0]
    # Fixed subsamples (random_state 0), so every seed and method sees the same sentences and
    # paired comparisons stay paired; the seed varies initialisation and data order only.
    bundle.train = subsample(bundle.train, cfg.max_train_samples, 0)
    bundle.valid = subsample(bundle.valid, cfg.max_eval_samples, 0)
    bundle.test = subsample(bundle.test, cfg.max_eval_samples, 0)
    return bundle


@dataclass
class Inputs:
    """A split as the model sees it: token ids, or cached pooled vectors when frozen."""
    tokens: TokenizedSplit
    pooled: torch.Tensor | None = None

    @property
    def labels(self) -> np.ndarray:
        return self.tokens.labels


def _batch_to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _forward(model: EmotionModel, inputs: Inputs, index: np.ndarray, device: torch.device, bf16: bool):
    if inputs.pooled is not None:
        return model(pooled=inputs.pooled[index].to(device, non_blocking=True))
    b = _batch_to(collate(inputs.tokens, index), device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):  # the encoder only
        pooled = model.pool(b["input_ids"], b["attention_mask"])
    return model(pooled=pooled.float())


@torch.no_grad()
def embed(model: EmotionModel, inputs: Inputs, cfg: ExperimentConfig, device: torch.device):
    """Embeddings and logits of a whole split in eval mode, in the split's order."""
    model.eval()
    n = len(inputs.tokens)
    emb = torch.empty(n, cfg.embed_dim)
    logits = torch.empty(n, model.classifier.out_features)
    for index in sequential_batches(n, cfg.eval_batch_size, inputs.tokens.lengths):
        out = _forward(model, inputs, index, device, cfg.bf16)
        emb[index] = out["embeddings"].float().cpu()
        logits[index] = out["logits"].float().cpu()
    return emb, logits


def predict_all(model, loss_fn, train_emb, train_y, emb, logits, cfg, num_classes, rules):
    preds = {}
    if "head" in rules:
        preds["head"] = logits.argmax(1).numpy()
    if "centroid" in rules:
        preds["centroid"] = centroid_predict(class_centroids(train_emb, train_y, num_classes), emb)
    if "knn" in rules:
        preds["knn"] = knn_predict(train_emb, train_y, emb, cfg.knn_k, num_classes)
    parts = enabled_rules(loss_fn.weights)  # rule -> the loss part whose logits(embeddings) predicts it
    for r in rules:
        if r in parts and r != "head":  # e.g. ArcFace's nearest centre
            with torch.no_grad():
                part = loss_fn.parts[parts[r]]  # embeddings come back on the CPU; its centres may be on a GPU
                device = next(part.parameters(), emb).device
                preds[r] = part.logits(emb.to(device)).argmax(1).cpu().numpy()
    return preds


def build_optimizer(model: EmotionModel, loss_fn, cfg: ExperimentConfig, steps: int):
    enc = [p for p in (model.encoder.parameters() if model.encoder is not None else []) if p.requires_grad]
    # The loss's own parameters (ArcFace centres) are trained with the heads: the seed study never did.
    heads = model.head_parameters() + list(loss_fn.parameters())
    groups = [{"params": heads, "lr": cfg.head_lr}]
    if enc:
        groups.insert(0, {"params": enc, "lr": cfg.encoder_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    warm = int(round(cfg.warmup_ratio * steps))

    def schedule(step):
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (steps - step) / max(1, steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


@dataclass
class Prepared:
    """Everything loaded before training: bad input fails here, before any file is written."""
    bundle: DataBundle
    encoder_name: str | None
    spec: encoders.EncoderSpec | None
    encoder: torch.nn.Module | None
    tokens: dict
    load_seconds: float
    tokenizer: object = None  # kept for a saved model (--save-model)
    ood: tuple = ()  # out-of-domain sets (config ood); their tokens are tokens['ood:<name>']


def prepare(cfg: ExperimentConfig, validation_only: bool = False) -> Prepared:
    t0 = time.perf_counter()
    bundle = prepare_data(cfg, validation_only)
    ood = out_of_domain.load_sets(cfg, bundle)  # a bad out-of-domain file fails here, before the encoder loads
    if cfg.method == "tfidf-lr":  # needs no encoder
        return Prepared(bundle, None, None, None, {}, time.perf_counter() - t0, ood=tuple(ood))
    encoder_name = default_encoder(cfg)
    spec, tokenizer, encoder = encoders.load(encoder_name)
    limit = getattr(encoder.config, "max_position_embeddings", None)
    if limit is not None and cfg.max_length > limit:
        from lib.training.config import ConfigError
        raise ConfigError(f"max_length {cfg.max_length} exceeds what encoder {encoder_name!r} accepts ({limit})")
    tokens = {s: tokenize(tokenizer, bundle.split(s)["text"].tolist(), bundle.split(s)["label"].to_numpy(),
                          cfg.max_length, spec.query_prefix)
              for s in ("train", "valid") + (() if validation_only else ("test",))}
    tokens.update(out_of_domain.tokenize_sets(ood, tokenizer, cfg, spec.query_prefix))
    return Prepared(bundle, encoder_name, spec, encoder, tokens, time.perf_counter() - t0, tokenizer, ood=tuple(ood))


def run_experiment(cfg: ExperimentConfig, out: str | Path, quiet: bool = False, save_model: bool = False, *,
                   on_epoch=None, validation_only: bool = False, resume: bool = False) -> dict:
    """Train and evaluate one configuration; write a complete run folder at ``out`` (with ``save_model``,
    also ``model/``: the trained model, lib.training.saved_model). With ``resume``, the run keeps its
    state after every epoch in ``<out>.resume/`` and, started again after a kill, goes on from there
    (lib/training/checkpoint.py); the folder is deleted once the run folder is published.

    Order matters for users: the config is validated, the results folder checked for
    writing, data and encoder loaded, and only then is anything written.
    """
    cfg = copy.deepcopy(cfg).validate()
    if save_model and cfg.method != "finetune":
        raise ConfigError(f"--save-model keeps a fine-tuned model; method {cfg.method} trains none")
    # lib.study.tuning: on_epoch(epoch, valid macro-F1, best so far) after each epoch; validation_only:
    # the test split is dropped before tokenising, never scored, and the run folder has no predictions
    if validation_only and cfg.method != "finetune":
        raise ConfigError(f"validation_only runs train a model; method {cfg.method} trains none")
    if validation_only and cfg.ood:  # a tuning record holds no held-out score, out-of-domain ones included
        raise ConfigError(f"validation_only runs score no held-out set; ood {cfg.ood!r} would be scored")
    check_writable(Path(out))
    if resume:
        checkpoint.check(run_target(out))
    prepared = prepare(cfg, validation_only)
    run = RunDir(out)
    try:
        if cfg.method == "finetune":
            metrics = _run(cfg, prepared, run, quiet, save_model, on_epoch, resume)
        else:
            metrics, test_emb, predictions = run_baseline(cfg, prepared, run)
            metrics.update(encoder=prepared.encoder_name, data=_data_info(prepared))
            _write_run(run, cfg, prepared, metrics, test_emb, predictions, history=None, device=torch.device("cpu"))
    except BaseException as e:
        run.fail(e)
        raise
    run.commit()
    if resume:
        checkpoint.remove(run.final)
    return metrics


def _run(cfg: ExperimentConfig, prep: Prepared, run: RunDir, quiet: bool, save_model: bool = False,
         on_epoch=None, resume: bool = False) -> dict:
    timings = {"load_seconds": prep.load_seconds}
    t0 = time.perf_counter() - prep.load_seconds
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked tokenizer threads fight with torch's
    device = pick_device(cfg.device, cfg.bf16)
    gen = seed_everything(cfg.seed)  # after loading, so head weights depend on the seed alone
    weights = cfg.loss_weights()
    bundle, tokens, encoder, encoder_name = prep.bundle, prep.tokens, prep.encoder, prep.encoder_name
    C = bundle.num_classes
    freeze_we = prep.spec.freeze_word_embeddings if cfg.freeze_word_embeddings is None else cfg.freeze_word_embeddings

    hidden = encoder.config.hidden_size
    model = EmotionModel(encoder, hidden, C, cfg.embed_dim, cfg.dropout)
    loss_fn = build_loss(weights, C, cfg.embed_dim, **cfg.loss_parameter_values())
    model.to(device)
    loss_fn.to(device)
    inputs = {s: Inputs(tokens[s]) for s in tokens}
    if cfg.freeze_encoder:
        freeze(encoder)
        t = time.perf_counter()
        for s in inputs:
            inputs[s].pooled = pooled_features(model, encoder_name, tokens[s], cfg, device)
        timings["encode_seconds"] = time.perf_counter() - t
        model.encoder = None  # heads train on cached vectors
    elif freeze_we:
        freeze_word_embeddings(encoder)

    n_train = len(tokens["train"])
    lengths = tokens["train"].lengths

    def epoch_batches():
        if cfg.sampler == "balanced":
            return balanced_batches(tokens["train"].labels, cfg.batch_size, cfg.samples_per_class, gen)
        return length_grouped_batches(lengths, cfg.batch_size, gen)

    steps_per_epoch = len(epoch_batches()) if cfg.sampler == "balanced" else math.ceil(n_train / cfg.batch_size)
    gen.manual_seed(cfg.seed)  # the count above drew from the generator; restart it
    optimizer, scheduler = build_optimizer(model, loss_fn, cfg, steps_per_epoch * cfg.epochs)
    rule = apriori_rule(cfg.method, cfg.loss)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]

    history, best = [], {"score": -1.0, "epoch": 0, "state": None}
    stale, first, trained = 0, 1, []  # trained: where the epochs before each kill were trained (a resumed run)
    if resume:
        identity = checkpoint.identity(cfg, device.type)
        here = {"hardware": hardware_of({"device": device_info(device), "cpu": cpu_info()})}
        saved = checkpoint.load(run.final, identity)
        if saved is not None:
            _restore(model, loss_fn, saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            gen.set_state(saved["generator"])
            set_rng_state(saved["rng"])
            history, best, stale, first = saved["history"], saved["best"], saved["stale"], saved["epoch"] + 1
            trained = saved["trained_in_parts"]
            timings["resumed_after_epoch"] = saved["epoch"]
            if not quiet:
                print(f"resuming after epoch {saved['epoch']} ({checkpoint.folder(run.final)})", flush=True)
    t_train = time.perf_counter()
    for epoch in range(first, cfg.epochs + 1):
        model.train()
        loss_fn.train()
        batches = epoch_batches()
        sums, seen = {}, 0
        t_ep = time.perf_counter()
        bar = progress(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=quiet, unit="batch")
        for step, index in enumerate(bar, 1):
            out = _forward(model, inputs["train"], index, device, cfg.bf16)
            labels = torch.from_numpy(tokens["train"].labels[index]).to(device, non_blocking=True)
            total, parts = loss_fn(out["embeddings"].float(), out["logits"].float(), labels)
            if not torch.isfinite(total):
                bad = [k for k, v in parts.items() if not torch.isfinite(v)] or ["total"]
                raise NonFiniteLossError(f"non-finite loss at epoch {epoch}, step {step}: part(s) {', '.join(bad)}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            seen += len(index)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(index)
            sums["total"] = sums.get("total", 0.0) + float(total.detach()) * len(index)
            if not quiet:
                bar.set_postfix(loss=f"{sums['total'] / seen:.4f}",
                                sent_s=f"{seen / (time.perf_counter() - t_ep):.0f}")
        train_seconds = time.perf_counter() - t_ep
        val = _select_score(model, loss_fn, inputs, cfg, device, C, rule)
        row = {"epoch": epoch, "train_seconds": train_seconds, "sentences_per_second": seen / train_seconds,
               "valid_macro_f1": val, **{f"train_loss_{k}": v / seen for k, v in sums.items()}}
        history.append(row)
        if not quiet:
            print(f"epoch {epoch}: loss {row['train_loss_total']:.4f}  valid macro-F1 ({rule}) {val:.4f}  "
                  f"{row['sentences_per_second']:.0f} sent/s", flush=True)
        if val > best["score"]:
            best = {"score": val, "epoch": epoch, "state": _snapshot(model, loss_fn)}
            stale = 0
        else:
            stale += 1
        run.status(epoch=epoch, epochs=cfg.epochs, patience=cfg.patience, rule=rule, valid_macro_f1=val,
                   best_epoch=best["epoch"], best_valid_macro_f1=best["score"],
                   elapsed_seconds=round(time.perf_counter() - t_train, 1))
        last = epoch == cfg.epochs or (cfg.patience is not None and stale >= cfg.patience)
        if resume and not last:  # everything the next epoch draws on; nothing draws between here and there
            checkpoint.save(run.final, {
                "epoch": epoch, "model": _snapshot(model, loss_fn), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": gen.get_state(), "rng": rng_state(),
                "history": history, "best": best, "stale": stale,
                "trained_in_parts": trained + [{**here, "through_epoch": epoch}]},
                identity, [r["valid_macro_f1"] for r in history])
        if on_epoch is not None:
            on_epoch(epoch, val, best["score"])
        if cfg.patience is not None and stale >= cfg.patience:
            break
    timings["train_seconds"] = time.perf_counter() - t_train

    _restore(model, loss_fn, best["state"])
    t_eval = time.perf_counter()
    # The best epoch's training embeddings, once: the final evaluation, a saved model and the out-of-domain
    # sets all need them (class centroids, kNN).
    train_emb = embed(model, inputs["train"], cfg, device)[0]
    save_seconds = 0.0
    if save_model:  # the best epoch's model, into the .partial run folder: published whole or not at all
        from lib.training.saved_model import save_run_model

        t_save = time.perf_counter()
        save_run_model(run.path("model"), cfg, prep, model, loss_fn, train_emb, run_rules(weights), rule,
                       best["epoch"])
        save_seconds = timings["save_model_seconds"] = time.perf_counter() - t_save
    metrics, test_emb, predictions = _final_evaluation(model, loss_fn, inputs, cfg, device, bundle, weights, rule,
                                                       train_emb)
    if prep.ood:  # once, with the best epoch's model, into ood/<name>/ of the run folder under construction
        metrics["out_of_domain"] = out_of_domain.score_sets(prep.ood, run, model, loss_fn, inputs, cfg, device,
                                                            weights, rule, train_emb)
    timings["eval_seconds"] = time.perf_counter() - t_eval - save_seconds
    timings["total_seconds"] = time.perf_counter() - t0
    metrics.update({
        "best_epoch": best["epoch"], "epochs_run": len(history), "selection": "validation macro-F1 of the a-priori rule",
        "encoder": encoder_name, "device": str(device), "timings": timings, "data": _data_info(prep),
    })
    if trained:  # trained in parts: each part's last epoch and machine (environment.json: the last part's)
        metrics["trained_in_parts"] = trained + [{**here, "through_epoch": len(history)}]
    _write_run(run, cfg, prep, metrics, test_emb, predictions, history, device)
    return metrics


def _data_info(prep: Prepared) -> dict:
    b = prep.bundle
    return {"sizes": b.sizes(), "class_names": b.class_names, "notes": b.notes,
            "truncated": {s: t.truncated for s, t in prep.tokens.items()}}


def _write_run(run: RunDir, cfg: ExperimentConfig, prep: Prepared, metrics: dict, test_emb, predictions, history,
               device: torch.device):
    config = cfg.to_dict()
    config["encoder"] = prep.encoder_name
    write_json(run.path("config.json"), config)
    write_json(run.path("environment.json"), environment_info(device))
    if history is not None:
        write_csv(run.path("history.csv"), pd.DataFrame(history))
    if predictions is not None:  # None: a validation_only run
        order = np.argsort(predictions["id"].to_numpy(), kind="stable")  # rows sorted by id, embeddings alike
        write_csv(run.path("predictions.csv"), predictions.iloc[order].reset_index(drop=True))
    if test_emb is not None:
        write_npy(run.path("test_embeddings.npy"), test_emb.numpy()[order].astype(np.float32))
    write_json(run.path("leakage.json"), leakage_report(prep.bundle))
    write_json(run.path("metrics.json"), metrics)


def _snapshot(model, loss_fn) -> dict:
    """Only what trains: a frozen encoder is never copied."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if k in keep or not k.startswith("encoder.")}
    return {"model": state, "loss": copy.deepcopy(loss_fn.state_dict())}


def _restore(model, loss_fn, state) -> None:
    if state is None:
        return
    model.load_state_dict(state["model"], strict=False)
    loss_fn.load_state_dict(state["loss"])


def run_rules(weights: dict) -> list[str]:
    """Every prediction rule the run trained for: the head only where a loss on logits (cross-entropy)
    trained the classifier (an untrained head is no rule), a loss's own rule (ArcFace's nearest centre)
    only where that loss trained."""
    enabled = enabled_rules(weights)  # the rules a loss part makes possible (lib/model/losses/registry.py)
    return [r for r in RULES if r not in loss_rules() or r in enabled] + [r for r in enabled if r not in RULES]


def _select_score(model, loss_fn, inputs, cfg, device, C, rule) -> float:
    from sklearn.metrics import f1_score

    emb, logits = embed(model, inputs["valid"], cfg, device)
    train_emb = embed(model, inputs["train"], cfg, device)[0] if rule == "centroid" else None
    pred = predict_all(model, loss_fn, train_emb, inputs["train"].labels, emb, logits, cfg, C, [rule])[rule]
    return float(f1_score(inputs["valid"].labels, pred, labels=np.arange(C), average="macro", zero_division=0))


def _final_evaluation(model, loss_fn, inputs, cfg, device, bundle, weights, rule, train_emb):
    """``train_emb``: the training split's embeddings under the same (best epoch's) model."""
    C, names = bundle.num_classes, bundle.class_names
    train_y = inputs["train"].labels
    rules = run_rules(weights)
    metrics = {"primary_rule": rule, "rules": rules, "loss": cfg.loss, "method": cfg.loss}
    test_emb = predictions = None
    for split in [s for s in ("valid", "test") if s in inputs]:  # a validation_only run has no test split
        emb, logits = embed(model, inputs[split], cfg, device)
        y = inputs[split].labels
        preds = predict_all(model, loss_fn, train_emb, train_y, emb, logits, cfg, C, rules)
        metrics[split] = {r: classification_metrics(y, p, names) for r, p in preds.items()}
        probs = torch.softmax(logits, 1).numpy()
        if "head" in preds:
            metrics[split]["head"]["ece"] = expected_calibration_error(probs, y)
        if split == "test":
            test_emb = emb
            ret = retrieval_metrics(emb, y)
            ret["silhouette_cosine"] = silhouette_cosine(emb, y, seed=cfg.seed)
            metrics["embedding_test"] = ret
            frame = pd.DataFrame({"id": bundle.test["id"].to_numpy(), "label": y})
            for r, p in preds.items():
                frame[f"pred_{r}"] = p
            if "head" in preds:
                frame["head_confidence"] = probs.max(1)
            predictions = frame
    if "test" in metrics:
        metrics["test_macro_f1"] = metrics["test"][rule]["macro_f1"]
        metrics["test_accuracy"] = metrics["test"][rule]["accuracy"]
    metrics["valid_macro_f1"] = metrics["valid"][rule]["macro_f1"]
    return metrics, test_emb, predictions
