"""The experiment configuration: one validated dataclass, saved with every run."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field, fields

from lib.model.losses import get_loss, loss_names, loss_parameters, parameter_owner
from lib.model.losses.spec import format_loss_spec, parse_loss_spec


# The loss-free reference methods (lib.training.baselines trains them): the one list of their names.
BASELINE_METHODS = ("tfidf-lr", "encoder-lr")


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the parameter."""
    exit_status = 2  # bad input: see lib.entrypoint


def _f(default, help: str, choices=None):
    return field(default=default, metadata={"help": help, "choices": choices})


def _loss_field(name: str):
    """A built-in loss's parameter, kept as a config field of its own (published configs and command lines
    have it): default, help, choices and check come from its registration in lib/model/losses/. A loss
    added later needs no field: its parameters are ``loss_options``."""
    p = loss_parameters()[name]
    return field(default=p.default, metadata={"help": p.help, "choices": p.choices, "loss_parameter": True})


# Fields added after runs and searches were published, each with the value every run before it had (the
# default it was added with): a saved config.json or search recipe that lacks one reads as that value
# (``from_dict``, lib.study.experiments.experiment_fields, lib.study.tuning). By hand, not the current
# default, so that a default changed later cannot make an old run read as the new behaviour. A field added
# to ExperimentConfig goes here too (tests/test_experiments.py checks the published configs).
ADDED_LATER = {"loss_options": None, "ood": None, "resplit": False}


def is_config_field(name: str) -> bool:
    """Whether ``name`` is a field of ExperimentConfig (a built-in loss's parameter is one; the parameter of a
    loss of one's own is not: it goes into ``loss_options``)."""
    return name in _FIELD_NAMES


def loss_option_names(losses=None) -> list[str]:
    """The parameters of the registered losses ``losses`` (default: every one) that have no config field:
    the names ``loss_options`` accepts, in registration order."""
    return [name for name in loss_parameters(losses) if not is_config_field(name)]


