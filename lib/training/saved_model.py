"""A trained model kept with its run (``<run>/model/``) and used again on new sentences.

Layout, all readable offline::

    model/model.json          class names, the run's config, the encoder's query prefix, pooling and
                              max_length, the prediction rules the run has and its a-priori rule, and the
                              commit and package versions it was trained with (``trained_with``)
    model/encoder/            the encoder and its tokenizer in Hugging Face format (save_pretrained);
                              a frozen-encoder run keeps it too: new sentences need it
    model/heads.safetensors   embedding head and classifier (``head.*``, ``classifier.*``), the training
                              class centroids (``centroids``), the training embeddings and labels
                              (``train_embeddings`` float32, ``train_labels``) that the kNN rule votes with,
                              and the state of each loss part that has a rule of its own
                              (``loss.arcface.centres``: ArcFace's nearest-centre rule)

Prediction tokenises, batches and pools exactly as the run scored its test split (lib.training.train
``embed``), so the saved model gives the run's own predictions for the run's test sentences: given the
whole test split (batches are formed by length over the input), on the same kind of device and numeric
mode (bf16 as the run), with this repository at a compatible commit; elsewhere they can differ by
rounding, which may flip a near-tie.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lib.evaluation.evaluate import RULES, centroid_predict, class_centroids, knn_predict
from lib.model import encoders
from lib.model.losses import build_loss, enabled_rules
from lib.model.network import EmotionModel
from lib.training.batching import tokenize
from lib.training.config import ExperimentConfig
from lib.training.results import environment_info, write_json
from lib.training.rules import apriori_rule

MODEL_DIR = "model"
INFO_FILE = "model.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"
FORMAT = "emotion-study-model"
VERSION = 1
PROB_PREFIX = "prob_"


class SavedModelError(ValueError):
    """A saved model cannot be found, read or used as asked; the message names the folder or the rule."""
    exit_status = 2  # bad input: see lib.entrypoint


def has_saved_model(run: str | Path) -> bool:
    return (Path(run) / MODEL_DIR / INFO_FILE).is_file()


def save_run_model(folder: Path, cfg: ExperimentConfig, prep, model: EmotionModel, loss_fn, train_emb: torch.Tensor,
                   rules: list[str], primary_rule: str, best_epoch: int) -> None:
    """Write ``folder`` (inside the run's ``.partial`` folder, published with the run or not at all).

    ``prep`` is the run's ``Prepared``: its encoder (the trained one, or the frozen pretrained one),
    tokenizer, spec and data; ``model`` holds the best epoch's heads; ``train_emb`` the training
    embeddings of that model, in the training split's order."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    encoder_dir = folder / ENCODER_DIR
    prep.encoder.save_pretrained(encoder_dir, safe_serialization=True)
    prep.tokenizer.save_pretrained(encoder_dir)
    train_y = np.asarray(prep.tokens["train"].labels, dtype=np.int64)
    num_classes = prep.bundle.num_classes
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
               if not k.startswith("encoder.")}
    tensors["centroids"] = class_centroids(train_emb, train_y, num_classes).contiguous()
    tensors["train_embeddings"] = train_emb.detach().float().cpu().contiguous()
    tensors["train_labels"] = torch.tensor(train_y)
    # rule -> the loss part whose logits(embeddings) predicts it (ArcFace's centres), as predict_all does
    rule_parts = {r: part for r, part in enabled_rules(loss_fn.weights).items() if r != "head" and r in rules}
    for part in sorted(set(rule_parts.values())):
        for k, v in loss_fn.parts[part].state_dict().items():
            tensors[f"loss.{part}.{k}"] = v.detach().cpu().contiguous()
    save_file(tensors, str(folder / HEADS_FILE))
    config = cfg.to_dict()
    config["encoder"] = prep.encoder_name
    info = {
        "format": FORMAT, "version": VERSION, "class_names": list(prep.bundle.class_names), "config": config,
        "encoder": {"name": prep.encoder_name, "query_prefix": prep.spec.query_prefix, "pooling": "mean",
                    "max_length": cfg.max_length, "hidden_size": int(prep.encoder.config.hidden_size),
                    "frozen": bool(cfg.freeze_encoder)},
        "rules": list(rules), "rule_parts": rule_parts, "primary_rule": primary_rule, "best_epoch": best_epoch,
        "train_embeddings": {"dtype": "float32", "rows": int(train_emb.shape[0])},
        # the code that can read it back: a model outlives its run folder (the run's environment.json)
        "trained_with": {k: v for k, v in environment_info().items() if k in ("git", "packages", "python")},
    }
    write_json(folder / INFO_FILE, info)


