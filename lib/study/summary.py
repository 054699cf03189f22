"""The study's summary over every finished run of a results folder."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from lib.evaluation.power import minimum_detectable_effect
from lib.evaluation.pvalues import format_p, holm
from lib.evaluation.seed_tests import summarize
from lib.evaluation.verdict_sensitivity import spread
from lib.study.baseline_comparison import (compare_out_of_domain, compare_to_baseline, compare_under_rules,
                                           verdict_sensitivity)
from lib.study.experiments import (TUNED_SUFFIX, ExperimentConfig, display_name, experiment_fields, method_key,
                                   resolve_results_dir, same_method, sort_methods)
from lib.study.run_files import is_resplit, ood_metrics, ood_scores, ood_sets
from lib.training.results import collect_runs, git, write_csv, write_text

# What the seed study reported (KoBERT on ko6, one seed, best epoch picked on the test split).
SEED_STUDY = pd.DataFrame([
    {"method": "ce=1.0", "seed_study_test_macro_f1": 0.643},
    {"method": "ce=0.15+triplet=0.4+arcface=0.45", "seed_study_test_macro_f1": 0.660},
])


def collect(results: str | Path, group: str | None = None) -> pd.DataFrame:
    """collect_runs with the method key (loss spec, baseline name, '|frozen').

    Without ``group`` the grouped runs (the weight grid of notebook 04, chosen on validation and
    reported there) are left out. Refuses to mix runs of one method with different configurations.
    """
    root = resolve_results_dir(results) / "runs"
    runs = collect_runs(root / group if group else root)
    if runs.empty:
        return runs
    if not group:
        runs = runs[~runs["run_path"].str.startswith(str(root / "grid") + "/")].reset_index(drop=True)
    keys, configs = {}, {}
    for path in runs["run_path"].unique():
        config = json.loads((Path(path) / "config.json").read_text())
        keys[path] = method_key(ExperimentConfig.from_dict(config))
        fields = {k: v for k, v in experiment_fields(config).items() if k != "seed"}
        previous = configs.setdefault(keys[path], (path, fields))
        if previous[1] != fields:
            differ = sorted(k for k in set(fields) | set(previous[1]) if fields.get(k) != previous[1].get(k))
            raise ValueError(f"runs of {keys[path]} differ in {', '.join(differ)}: {previous[0]} and {path}; "
                             "keep one configuration per results folder (re-run with --force or another folder)")
    runs["method"] = runs["run_path"].map(keys)
    return runs


def _fmt(m, lo, hi) -> str:
    if np.isnan(m):
        return ""
    return f"{m:.3f}" if np.isnan(lo) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


# The primary hypothesis of PROTOCOL.md: the seed study's combined loss against CE, margin +0.017.
PRIMARY_METHOD = "ce=0.15+triplet=0.4+arcface=0.45"
PRIMARY_STUDY = ("ko6", "me5-small", False)  # dataset, encoder, frozen
MARGIN = 0.017


def rule_choice(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method: the a-priori rule and the rule chosen on validation (highest mean validation
    macro-F1 over seeds; ties go to the a-priori rule). Test scores choose nothing."""
    valid = runs[runs["split"] == "valid"]
    rows = []
    for method, g in valid.groupby("method", sort=True):
        apriori = g.loc[g["primary"], "rule"].iloc[0]
        means = g.groupby("rule")["macro_f1"].mean()
        best = means.max()
        chosen = apriori if means[apriori] >= best else means.idxmax()
        rows.append({"method": method, "apriori_rule": apriori, "valid_chosen_rule": chosen})
    return pd.DataFrame(rows, columns=["method", "apriori_rule", "valid_chosen_rule"])


def epoch_report(runs: pd.DataFrame) -> pd.DataFrame:
    """Per fine-tuned method: the selected (best validation) epoch of each seed, how many runs
    selected the last epoch they ran, and the mean validation gain of that last epoch over the one
    before (history.csv): whether the training budget sufficed."""
    rows = []
    first = runs[(runs["split"] == "test") & runs["primary"] & runs["best_epoch"].notna()]
    for method, g in first.groupby("method", sort=True):
        g = g.sort_values("seed")
        gains = []
        for path in g["run_path"]:
            hist = Path(path) / "history.csv"
            if hist.is_file():
                v = pd.read_csv(hist)["valid_macro_f1"].to_numpy()
                if len(v) >= 2:
                    gains.append(v[-1] - v[-2])
        rows.append({"method": method, "selected_epochs": " ".join(str(int(e)) for e in g["best_epoch"]),
                     "epochs_run": " ".join(str(int(e)) for e in g["epochs_run"]),
                     "runs_best_at_last_epoch": int((g["best_epoch"] == g["epochs_run"]).sum()),
                     "last_epoch_valid_gain": float(np.mean(gains)) if gains else float("nan")})
    return pd.DataFrame(rows, columns=["method", "selected_epochs", "epochs_run", "runs_best_at_last_epoch",
                                       "last_epoch_valid_gain"])