@dataclass
class ExperimentConfig:
    dataset: str = _f("ed6", "data set name (ko6, ed6, ed32, goemo27) or a path to a CSV file")
    encoder: str | None = _f(None, "encoder: minilm, me5-small, a Hugging Face id or a local folder "
                                   "(default: me5-small for Korean data, minilm otherwise)")
    method: str = _f("finetune", "finetune (train the model with --loss), or a loss-free baseline: tfidf-lr "
                                 "(TF-IDF + logistic regression) or encoder-lr (frozen encoder + logistic regression)",
                     ("finetune",) + BASELINE_METHODS)
    loss: str = _f("ce", f"loss: {', '.join(loss_names())}, combined (= ce=0.15+triplet=0.4+arcface=0.45) "
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
    triplet_margin: float = _loss_field("triplet_margin")
    triplet_mining: str = _loss_field("triplet_mining")
    triplet_distance: str = _loss_field("triplet_distance")
    arcface_margin: float = _loss_field("arcface_margin")
    arcface_scale: float = _loss_field("arcface_scale")
    supcon_temperature: float = _loss_field("supcon_temperature")
    # None, not {}: a config.json saved before this field existed reads as None (lib.study.experiments).
    loss_options: dict | None = _f(None, "a parameter of a loss that has no option of its own (one added in "
                                         "lib/model/losses/), as NAME=VALUE; repeat for several. Unset ones take "
                                         "the registered default; the run's config.json lists every value used")
    sampler: str = _f("random", "batch sampler: random (length-grouped) or balanced (P classes x K examples)",
                      ("random", "balanced"))
    samples_per_class: int = _f(4, "K of the balanced sampler (P = batch_size // K classes per batch)")
    max_train_samples: int | None = _f(None, "use at most this many training sentences (stratified)")
    max_eval_samples: int | None = _f(None, "use at most this many validation and test sentences (for smoke runs)")
    drop_cross_split_duplicates: bool = _f(False, "drop valid/test texts that also occur in an earlier split")
    resplit: bool = _f(False, "a test set of this seed's own: validation kept, the test set redrawn (stratified, "
                              "its size, random_state = seed) from the training and test sentences, the rest "
                              "training (lib/data/resplit.py: the test pool grows with the seeds)")
    patience: int | None = _f(None, "stop after this many epochs without a better validation macro-F1")
    knn_k: int = _f(10, "neighbours of the k-nearest-neighbour prediction rule")
    device: str = _f("auto", "auto (GPU when present), cpu, cuda, cuda:1, ...")
    bf16: bool = _f(False, "bfloat16 autocast for the encoder (losses and ArcFace centres stay fp32)")
    num_threads: int | None = _f(None, "CPU threads for torch (default: all cores)")
    text_column: str = _f("text", "text column of a CSV data set")
    label_column: str = _f("label", "label column of a CSV data set")
    empty_texts: str = _f("drop", "empty texts in a CSV data set: drop them (counted) or refuse the file",
                          ("drop", "error"))
    ood: str | None = _f(None, "out-of-domain test sets, scored once after training with every prediction rule "
                               "into ood/<name>/ of the run folder (the loss-free baselines with their one rule): a comma list of auto (the "
                               "data set's named pair: ko_single_turn7 for ko6, goemotions6 for ed6), a pair name, or "
                               "CSV=MAPPING.json (a CSV with the text and label columns and a JSON object {\"their "
                               "label\": \"our class\"}; CSV@cp949=MAPPING.json for a cp949 file). Scored by macro-F1 "
                               "over the shared classes; a prediction of a class without counterpart is an error")

    def loss_weights(self) -> dict[str, float]:
        return parse_loss_spec(self.loss)

    def loss_parameter_values(self) -> dict:
        """The parameters of this run's losses by name (build_loss's keywords): a built-in's from its config
        field, any other's from ``loss_options``."""
        values = {name: getattr(self, name) for name in loss_parameters(self.loss_weights()) if is_config_field(name)}
        values.update(self.loss_options or {})
        return values

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
        for name in ("encoder_lr", "head_lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        for name, lo, hi in (("weight_decay", 0, 1), ("warmup_ratio", 0, 1), ("dropout", 0, 1)):
            v = getattr(self, name)
            if not lo <= v < hi:
                raise ConfigError(f"{name} must be in [{lo}, {hi}), got {v!r}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip!r}")
        for f in fields(self):
            if f.metadata.get("loss_parameter"):  # checked as registered, whether or not the loss uses it
                try:
                    setattr(self, f.name, loss_parameters()[f.name].value(getattr(self, f.name)))
                except ValueError as e:
                    raise ConfigError(str(e)) from None
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        try:
            weights = parse_loss_spec(self.loss)
        except ValueError as e:
            raise ConfigError(f"loss: {e}") from None
        self.loss = format_loss_spec(weights)
        self.loss_options = self._checked_loss_options(weights)
        needs_pairs = any(get_loss(k).needs_pairs for k in weights)
        if needs_pairs and self.batch_size < 3:
            raise ConfigError(f"batch_size {self.batch_size} cannot form a triplet or a positive pair; use at least 3 "
                              "(better: 16 or more, or --sampler balanced)")
        if self.sampler == "balanced" and self.batch_size // self.samples_per_class < 2:
            raise ConfigError(f"sampler balanced needs batch_size >= 2 * samples_per_class "
                              f"({self.batch_size} < 2 * {self.samples_per_class})")
        if self.sampler == "balanced" and self.samples_per_class < 2 and needs_pairs:
            raise ConfigError("samples_per_class must be >= 2 for triplet or supcon losses (a positive pair)")
        if self.ood is not None:  # out-of-domain sets: their spelling here; prepare() reads their files
            from lib.data.out_of_domain import parse_ood_spec

            if not isinstance(self.ood, str):
                raise ConfigError(f"ood must be text such as auto or a comma list of sets, got {self.ood!r}")
            try:
                sets = parse_ood_spec(self.ood, self.dataset)
            except ValueError as e:
                raise ConfigError(f"ood: {e}") from None
            self.ood = self.ood.strip() if sets else None  # "none" (the command line's way to unset it)
        return self

    def _checked_loss_options(self, weights: dict) -> dict | None:
        """Every parameter of this run's losses that has no config field, checked, by name (sorted; the
        registered default where none is given); None where there is none (any built-in loss alone)."""
        given = self.loss_options
        bad = ConfigError(f"loss_options must be a mapping of parameter names to values (a JSON object as text; "
                          f"NAME=VALUE on the command line), got {self.loss_options!r}")
        if isinstance(given, str):
            try:
                given = json.loads(given) if given.strip() else None
            except json.JSONDecodeError:
                raise bad from None
        if given is not None and (not isinstance(given, dict) or not all(isinstance(k, str) for k in given)):
            raise bad
        used = {name: p for name, p in loss_parameters(weights).items() if not is_config_field(name)}
        for name in given or {}:
            owner = parameter_owner(name)
            if is_config_field(name):
                raise ConfigError(f"loss option {name}: set it with its own option, --{name.replace('_', '-')} "
                                  f"(notebooks: {name.upper()})")
            if owner is None:
                registered = loss_option_names()
                raise ConfigError(f"loss option {name}: no registered loss has this parameter (loss options: "
                                  f"{', '.join(registered) or 'none'})")
            if name not in used:
                raise ConfigError(f"loss option {name}: a parameter of loss {owner!r}, which loss {self.loss} "
                                  "does not use")
        out = {}
        for name, p in sorted(used.items()):
            try:
                out[name] = p.value((given or {}).get(name, p.default))
            except ValueError as e:
                raise ConfigError(f"loss option {e}") from None
        return out or None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ExperimentConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**{**ADDED_LATER, **d})


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


class _LossOption(argparse.Action):
    """``--loss-option NAME=VALUE``, repeatable: {NAME: "VALUE"} (the registered check reads the text)."""

    def __call__(self, parser, namespace, text, option_string=None):
        name, sep, value = (part.strip() for part in text.partition("="))
        if not sep or not name:
            parser.error(f"{option_string} {text!r}: expected NAME=VALUE, e.g. {option_string} focal_gamma=2")
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), name: value})


_FIELD_NAMES = frozenset(f.name for f in fields(ExperimentConfig))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per config field, its help taken from the field."""
    defaults = ExperimentConfig()
    for f in fields(ExperimentConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = f.type if isinstance(f.type, type) else str(f.type)
        # a help that explains its own default (e.g. "default: all cores") is not given a second one
        help_text = f.metadata["help"] if "(default:" in f.metadata["help"] else f"{f.metadata['help']} (default: {default})"
        if f.name == "loss_options":  # one NAME=VALUE per use, gathered into a dict
            registered = loss_option_names()
            parser.add_argument("--loss-option", flag, dest=f.name, action=_LossOption, default=None,
                                metavar="NAME=VALUE", help=f"{f.metadata['help']} (registered: {', '.join(registered) or 'none'})")
            continue
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