def model_folder(path: str | Path) -> Path:
    """The model folder of ``path``: a run folder (its ``model/``) or the model folder itself."""
    path = Path(path)
    for folder in (path / MODEL_DIR, path):
        if (folder / INFO_FILE).is_file():
            return folder
    if not path.is_dir():
        raise SavedModelError(f"{path}: no such folder (give a run folder trained with --save-model, or its model/)")
    raise SavedModelError(f"{path} holds no saved model ({MODEL_DIR}/{INFO_FILE}): train with "
                          "python -m lib.run --save-model (notebooks: SAVE_MODEL = True)")


def read_info(path: str | Path) -> tuple[Path, dict]:
    """(model folder, model.json) without loading any weights: cheap checks before the slow load."""
    folder = model_folder(path)
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SavedModelError(f"{folder / INFO_FILE} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise SavedModelError(f"{folder / INFO_FILE} is not a model file of this program")
    if info.get("version") != VERSION:
        raise SavedModelError(f"{folder / INFO_FILE} has format version {info.get('version')!r}; this program "
                              f"reads version {VERSION}")
    if info["encoder"].get("pooling") != "mean":
        raise SavedModelError(f"{folder}: pooling {info['encoder'].get('pooling')!r} is not supported (mean only)")
    return folder, info


ALL_RULES = "all"  # predict with every rule the model has: one label column per rule


def check_rule(info: dict, rule: str | None, where: Path | str = "the model") -> str:
    """The rule to predict with: the run's a-priori rule by default (as model.json records it, so that a
    model of a loss not registered here still loads), or ``all``; a rule the model lacks is refused."""
    cfg = info["config"]
    if rule == ALL_RULES:
        return rule
    chosen = rule or info.get("primary_rule") or apriori_rule(cfg.get("method", "finetune"), cfg["loss"])
    if chosen not in info["rules"]:
        why = f"its loss {cfg['loss']} trained no {chosen} rule" if chosen in RULES else "no such rule"
        raise SavedModelError(f"rule {chosen!r}: {where} has only {', '.join(info['rules'])} ({why}; "
                              f"{ALL_RULES!r} predicts with every one)")
    return chosen


def label_columns(rule: str, rules) -> list[str]:
    """The columns ``predict`` names its labels: predicted_label and predicted_index for one rule;
    predicted_label_<rule> and predicted_index_<rule> for each of ``rules`` with ``all``."""
    if rule != ALL_RULES:
        return ["predicted_label", "predicted_index"]
    return [f"predicted_{kind}_{r}" for r in rules for kind in ("label", "index")]


class SavedModel:
    """A loaded model: ``predict(texts, rule=None)`` and ``embed(texts)``."""

    def __init__(self, folder: Path, info: dict, device: str = "auto"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        self.folder, self.info = folder, info
        self.config = ExperimentConfig.from_dict(info["config"])
        self.class_names = list(info["class_names"])
        self.rules = list(info["rules"])
        self.primary_rule = check_rule(info, None, folder)
        self.query_prefix = info["encoder"]["query_prefix"]
        self.max_length = int(info["encoder"]["max_length"])
        from lib.training.train import pick_device  # train imports this module

        # as training picks it: a bf16 model on a GPU without bfloat16 is refused, on such a CPU it warns
        self.device = pick_device(device, self.config.bf16)
        if not (folder / ENCODER_DIR).is_dir():  # never a hub id: a relative "model/encoder" would look like one
            raise SavedModelError(f"{folder / ENCODER_DIR} is missing: the model folder is incomplete (copy the "
                                  f"whole {MODEL_DIR}/ folder)")
        # the saved folder is named "encoder": its spec's prefix is ignored, the run's is in model.json
        _, self.tokenizer, encoder = encoders.load(str((folder / ENCODER_DIR).resolve()))
        try:
            tensors = load_file(str(folder / HEADS_FILE))
        except (OSError, SafetensorError) as e:
            raise SavedModelError(f"{folder / HEADS_FILE} cannot be read ({e})") from None
        C, cfg = len(self.class_names), self.config
        self.rule_parts = dict(info.get("rule_parts", {}))
        try:
            with torch.random.fork_rng(devices=[]):  # initial weights are replaced: the caller's random stream stays
                self.model = EmotionModel(encoder, int(info["encoder"]["hidden_size"]), C, cfg.embed_dim, cfg.dropout)
                self.loss_fn = (build_loss(cfg.loss_weights(), C, cfg.embed_dim, **cfg.loss_parameter_values())
                                if self.rule_parts else None)
        except ValueError as e:  # e.g. a loss registered where the model was trained, not here
            raise SavedModelError(f"{folder}: cannot rebuild the loss {cfg.loss} ({e})") from None
        heads = {k: v for k, v in tensors.items() if k.startswith(("head.", "classifier."))}
        try:
            missing = self.model.load_state_dict(heads, strict=False).missing_keys
            if [k for k in missing if not k.startswith("encoder.")]:
                raise RuntimeError(f"missing {missing}")
            for part in sorted(set(self.rule_parts.values())):
                prefix = f"loss.{part}."
                self.loss_fn.parts[part].load_state_dict(
                    {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            self.centroids = tensors["centroids"]
            self.train_embeddings, self.train_labels = tensors["train_embeddings"], tensors["train_labels"].numpy()
        except (KeyError, RuntimeError) as e:
            raise SavedModelError(f"{folder / HEADS_FILE} does not fit {folder / INFO_FILE} ({e})") from None
        self.truncated = 0  # of the last predict or embed call
        self.model.to(self.device).eval()
        if self.loss_fn is not None:
            self.loss_fn.eval()

    def _run(self, texts) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and logits, computed as the run computed its test split's (same tokens and batches)."""
        from lib.training.train import Inputs, embed  # the run's own code path (train imports this module)

        texts = checked_texts(texts)
        if not texts:
            return torch.empty(0, self.config.embed_dim), torch.empty(0, len(self.class_names))
        tokens = tokenize(self.tokenizer, texts, np.zeros(len(texts), dtype=np.int64), self.max_length,
                          self.query_prefix, cache=False)
        self.truncated = tokens.truncated  # sentences cut to max_length tokens, as training cut its own
        return embed(self.model, Inputs(tokens), self.config, self.device)

    def embed(self, texts) -> np.ndarray:
        """The embedding of each text (float32, n x embed_dim), in input order."""
        return self._run(texts)[0].numpy().astype(np.float32)

    def predict(self, texts, rule: str | None = None, with_embeddings: bool = False):
        """One row per text: ``text``, ``predicted_label`` (class name), ``predicted_index``, and
        ``prob_<class>`` (softmax of the classifier) where the run trained a head. ``rule="all"``: a
        ``predicted_label_<rule>`` and ``predicted_index_<rule>`` for every rule the model has instead (one
        forward pass). With ``with_embeddings``: (frame, embeddings)."""
        rule = check_rule(self.info, rule, self.folder)
        texts = checked_texts(texts)
        emb, logits = self._run(texts)
        frame = pd.DataFrame({"text": texts})
        for r in (self.rules if rule == ALL_RULES else [rule]):
            index = self._indices(r, emb, logits)
            label, number = label_columns(rule, [r])
            frame[label] = [self.class_names[i] for i in index]
            frame[number] = index
        if "head" in self.rules:
            probs = torch.softmax(logits, 1).numpy()
            for j, name in enumerate(self.class_names):
                frame[f"{PROB_PREFIX}{name}"] = probs[:, j]
        if with_embeddings:
            return frame, emb.numpy().astype(np.float32)
        return frame

    def _indices(self, rule: str, emb: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
        """The class index each embedding gets by ``rule``, as lib.training.train.predict_all computes it."""
        if rule == "head":
            index = logits.argmax(1).numpy()
        elif rule == "centroid":
            index = centroid_predict(self.centroids, emb)
        elif rule == "knn":
            index = knn_predict(self.train_embeddings, self.train_labels, emb, self.config.knn_k,
                                len(self.class_names))
        else:  # a loss part's own rule, e.g. ArcFace's nearest centre
            with torch.no_grad():
                index = self.loss_fn.parts[self.rule_parts[rule]].logits(emb).argmax(1).numpy()
        return np.asarray(index, dtype=np.int64)


def checked_texts(texts) -> list[str]:
    """The sentences, stripped as the data sets strip them; one string (not a list of them), a value that is
    not a string (a CSV's missing cell) or an empty sentence is refused, naming its position."""
    if isinstance(texts, str):
        raise SavedModelError("texts: give a list of sentences, not one string (it would be labelled letter by "
                              "letter)")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise SavedModelError(f"text {i}: {text!r} is not a string")
        if not text.strip():
            raise SavedModelError(f"text {i} is empty")
        out.append(text.strip())
    return out


def load_model(path: str | Path, device: str = "auto") -> SavedModel:
    """Load the model saved in a run folder (or in its ``model/`` folder), offline."""
    folder, info = read_info(path)
    return SavedModel(folder, info, device)