UNRECORDED = "not recorded"


def provenance(runs: pd.DataFrame) -> dict:
    """Commits and dirty trees of the runs (environment.json). ``one_code``: one commit of the
    training code (several commits with the same lib/ allowed); ``clean``: every run from one and the
    same commit, clean tree (PROTOCOL.md section 6: one commit per study)."""
    per_run = runs.drop_duplicates("run_path")
    commits = sorted({c for c in per_run["commit"] if isinstance(c, str)})
    dirty = int(sum(bool(d) for d in per_run["dirty"] if d is not None and not pd.isna(d)))
    unknown = int(sum(1 for c in per_run["commit"] if not isinstance(c, str)))
    one_code = unknown == 0 and (len(commits) <= 1 or same_training_code(commits))
    # Sessions may land on different machines: floating-point results differ between CPU models, so
    # say which trained what, and in how many seeds the methods of a paired comparison did not share one.
    hardware = per_run["hardware"].fillna(UNRECORDED)
    counts = hardware.value_counts()
    mixed = int((hardware.groupby(per_run["seed"]).nunique() > 1).sum())
    return {"runs": len(per_run), "commits": commits, "dirty_runs": dirty, "runs_without_commit": unknown,
            "one_code": one_code, "clean": len(commits) == 1 and unknown == 0 and dirty == 0,
            "hardware": {k: int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))},
            "seeds_on_several_machines": mixed, "seeds": int(per_run["seed"].nunique())}


def same_training_code(commits: list[str]) -> bool:
    """Whether the commits hold the same lib/ (the code that trains and evaluates); False where
    git cannot tell (not a checkout, or a commit it does not have)."""
    for other in commits[1:]:
        r = git("diff", "--quiet", commits[0], other, "--", "lib", timeout=30)
        if r is None or r.returncode != 0:
            return False
    return True


def primary_method_key(methods, frozen: bool) -> str:
    """The combined loss's method key in a study: the seed study's weights, or else the one sum with its parts
    (Study 2 trains it at tuned weights, lib.study.tuned_recipes)."""
    exact = PRIMARY_METHOD + ("|frozen" if frozen else "")
    if exact in methods:
        return exact
    tuned = [m for m in methods if same_method(m, exact)]
    return tuned[0] if len(tuned) == 1 else exact


def is_primary_study(runs: pd.DataFrame) -> bool:
    first = runs.iloc[0]
    return (first["dataset"], first["encoder"], bool(first["frozen"])) == PRIMARY_STUDY


PROVENANCE_RULES = ("clean", "one-commit", "any")


