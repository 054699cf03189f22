"""The experiment configuration: one validated dataclass, saved with every run."""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields

from lib.model.losses.spec import format_loss_spec, parse_loss_spec


# The loss-free reference methods (lib.training.baselines trains them): the one list of their names.
BASELINE_METHODS = ("tfidf-lr", "encoder-lr")


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the parameter."""
    exit_status = 2  # bad input: see lib.entrypoint


def _f(default, help: str, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class ExperimentConfig:
    dataset: str = _f("ed6", "data set name (ko6, ed6, ed32, goemo27) or a path to a CSV file")
    encoder: str | None = _f(None, "encoder: minilm, me5-small, a Hugging Face id or a local folder "
                                   "(default: me5-small for Korean data, minilm otherwise)")
    method: str = _f("finetune", "finetune (train the model with --loss), or a loss-free baseline: tfidf-lr "
                                 "(TF-IDF + logistic regression) or encoder-lr (frozen encoder + logistic regression)",
                     ("finetune", "tfidf-lr", "encoder-lr"))
    loss: str = _f("ce", "loss: ce, triplet, arcface, supcon, combined (= ce=0.15+triplet=0.4+arcface=0.45) "
                         "or a weighted sum such as ce=0.5+supcon=0.5")
    seed: int = _f(0, "random seed for weights of the heads, data order and dropout")
    epochs: int = _f(3, "training epochs")
    batch_size: int = _f(32, "sentences per training batch")
    eval_batch_size: int = _f(128, "sentences per evaluation batch")
    encoder_lr: float = _f(3e-5, "learning rate of the encoder")
    head_lr: float = _f(1e-3, "learning rate of the embedding head, classifier and ArcFace centres")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    warmup_ratio: float = _f(0.1, "fraction of training steps with linear learning-rate warm-up")
    grad_clip: float = _f(1.0, "clip the gradient norm to this value (0 = no clipping)")
    max_length: int = _f(128, "maximum tokens per sentence (longer ones are truncated and counted)")
    freeze_encoder: bool = _f(False, "freeze the encoder and train only the heads on cached encoder outputs "
                                     "(the seed study's 'version 4')")
    freeze_word_embeddings: bool | None = _f(None, "freeze the word-embedding matrix (default: yes for me5-small, "
                                                   "whose 250k-token matrix doubles step time)")
    embed_dim: int = _f(128, "size of the embedding head's output")
    dropout: float = _f(0.3, "dropout after the embedding head")
    triplet_margin: float = _f(0.3, "triplet loss margin")
    triplet_mining: str = _f("all", "triplet mining: all valid triplets, semihard, or hard (batch-hard: each "
                                    "anchor's farthest positive and nearest negative)", ("all", "semihard", "hard"))
    triplet_distance: str = _f("euclidean", "distance used by the triplet loss (euclidean works on the "
                                            "un-normalised embeddings; the centroid/kNN rules use cosine)",
                               ("euclidean", "cosine"))
    arcface_margin: float = _f(0.5, "ArcFace additive angular margin in radians (0.5 rad = 28.6 degrees)")
    arcface_scale: float = _f(8.0, "ArcFace scale s (the seed study used 8)")
    supcon_temperature: float = _f(0.1, "supervised contrastive loss temperature")
    sampler: str = _f("random", "batch sampler: random (length-grouped) or balanced (P classes x K examples)",
                      ("random", "balanced"))
    samples_per_class: int = _f(4, "K of the balanced sampler (P = batch_size // K classes per batch)")
    max_train_samples: int | None = _f(None, "use at most this many training sentences (stratified)")
    max_eval_samples: int | None = _f(None, "use at most this many validation and test sentences (for smoke runs)")
    drop_cross_split_duplicates: bool = _f(False, "drop valid/test texts that also occur in an earlier split")
    patience: int | None = _f(None, "stop after this many epochs without a better validation macro-F1")
    knn_k: int = _f(10, "neighbours of the k-nearest-neighbour prediction rule")
    device: str = _f("auto", "auto (GPU when present), cpu, cuda, cuda:1, ...")
    bf16: bool = _f(False, "bfloat16 autocast for the encoder (losses and ArcFace centres stay fp32)")
    num_threads: int | None = _f(None, "CPU threads for torch (default: all cores)")
    text_column: str = _f("text", "text column of a CSV data set")
    label_column: str = _f("label", "label column of a CSV data set")
    empty_texts: str = _f("drop", "empty texts in a CSV data set: drop them (counted) or refuse the file",
                          ("drop", "error"))

    def loss_weights(self) -> dict[str, float]:
        return parse_loss_spec(self.loss)

    def validate(self) -> "ExperimentConfig":
        """Raise ConfigError naming the first bad parameter; normalise the loss spelling."""
        positive_int = ["epochs", "batch_size", "eval_batch_size", "max_length", "embed_dim", "knn_k",
                        "samples_per_class"]
        for name in positive_int:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        for name in ("max_train_samples", "max_eval_samples", "patience", "num_threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ConfigError(f"{name} must be a positive integer or unset, got {v!r}")
        for name in ("encoder_lr", "head_lr", "triplet_margin", "arcface_scale", "supcon_temperature"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        for name, lo, hi in (("weight_decay", 0, 1), ("warmup_ratio", 0, 1), ("dropout", 0, 1)):
            v = getattr(self, name)
            if not lo <= v < hi:
                raise ConfigError(f"{name} must be in [{lo}, {hi}), got {v!r}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip!r}")
        if not 0 <= self.arcface_margin < math.pi / 2:
            raise ConfigError(f"arcface_margin is in radians and must be in [0, pi/2), got {self.arcface_margin!r}"
                              + (" (did you give degrees?)" if self.arcface_margin >= math.pi / 2 else ""))
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        try:
            weights = parse_loss_spec(self.loss)
        except ValueError as e:
            raise ConfigError(f"loss: {e}") from None
        self.loss = format_loss_spec(weights)
        needs_pairs = any(k in weights for k in ("triplet", "supcon"))
        if needs_pairs and self.batch_size < 3:
            raise ConfigError(f"batch_size {self.batch_size} cannot form a triplet or a positive pair; use at least 3 "
                              "(better: 16 or more, or --sampler balanced)")
        if self.sampler == "balanced" and self.batch_size // self.samples_per_class < 2:
            raise ConfigError(f"sampler balanced needs batch_size >= 2 * samples_per_class "
                              f"({self.batch_size} < 2 * {self.samples_per_class})")
        if self.sampler == "balanced" and self.samples_per_class < 2 and needs_pairs:
            raise ConfigError("samples_per_class must be >= 2 for triplet or supcon losses (a positive pair)")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**d)


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind):
    def parse(text: str):
        return None if text.strip().lower() in ("none", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per config field, its help taken from the field."""
    defaults = ExperimentConfig()
    for f in fields(ExperimentConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = f.type if isinstance(f.type, type) else str(f.type)
        help_text = f"{f.metadata['help']} (default: {default})"
        if "bool" in str(kind):
            parse = _optional(_parse_bool) if "None" in str(kind) else _parse_bool
            parser.add_argument(flag, dest=f.name, type=parse, nargs="?", const=True, default=default,
                                metavar="BOOL", help=help_text)
        elif "int" in str(kind):
            parser.add_argument(flag, dest=f.name, type=_optional(int) if "None" in str(kind) else int,
                                default=default, help=help_text)
        elif "float" in str(kind):
            parser.add_argument(flag, dest=f.name, type=float, default=default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=str, default=default, choices=f.metadata.get("choices"),
                                help=help_text)


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(**{f.name: getattr(args, f.name) for f in fields(ExperimentConfig)})
