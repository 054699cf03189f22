"""The search space of every method, declared in one place (lib.study.tuning samples it with Optuna's TPE).

A method is a loss spec: its parts (ce, triplet, arcface, supcon) name it, its weights are only the
Study 1 recipe's starting point. Its space is SHARED, plus OWN[part] for each part, plus, for a sum
of k parts, k-1 stick-breaking coordinates that place the weights on the simplex. Every name is an
ExperimentConfig field (lib/training/config.py) or a parameter of a loss registered without one (it then
goes into ``loss_options``), except the stick coordinates, which become ``loss``. A loss of your own gets
its entry in OWN ({} to tune only the shared names); a search refuses a loss that has none.
"""
from __future__ import annotations

import math

from lib.model.losses import format_loss_spec, parse_loss_spec

# name: ("log", low, high) log-uniform | ("float", low, high) uniform | ("epochs", fraction) an integer
# from fraction x the setting's maximum epochs up to that maximum | ("choice", options)
SHARED = {
    "encoder_lr": ("log", 5e-6, 1e-4),   # not sampled with a frozen encoder: it has nothing to learn
    "head_lr": ("log", 1e-4, 1e-2),
    "warmup_ratio": ("float", 0.0, 0.2),
    "epochs": ("epochs", 1 / 3),         # the schedule decays over these, so a run can anneal before early stopping
    "weight_decay": ("log", 1e-4, 0.3),
    "dropout": ("float", 0.0, 0.5),
}
OWN = {
    "ce": {},
    "triplet": {"triplet_margin": ("log", 0.05, 1.0), "triplet_mining": ("choice", ("all", "semihard", "hard")),
                "triplet_distance": ("choice", ("euclidean", "cosine"))},
    "arcface": {"arcface_margin": ("float", 0.1, 0.8), "arcface_scale": ("log", 4.0, 64.0)},
    "supcon": {"supcon_temperature": ("log", 0.03, 0.5)},
}
MIN_WEIGHT = 0.05  # each part of a sum keeps at least this weight, so the method stays the method it names
STICK = "weight_stick"  # weight_stick1 .. weight_stick{k-1}, each in [0, 1]


class SearchSpaceError(ValueError):
    """A method with a loss part that has no declared space: one message, exit status 2."""
    exit_status = 2


def own_space(part: str) -> dict[str, tuple]:
    """A loss part's own declarations; a part without an entry in OWN is refused rather than tuned on the
    shared names alone, which would search its own parameters at their defaults unannounced."""
    if part not in OWN:
        raise SearchSpaceError(f"loss {part!r} has no search space: add OWN[{part!r}] in lib/study/search_spaces.py "
                               "(a range for each parameter to tune; {} to tune only the shared ones)")
    return OWN[part]


def point_value(config: dict, name: str):
    """A searched name's value in a config (ExperimentConfig fields as a dict): its field, or for the
    parameter of a loss registered without a field, its entry in ``loss_options``."""
    return config[name] if name in config else (config.get("loss_options") or {})[name]


def flat_config(config: dict) -> dict:
    """A config dict with the entries of its ``loss_options`` beside its fields (and no ``loss_options``), so
    that each parameter of a loss of one's own is compared or shown one by one, as a search varies them."""
    return {**{k: v for k, v in config.items() if k != "loss_options"}, **(config.get("loss_options") or {})}


def parts_of(method: str) -> tuple[str, ...]:
    """The loss parts a method spec names, in the canonical order ("combined" -> ce, triplet, arcface)."""
    return tuple(parse_loss_spec(method))


def method_name(method: str) -> str:
    """The method as the search knows it: its parts, weights aside ("ce+triplet+arcface")."""
    return "+".join(parts_of(method))


def declared(method: str, frozen: bool, max_epochs: int) -> dict[str, tuple]:
    """{name: declaration} of a method's space (what ``suggest`` samples), stick coordinates included."""
    space = {k: v for k, v in SHARED.items() if not (frozen and k == "encoder_lr")}
    space["epochs"] = ("int", max(1, math.ceil(SHARED["epochs"][1] * max_epochs)), max_epochs)
    for part in parts_of(method):
        space.update(own_space(part))
    space.update({f"{STICK}{i}": ("float", 0.0, 1.0) for i in range(1, len(parts_of(method)))})
    return space