def build_summary(results: str | Path, baseline: str = "ce=1.0", n_boot: int = 10_000, random_state: int = 0,
                  provenance_rule: str = "one-commit", rng_repeats: int = 10):
    """(numeric table, readable table, runs). The numeric table has one row per method and rule.

    Differences to the baseline come from the two-level bootstrap (seeds and test sentences,
    ``n_boot`` replicates; PROTOCOL.md), with Holm's adjustment over the study's comparisons;
    the paired t over seeds is a second view. ``provenance_rule``: "clean" (published studies: one
    clean commit), "one-commit" (the default: one commit of the training code, a dirty tree allowed
    and marked as not confirmatory), or "any" (re-rendering runs of mixed code, marked likewise).
    Beside each margin verdict (primary rules, and rules chosen on validation): the verdict with the
    bootstrap re-drawn under ``rng_repeats`` other RNG seeds (0: none) and with each seed left out
    (``SENSITIVITY_COLUMNS``; descriptions, the verdict stays the ``random_state`` draw's).
    Where runs scored out-of-domain sets (``ood/<name>/``), the ``ood_<name>_*`` columns come last
    (``_with_out_of_domain``); without them the table is what it was before they existed.
    """
    if provenance_rule not in PROVENANCE_RULES:
        raise ValueError(f"provenance_rule must be one of {', '.join(PROVENANCE_RULES)}, got {provenance_rule!r}")
    if isinstance(rng_repeats, bool) or not isinstance(rng_repeats, (int, np.integer)) or rng_repeats < 0:
        raise ValueError(f"rng_repeats (bootstrap re-draws of a verdict) must be a whole number >= 0, got "
                         f"{rng_repeats!r}")
    runs = collect(results)
    if runs.empty:
        raise FileNotFoundError(f"no complete runs under {resolve_results_dir(results) / 'runs'}")
    prov = provenance(runs)
    refused = {"clean": not prov["clean"], "one-commit": not prov["one_code"], "any": False}[provenance_rule]
    if refused:
        raise ValueError(
            f"runs under {resolve_results_dir(results) / 'runs'} come from {len(prov['commits'])} commit(s) "
            f"({prov['dirty_runs']} from a dirty tree, {prov['runs_without_commit']} without a commit), but "
            f"provenance rule {provenance_rule!r} needs "
            + ("one clean commit" if provenance_rule == "clean" else "one commit of the training code")
            + ": re-run them from one clean clone (run_all.sh --force), or summarise them with provenance "
              "rule 'any' as an exploratory, non-confirmatory result")
    if baseline not in set(runs["method"]) and f"{baseline}|frozen" in set(runs["method"]):
        baseline = f"{baseline}|frozen"  # a study run entirely on a frozen encoder
    summary = summarize(runs)
    primary_key = primary_method_key(set(runs["method"]), baseline.endswith("|frozen"))
    comparison = compare_to_baseline(runs, baseline, random_state=random_state, n_boot=n_boot, delta=MARGIN)
    table = summary.copy()
    if not comparison.empty:
        comparison = comparison.assign(p_holm=holm(comparison["tl_p"].to_numpy()),
                                       p_ttest_holm=holm(comparison["p_ttest"].to_numpy()))
        comparison["mde"] = [_mde(r) for _, r in comparison.iterrows()]
        margin_cols = ["tl_lo90", "tl_hi90", "p_below_claim", "p_below_claim_is_bound", "p_gain", "p_gain_is_bound",
                       "verdict_bootstrap", "t_lo90", "t_hi90", "p_below_claim_t", "p_gain_t", "verdict_t",
                       "lo90", "hi90", "verdict"]
        comparison = comparison.astype({c: object for c in margin_cols if c in comparison.columns})
        comparison.loc[comparison["method"] != primary_key, margin_cols] = np.nan
        cols = ["method", "seeds", "diff", "diff_lo", "diff_hi", "p_ttest", "p_ttest_holm", "tl_design", "tl_seeds",
                "tl_diff", "tl_lo", "tl_hi", "tl_se", "tl_p", "tl_p_is_bound", "tl_n_boot", "p_holm", "mde",
                *margin_cols]
        comp = comparison[[c for c in cols if c in comparison.columns]].rename(
            columns={"seeds": "paired_seeds", "diff": "diff_vs_baseline"})
        comp = comp.assign(primary=True)
        table = table.merge(comp, on=["method", "primary"], how="left")
    rules = rule_choice(runs)
    table = table.merge(rules, on="method", how="left")
    table["valid_chosen"] = table["rule"] == table["valid_chosen_rule"]
    table, vc = _with_chosen_rule_comparison(table, runs, rules, primary_key, baseline, n_boot, random_state)
    table = table.drop(columns=["apriori_rule", "valid_chosen_rule"])
    table = table.merge(epoch_report(runs).assign(primary=True), on=["method", "primary"], how="left")
    table = table.merge(SEED_STUDY, on="method", how="left")
    table.loc[~table["primary"], "seed_study_test_macro_f1"] = np.nan
    # Added last, so that the columns published before them keep their places.
    table, sensitivity = _with_verdict_sensitivity(table, runs, comparison, vc, primary_key, baseline, n_boot,
                                                   random_state, rng_repeats)
    table, out_of_domain = _with_out_of_domain(table, runs, baseline, n_boot, random_state)
    order = {k: i for i, k in enumerate(sort_methods(table["method"].unique()))}
    table = table.sort_values(["method", "rule"], key=lambda s: s.map(order) if s.name == "method" else s)
    table = table.reset_index(drop=True)
    # Runs at tuned recipes (Study 2), or each on a split of its seed's own, are not PROTOCOL.md's primary study
    # (its estimand is on the seed study's fixed 900 test sentences), whatever their data set and encoder.
    tuned, own_splits = resolve_results_dir(results).name.endswith(TUNED_SUFFIX), is_resplit(runs)
    table.attrs.update(baseline=baseline, provenance=prov, n_boot=n_boot, random_state=random_state,
                       primary_study=is_primary_study(runs) and not tuned and not own_splits,
                       primary_method=primary_key, sensitivity=sensitivity)
    if tuned:  # absent otherwise: the attrs of a Study 1 summary stay as they were
        table.attrs["tuned_recipes"] = True
    if own_splits:  # likewise
        table.attrs["resplit"] = True
    if out_of_domain:  # absent, not empty, without them: the attrs of a study without sets stay as they were
        table.attrs["out_of_domain"] = out_of_domain
    return table, readable(table, baseline), runs


VC_COLUMNS = {"baseline_rule": "vc_baseline_rule", "tl_diff": "vc_diff", "tl_lo": "vc_lo", "tl_hi": "vc_hi",
              "tl_p": "vc_p", "tl_p_is_bound": "vc_p_is_bound", "p_ttest": "vc_p_ttest", "lo90": "vc_lo90",
              "hi90": "vc_hi90", "verdict": "vc_verdict"}


def _with_chosen_rule_comparison(table, runs, rules, method, baseline, n_boot, random_state) -> tuple:
    """PROTOCOL.md section 1, secondary: ``method`` against ``baseline``, each scored by its rule chosen
    on validation; columns vc_* on ``method``'s row of that rule (the a-priori rules' comparison is
    in the tl_* columns). Returns (table, the comparison, or None where there is none)."""
    chosen = rules.set_index("method")["valid_chosen_rule"]
    if method not in chosen.index or baseline not in chosen.index:
        return table, None
    res = compare_under_rules(runs, method, chosen[method], baseline, chosen[baseline], n_boot=n_boot,
                              random_state=random_state, delta=MARGIN)
    if not str(res.get("tl_design")).startswith("paired seeds"):  # "paired seeds[, own splits]"
        return table, None
    at = (table["method"] == method) & (table["rule"] == chosen[method])
    table = table.copy()
    for key, col in VC_COLUMNS.items():
        table[col] = pd.Series([np.nan] * len(table), dtype=object)
        table.loc[at, col] = res[key]
    return table, res


# How firmly a margin verdict stands, on its row (prefixed vc_ for the rules chosen on validation):
# rng_*: the verdict's bootstrap re-drawn with other RNG seeds (lo90/hi90: the union bounds that
# decide it); within_bootstrap_noise: some re-draw gives another verdict; loso_*: each seed left out
# in turn (loso_changed_by: the seeds whose omission changes the verdict).
SENSITIVITY_COLUMNS = (["rng_redraws", "rng_same_verdict", "within_bootstrap_noise"]
                       + [f"rng_{b}90_{s}" for b in ("lo", "hi") for s in ("mean", "sd", "min", "max")]
                       + ["loso_same_verdict", "loso_changed_by"]
                       + [f"loso_{b}90_{s}" for b in ("lo", "hi") for s in ("min", "max")])


def _sensitivity_columns(redraws: pd.DataFrame, loso: pd.DataFrame, verdict: str) -> dict:
    r, s = spread(redraws, verdict), spread(loso, verdict)
    cols = {"rng_redraws": r["n"], "rng_same_verdict": r["same"], "within_bootstrap_noise": bool(r["same"] < 1),
            **{f"rng_{b}90_{x}": r[f"{b}_{x}"] for b in ("lo", "hi") for x in ("mean", "sd", "min", "max")},
            "loso_same_verdict": s["same"],
            "loso_changed_by": " ".join(str(loso.loc[i, "left_out"]) for i in s["changed"]),
            **{f"loso_{b}90_{x}": s[f"{b}_{x}"] for b in ("lo", "hi") for x in ("min", "max")}}
    return {k: cols[k] for k in SENSITIVITY_COLUMNS}


def _with_verdict_sensitivity(table, runs, comparison, vc, method, baseline, n_boot, random_state, repeats):
    """SENSITIVITY_COLUMNS on the rows of the margin verdicts (primary rules; vc_* on the row of the
    rules chosen on validation), and the re-computed verdicts themselves, for the notes:
    {"primary" / "vc": {"verdict", "redraws": [rows], "loso": [rows]}; "vc" also "same_as_primary"}."""
    found, rows, done = {}, {}, {}
    kw = {"delta": MARGIN, "n_boot": n_boot, "random_state": random_state, "repeats": repeats}
    apriori = table[table["primary"]].set_index("method")["rule"]
    if not comparison.empty and "verdict" in comparison.columns:
        prim = comparison[comparison["method"] == method]
        if len(prim) and str(prim.iloc[0]["tl_design"]).startswith("paired seeds") \
                and isinstance(prim.iloc[0]["verdict"], str):
            verdict = prim.iloc[0]["verdict"]
            redraws, loso = verdict_sensitivity(runs, method, baseline, **kw)
            done[apriori[method], apriori[baseline]] = redraws, loso
            found["primary"] = {"verdict": verdict, "redraws": redraws.to_dict("records"),
                                "loso": loso.to_dict("records")}
            rows.setdefault(apriori[method], {}).update(_sensitivity_columns(redraws, loso, verdict))
    if vc is not None:
        # where validation chose the a-priori rules, the comparison (and so its sensitivity) is the primary one
        same = (vc["rule"], vc["baseline_rule"]) in done
        redraws, loso = done[vc["rule"], vc["baseline_rule"]] if same else verdict_sensitivity(
            runs, method, baseline, rule=vc["rule"], baseline_rule=vc["baseline_rule"], **kw)
        found["vc"] = {"verdict": vc["verdict"], "redraws": redraws.to_dict("records"),
                       "loso": loso.to_dict("records"), "same_as_primary": same}
        rows.setdefault(vc["rule"], {}).update(
            {f"vc_{k}": v for k, v in _sensitivity_columns(redraws, loso, vc["verdict"]).items()})
    if not rows:
        return table, found
    extra = pd.DataFrame([{"method": method, "rule": rule, **cols} for rule, cols in rows.items()])
    names = [c for c in [*SENSITIVITY_COLUMNS, *(f"vc_{c}" for c in SENSITIVITY_COLUMNS)] if c in extra.columns]
    extra = extra.astype({c: object for c in names})  # blank, not NaN-as-float or False, off these rows
    return table.merge(extra[["method", "rule", *names]], on=["method", "rule"], how="left"), found