def distributions(method: str, frozen: bool, max_epochs: int) -> dict:
    """The space as Optuna distributions (to rebuild a study from trial records, e.g. for importances)."""
    import optuna.distributions as d

    kinds = {"log": lambda lo, hi: d.FloatDistribution(lo, hi, log=True), "float": d.FloatDistribution,
             "int": d.IntDistribution, "choice": lambda options: d.CategoricalDistribution(options)}
    return {name: kinds[decl[0]](*decl[1:]) for name, decl in declared(method, frozen, max_epochs).items()}


def suggest(trial, method: str, frozen: bool, max_epochs: int) -> dict:
    """Optuna define-by-run: sample every declared name on ``trial``; return the ExperimentConfig fields."""
    params = {}
    for name, decl in declared(method, frozen, max_epochs).items():
        kind = decl[0]
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, list(decl[1]))
        elif kind == "int":
            params[name] = trial.suggest_int(name, decl[1], decl[2])
        else:
            params[name] = trial.suggest_float(name, decl[1], decl[2], log=kind == "log")
    return config_fields(params, method)


def config_fields(params: dict, method: str) -> dict:
    """Sampled values -> ExperimentConfig fields: the stick coordinates become the ``loss`` spec."""
    parts = parts_of(method)
    fields = {k: v for k, v in params.items() if not k.startswith(STICK)}
    sticks = [params[f"{STICK}{i}"] for i in range(1, len(parts))]
    fields["loss"] = format_loss_spec(dict(zip(parts, simplex_weights(sticks))))
    return fields


def simplex_weights(sticks: list[float]) -> list[float]:
    """k-1 coordinates in [0, 1] -> k weights >= MIN_WEIGHT summing to 1, rounded to 0.001.

    Stick-breaking with Beta(1, k-i) breaks (its inverse CDF applied to each coordinate): uniform
    coordinates give weights uniform on the simplex, so TPE starts from no favoured mixture."""
    k = len(sticks) + 1
    left, share = 1.0, []
    for i, u in enumerate(sticks, 1):
        piece = left * (1.0 - (1.0 - min(max(u, 0.0), 1.0)) ** (1.0 / (k - i)))
        share.append(piece)
        left -= piece
    share.append(left)
    weights = [round(MIN_WEIGHT + (1.0 - k * MIN_WEIGHT) * s, 3) for s in share[:-1]]
    return weights + [round(1.0 - sum(weights), 3)]


def sticks_of(weights: list[float]) -> list[float]:
    """The inverse of ``simplex_weights`` (weights normalised to sum 1 first; each must be >= MIN_WEIGHT)."""
    k, total = len(weights), sum(weights)
    share = [max(0.0, (w / total - MIN_WEIGHT) / (1.0 - k * MIN_WEIGHT)) for w in weights]
    left, sticks = 1.0, []
    for i, s in enumerate(share[:-1], 1):
        fraction = min(1.0, s / left) if left > 0 else 0.0
        sticks.append(1.0 - (1.0 - fraction) ** (k - i))
        left -= s
    return sticks


def recipe_point(recipe: dict, method: str, frozen: bool, max_epochs: int) -> dict:
    """The Study 1 recipe (``recipe``: ExperimentConfig fields) as a point of the space, to enqueue as the
    first trial; its epochs are clipped into the space and a sum's weights normalised to sum 1."""
    space = declared(method, frozen, max_epochs)
    point = {name: point_value(recipe, name) for name in space if not name.startswith(STICK)}
    point["epochs"] = min(max(point["epochs"], space["epochs"][1]), space["epochs"][2])
    weights = parse_loss_spec(method)
    point.update({f"{STICK}{i}": u for i, u in enumerate(sticks_of(list(weights.values())), 1)})
    return point