# Per out-of-domain set <name>, columns ood_<name>_<column>: on every rule's row that rule's score
# over the set's shared classes (mean and 95% t interval over the seeds that scored it); on the rows
# of the a-priori rules the difference to the baseline, paired by seed (t view; two-level bootstrap
# over seeds and the set's sentences, Holm's adjustment over the set's comparisons). No margin
# verdict: the protocol's claim is about the in-domain test split.
OOD_SCORE_COLUMNS = ["seeds", "macro_f1", "macro_f1_lo", "macro_f1_hi", "accuracy"]
OOD_COMPARISON_COLUMNS = ["paired_seeds", "diff_vs_baseline", "diff_lo", "diff_hi", "p_ttest", "p_ttest_holm",
                          "tl_design", "tl_seeds", "tl_diff", "tl_lo", "tl_hi", "tl_se", "tl_p", "tl_p_is_bound",
                          "tl_n_boot", "p_holm"]


def ood_column(name: str, column: str) -> str:
    return f"ood_{name}_{column}"


def _with_out_of_domain(table, runs, baseline, n_boot, random_state) -> tuple[pd.DataFrame, dict]:
    """The ood_<name>_* columns of every out-of-domain set the runs scored, and per set what the notes
    say of it: {name: {"description", "rows", "shared_classes", "classes_without_counterpart",
    "scoring", "comparisons"}}. No set: the table unchanged and {}."""
    found = {}
    for name in ood_sets(runs):
        scores = ood_scores(runs, name)
        scored = summarize(scores, split=f"ood:{name}")[["method", "rule", *OOD_SCORE_COLUMNS]]
        table = table.merge(scored.rename(columns={c: ood_column(name, c) for c in OOD_SCORE_COLUMNS}),
                            on=["method", "rule"], how="left")
        comp = compare_out_of_domain(runs, baseline, name, n_boot=n_boot, random_state=random_state)
        cols = [ood_column(name, c) for c in OOD_COMPARISON_COLUMNS]
        if comp.empty:
            table = table.assign(**{c: np.nan for c in cols})
        else:
            comp = comp.assign(p_holm=holm(comp["tl_p"].to_numpy()), p_ttest_holm=holm(comp["p_ttest"].to_numpy()))
            comp = comp.rename(columns={"seeds": "paired_seeds", "diff": "diff_vs_baseline"})
            comp = comp.reindex(columns=["method", *OOD_COMPARISON_COLUMNS]).assign(primary=True)
            table = table.merge(comp.rename(columns=dict(zip(OOD_COMPARISON_COLUMNS, cols))),
                                on=["method", "primary"], how="left")
        m = ood_metrics(scores["run_path"].iloc[0], name)
        found[name] = {"description": _ood_source(m), "rows": m["rows"], "shared_classes": m["shared_classes"],
                       "classes_without_counterpart": m["classes_without_counterpart"], "scoring": m["scoring"],
                       "comparisons": int(comp["tl_p"].notna().sum()) if len(comp) else 0}
    return table, found


def _ood_source(m: dict) -> str:
    """What set it is: a named pair's description; a user's files by name only (no machine's folders)."""
    notes = m.get("notes") or {}
    if "mapping_file" in notes:
        return f"{Path(notes['file']).name} with the mapping {Path(notes['mapping_file']).name}"
    return m["description"]


def ood_score_columns(table: pd.DataFrame) -> list[str]:
    """The out-of-domain macro-F1 columns of the summary table (none for a study without sets)."""
    return [ood_column(name, c) for name in table.attrs.get("out_of_domain", {})
            for c in ("macro_f1", "macro_f1_lo", "macro_f1_hi")]


def _mde(r) -> float:
    """Minimum detectable effect of the two-level comparison (80% power, two-sided 0.05) from the SE of
    its bootstrap replicates, the same replicates as its interval (PROTOCOL.md §3, amendment 2(a))."""
    se = r.get("tl_se", np.nan)
    return float("nan") if pd.isna(se) else minimum_detectable_effect(se)


def _p(value, n_boot, bound=False) -> str:
    return "" if pd.isna(value) else format_p(float(value), n_boot, bool(bound) if not pd.isna(bound) else False)


def readable(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    n_boot = table.attrs.get("n_boot")
    rows = []
    for method, g in table.groupby("method", sort=False):
        r = g[g["primary"]].iloc[0]
        chosen = g[g["valid_chosen"]]
        row = {"method": display_name(method), "rule (a priori)": r["rule"], "seeds": int(r["seeds"]),
               "test macro-F1 (95% CI over seeds)": _fmt(r["macro_f1"], r["macro_f1_lo"], r["macro_f1_hi"])}
        name = f"vs {display_name(baseline)} (95% CI over seeds and sentences)"
        row[name] = row["p (seeds × sentences, Holm)"] = row["p (t over seeds, Holm)"] = ""
        if not pd.isna(r.get("tl_diff", np.nan)):
            row[name] = f"{r['tl_diff']:+.3f} [{r['tl_lo']:+.3f}, {r['tl_hi']:+.3f}]"
            row["p (seeds × sentences, Holm)"] = _p(r["p_holm"], n_boot, r["tl_p_is_bound"])
            row["p (t over seeds, Holm)"] = _p(r.get("p_ttest_holm", np.nan), None)
        row["rule chosen on validation"] = "" if chosen.empty else chosen.iloc[0]["rule"]
        row["its test macro-F1"] = "" if chosen.empty else f"{chosen.iloc[0]['macro_f1']:.3f}"
        epochs = r.get("selected_epochs")
        row["selected epochs"] = "" if pd.isna(epochs) else str(epochs)
        seed_f1 = r.get("seed_study_test_macro_f1")
        row["seed study (KoBERT, ko6)"] = "" if pd.isna(seed_f1) else f"{seed_f1:.3f}"
        for name in table.attrs.get("out_of_domain", {}):
            row.update(_ood_cells(r, name, display_name(baseline), n_boot))
        rows.append(row)
    nice = pd.DataFrame(rows).fillna("")
    nice.attrs["notes"] = notes(table, baseline)
    return nice


def _ood_cells(r, name: str, baseline: str, n_boot) -> dict:
    """A method's two cells of out-of-domain set ``name``: its macro-F1 (with its seeds where they are
    not the in-domain ones), and its difference to the baseline with Holm-adjusted p's."""
    col = partial(ood_column, name)
    score = _fmt(r.get(col("macro_f1"), np.nan), r.get(col("macro_f1_lo"), np.nan), r.get(col("macro_f1_hi"), np.nan))
    seeds = r.get(col("seeds"), np.nan)
    if score and int(seeds) != int(r["seeds"]):
        score += f" (n={int(seeds)})"
    diff = ""
    if not pd.isna(r.get(col("tl_diff"), np.nan)):
        bound = bool(r[col("tl_p_is_bound")]) if not pd.isna(r[col("tl_p_is_bound")]) else False
        p = _p(r[col("p_holm")], n_boot, bound)
        diff = (f"{r[col('tl_diff')]:+.3f} [{r[col('tl_lo')]:+.3f}, {r[col('tl_hi')]:+.3f}], "
                f"p {p if bound else '= ' + p}")
        if not pd.isna(r.get(col("p_ttest_holm"), np.nan)):
            diff += f", t {_p(r[col('p_ttest_holm')], None)}"
    return {f"out-of-domain {name} macro-F1 (95% CI over seeds)": score,
            f"out-of-domain {name}: vs {baseline} (95% CI over seeds and {name} sentences)": diff}


def notes(table: pd.DataFrame, baseline: str) -> list[str]:
    """The lines under the table: the margin verdict, the out-of-domain sets, the training budget,
    provenance."""
    out = []
    if table.attrs.get("resplit"):
        out.append("Design: every seed has a split of its own (resplit: validation fixed, the test set redrawn "
                   "from the training and test sentences), so every in-domain interval of a difference is over "
                   "seeds and each seed's own test sentences (lib.evaluation.bootstrap.split_bootstrap, "
                   "conservative: it counts each split's sentence noise at both stages); the out-of-domain sets "
                   "are shared by every seed, as before.")
    prim = table[(table["method"] == table.attrs.get("primary_method")) & table["primary"]]
    if len(prim) and "verdict" in prim.columns and isinstance(prim.iloc[0].get("verdict"), str) \
            and prim.iloc[0]["verdict"]:
        r = prim.iloc[0]
        if not table.attrs.get("provenance", {}).get("clean"):
            which = "The protocol's comparison, exploratory here (runs not from one clean commit)"
        elif table.attrs.get("tuned_recipes") or table.attrs.get("resplit"):  # Study 2's protocol decides these
            design = [d for d, on in (("at the tuned recipes", table.attrs.get("tuned_recipes")),
                                      ("on a split of each seed's own", table.attrs.get("resplit"))) if on]
            which = (f"The protocol's comparison {' and '.join(design)} (Study 2, whose own protocol is not yet "
                     "written; PROTOCOL.md's verdict rule applied)")
        elif table.attrs.get("primary_study"):
            which = "Primary comparison (PROTOCOL.md)"
        else:
            which = "The protocol's comparison on this secondary study"
        nb = table.attrs["n_boot"]
        # Four decimals wherever a verdict turns on the sign of a bound (-0.00005 is not "-0.000").
        t_part = "" if pd.isna(r.get("t_lo90", np.nan)) else (
            f"; t over seeds ({'each on its own test set' if table.attrs.get('resplit') else 'test set fixed'}) "
            f"{_iv(r['t_lo90'], r['t_hi90'])}, {r['verdict_t']}")
        out.append(f"{which}: {display_name(r['method'])} − {display_name(baseline)} = {r['tl_diff']:+.4f} against the "
                   f"claimed +{MARGIN}: **{r['verdict']}** (90% interval {_iv(r['lo90'], r['hi90'])}, the "
                   f"union of the two views, PROTOCOL.md amendment 4: two-level bootstrap over seeds and sentences "
                   f"{_iv(r['tl_lo90'], r['tl_hi90'])}, {r['verdict_bootstrap']}{t_part}. Bootstrap "
                   f"one-sided p of no gain {_p(r['p_gain'], nb, r.get('p_gain_is_bound'))}, of the claimed gain "
                   f"{_p(r['p_below_claim'], nb, r.get('p_below_claim_is_bound'))}; minimum detectable effect "
                   f"{r['mde']:.3f} at {int(r['seeds'])} seeds).")
        out += _sensitivity_notes(table.attrs.get("sensitivity", {}).get("primary"), table.attrs)
    vc = table[table["vc_verdict"].notna() & (table["vc_verdict"] != "")] if "vc_verdict" in table.columns else []
    if len(vc):
        r = vc.iloc[0]
        out.append(f"Secondary (PROTOCOL.md §1), each method scored by its rule chosen on validation: "
                   f"{display_name(r['method'])} ({r['rule']}) − {display_name(baseline)} ({r['vc_baseline_rule']}) "
                   f"= {r['vc_diff']:+.4f}, 95% interval over seeds and sentences [{r['vc_lo']:+.3f}, {r['vc_hi']:+.3f}], "
                   f"p {_p(r['vc_p'], table.attrs['n_boot'], r['vc_p_is_bound'])} (t over seeds "
                   f"{_p(r['vc_p_ttest'], None)}); against the claimed +{MARGIN}: {r['vc_verdict']} (90% interval "
                   f"{_iv(r['vc_lo90'], r['vc_hi90'])}, both views).")
        out += _sensitivity_notes(table.attrs.get("sensitivity", {}).get("vc"), table.attrs)
    for name, info in table.attrs.get("out_of_domain", {}).items():
        out += _ood_notes(table, baseline, name, info)
    ep = table[table["primary"] & table["selected_epochs"].notna()]
    if len(ep):
        last = int(ep["runs_best_at_last_epoch"].sum())
        total = sum(len(str(s).split()) for s in ep["selected_epochs"])
        gain = ep["last_epoch_valid_gain"].mean()
        # Runs of one epoch have no gain of their last epoch to report (smoke profile).
        gain_text = (f"mean validation gain of the last epoch {gain:+.3f}" if pd.notna(gain)
                     else "no run ran two epochs, so no validation gain of a last epoch")
        out.append(f"Training budget: {last} of {total} trained runs selected the last epoch they ran; {gain_text}.")
    prov = table.attrs.get("provenance", {})
    if prov.get("clean"):
        out.append(f"Provenance: all {prov['runs']} runs from commit {prov['commits'][0][:10]}, clean tree.")
    elif prov.get("one_code") and prov["commits"]:
        out.append(f"Provenance: NOT CONFIRMATORY — {prov['runs']} runs from commit {prov['commits'][0][:10]} "
                   f"({len(prov['commits'])} commit(s) with the same training code), {prov['dirty_runs']} from a "
                   "dirty tree.")
    elif prov:
        out.append(f"Provenance: NOT CONFIRMATORY — {prov['runs']} runs from {len(prov['commits'])} commits, "
                   f"{prov['dirty_runs']} from a dirty tree.")
    if prov.get("hardware"):
        out.append(hardware_line(prov))
    return out


def _ood_notes(table: pd.DataFrame, baseline: str, name: str, info: dict) -> list[str]:
    """What the out-of-domain columns of set ``name`` are, and the primary method's difference there."""
    shared, without = info["shared_classes"], info["classes_without_counterpart"]
    unshared = f", without counterpart: {', '.join(without)}" if without else ", every class has one"
    base = display_name(baseline)
    compared = (f"the difference to {base} is paired by seed (a one-run baseline against every seed of {base}), "
                f"its 95% interval from the two-level bootstrap over "
                f"seeds and the {info['rows']} {name} sentences (the same machinery as the in-domain comparison), "
                f"its p Holm-adjusted over the {info['comparisons']} out-of-domain comparison(s) on {name}, and t "
                "the paired t-test over seeds (Holm likewise)" if info["comparisons"]
                else f"no difference to {base}, which has no run scored on {name}")
    out = [f"Out of domain, {name} ({info['description']}; {info['rows']} sentences; "
           f"{len(shared)} of {len(shared) + len(without)} classes shared{unshared}): each method's a-priori rule, "
           "scored once, after training; macro-F1 over the shared classes only, and a prediction of a class without "
           f"counterpart counts as an error. Beside it the 95% interval over seeds (Student t); {compared}. A "
           "description beside the protocol's in-domain comparison, no part of its verdict."]
    col = partial(ood_column, name)
    method = table.attrs.get("primary_method")
    prim = table[(table["method"] == method) & table["primary"]]
    if len(prim) and col("tl_diff") in prim.columns and not pd.isna(prim.iloc[0][col("tl_diff")]):
        r = prim.iloc[0]
        t_part = "" if pd.isna(r[col("diff_lo")]) else (
            f"; t over seeds ({name} set fixed) 95% {_iv(r[col('diff_lo')], r[col('diff_hi')])}, "
            f"p {_p(r[col('p_ttest')], None)}")
        p = _p(r[col("tl_p")], table.attrs["n_boot"], r[col("tl_p_is_bound")])
        out.append(f"Out of domain, {name}: {display_name(method)} − {base} = {r[col('tl_diff')]:+.4f} macro-F1 over "
                   f"the shared classes, 95% interval over seeds and {name} sentences "
                   f"{_iv(r[col('tl_lo')], r[col('tl_hi')])} ({int(r[col('tl_seeds')])} paired seeds), unadjusted "
                   f"p {p}{t_part}.")
    return out


def _iv(lo, hi) -> str:
    return f"[{lo:+.4f}, {hi:+.4f}]"


def _sensitivity_notes(found: dict | None, attrs: dict) -> list[str]:
    """The lines under a verdict saying how firmly it stands: against re-drawn bootstraps and against
    leaving each seed out (``_with_verdict_sensitivity``)."""
    if not found:
        return []
    if found.get("same_as_primary"):
        return ["Validation chose the a-priori rules: its bootstrap noise and leave-one-seed-out are the primary "
                "comparison's, above."]
    verdict, out = found["verdict"], []
    redraws, loso = pd.DataFrame(found["redraws"]), pd.DataFrame(found["loso"])
    if len(redraws):
        s, n = spread(redraws, verdict), len(redraws)
        same = int(round(s["same"] * n))
        first, last = int(redraws["random_state"].min()), int(redraws["random_state"].max())
        sd = lambda b: "" if np.isnan(s[f"{b}_sd"]) else f" ± {s[f'{b}_sd']:.4f}"  # noqa: E731
        line = (f"Bootstrap noise of this verdict: the same bootstrap re-drawn with {n} other RNG seeds "
                f"(random_state {first}–{last}; the verdict above is random_state {attrs.get('random_state', 0)}'s) "
                f"puts the 90% interval's lower bound at {s['lo_mean']:+.4f}{sd('lo')} (mean ± SD; range "
                f"{_iv(s['lo_min'], s['lo_max'])}) and its upper bound at {s['hi_mean']:+.4f}{sd('hi')} (range "
                f"{_iv(s['hi_min'], s['hi_max'])}); the same verdict in {same} of {n}")
        line += (": **within bootstrap noise** (another draw of the bootstrap alone can change it)."
                 if same < n else ".")
        out.append(line)
    if len(loso):
        same = int((loso["verdict"] == verdict).sum())
        each = "; ".join(f"without seed {r['left_out']}: {r['verdict']} {_iv(r['lo'], r['hi'])}"
                         for r in loso.to_dict("records"))
        out.append(f"Leave one seed out (a description of how much this verdict rests on single seeds, not a rule of "
                   f"the protocol; the same bootstrap RNG seed, 90% union intervals): {each}. The same verdict as "
                   f"with all {len(loso)} seeds in {same} of {len(loso)}.")
    return out


def hardware_line(prov: dict) -> str:
    """Which machines trained the runs, e.g. "Hardware: 30 runs on CPU AMD EPYC, 12 on CPU Intel(R)
    Xeon(R) Processor; in 2 of 10 seeds the runs of one seed trained on different machines."."""
    where = {hw: UNRECORDED if hw == UNRECORDED else f"on {hw}" for hw in prov["hardware"]}
    (first, n), *rest = prov["hardware"].items()
    if not rest:
        if first == UNRECORDED:
            return "Hardware: not recorded by these runs."
        return f"Hardware: all {n} runs {where[first]}."
    parts = [f"{n} runs {where[first]}"] + [f"{m} {where[hw]}" for hw, m in rest]
    return (f"Hardware: {', '.join(parts)}; in {prov['seeds_on_several_machines']} of {prov['seeds']} seeds "
            "the runs of one seed trained on different machines.")


def _numeric_where_possible(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns that hold only numbers and NaN (the margin and vc_* columns, object so that rows
    outside the comparison can be blank) as floats, so that rounding reaches them; flags and text stay."""
    out = table.copy()
    for col in out.columns[out.dtypes == object]:
        values = out[col].dropna()
        if len(values) and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                               for v in values):
            out[col] = pd.to_numeric(out[col])
    return out


def write_summary(results: str | Path, table: pd.DataFrame, nice: pd.DataFrame) -> dict[str, Path]:
    root = resolve_results_dir(results)
    paths = {"csv": root / "summary.csv", "md": root / "summary.md"}
    write_csv(paths["csv"], _numeric_where_possible(table).round(6))
    write_text(paths["md"], render_summary(nice))
    return paths


def render_summary(nice: pd.DataFrame) -> str:
    """summary.md: the table, then its notes (verdict, training budget, provenance)."""
    text = markdown_table(nice)
    lines = nice.attrs.get("notes", [])
    return text + ("\n" + "\n\n".join(lines) + "\n" if lines else "")


def markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"
