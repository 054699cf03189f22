"""Study 2's tuned sums are the same methods as Study 1's: named, ordered and chosen as the primary
comparison by their loss parts, the seed study's weights first."""
from __future__ import annotations

from lib.study.experiments import display_name, same_method, sort_methods
from lib.study.summary import PRIMARY_METHOD, primary_method_key

TUNED = "ce=0.251+triplet=0.328+arcface=0.421"


def test_a_tuned_sum_is_named_after_its_parts_with_its_weights():
    assert display_name(PRIMARY_METHOD) == "Combined (seed weights)"
    assert display_name(TUNED) == "Combined (weights 0.251 / 0.328 / 0.421)"
    assert display_name("triplet=0.3+arcface=0.7|frozen") == "Triplet + ArcFace (weights 0.3 / 0.7) [frozen]"
    assert display_name("ce=0.5+supcon=0.5") == "CE + SupCon"  # Study 2's ed6 pairing is listed
    assert display_name("ce=0.3+supcon=0.7") == "CE + SupCon (weights 0.3 / 0.7)"
    assert display_name("ce=0.5+arcface=0.3+supcon=0.2") == "ce 0.5 + arcface 0.3 + supcon 0.2"  # no listed method
    assert display_name("tfidf-lr") == "TF-IDF + LR"


def test_same_method_needs_the_same_parts_and_the_same_encoder_setting():
    assert same_method(TUNED, PRIMARY_METHOD) and same_method(TUNED + "|frozen", PRIMARY_METHOD + "|frozen")
    assert not same_method(TUNED, PRIMARY_METHOD + "|frozen")
    assert not same_method("ce=0.3+triplet=0.7", PRIMARY_METHOD)
    assert not same_method("tfidf-lr", "tfidf-lr")  # baselines are not loss sums


def test_a_tuned_sum_takes_its_method_s_place_in_the_order():
    keys = ["supcon=1.0", "tfidf-lr", TUNED, "ce=1.0", "ce=0.3+supcon=0.7", "triplet=0.3+arcface=0.7",
            "ce=0.5+arcface=0.3+supcon=0.2"]
    assert sort_methods(keys) == ["ce=1.0", TUNED, "triplet=0.3+arcface=0.7", "supcon=1.0", "ce=0.3+supcon=0.7",
                                  "tfidf-lr", "ce=0.5+arcface=0.3+supcon=0.2"]  # a method nobody listed: last


def test_the_primary_comparison_is_the_seed_weights_else_the_one_tuned_combined_loss():
    assert primary_method_key({"ce=1.0", PRIMARY_METHOD, TUNED}, False) == PRIMARY_METHOD
    assert primary_method_key({"ce=1.0", TUNED}, False) == TUNED
    assert primary_method_key({"ce=1.0|frozen", TUNED + "|frozen"}, True) == TUNED + "|frozen"
    assert primary_method_key({"ce=1.0", TUNED, "ce=0.2+triplet=0.2+arcface=0.6"}, False) == PRIMARY_METHOD
    assert primary_method_key({"ce=1.0"}, False) == PRIMARY_METHOD


def test_runs_at_tuned_recipes_are_not_protocol_md_s_primary_study(tmp_path):
    """The same ko6 me5-small fine-tuned runs: in a Study 1 folder the primary comparison of PROTOCOL.md; in a
    -tuned folder (Study 2, TUNED_RECIPES) PROTOCOL.md's rule applied, not its primary verdict."""
    import shutil

    import pytest

    from lib.paths import PROJECT_ROOT
    from lib.study.summary import build_summary, notes

    runs = PROJECT_ROOT / "results" / "ko6-me5-small" / "runs"
    if not runs.is_dir():
        pytest.skip("the primary study's runs are not in this checkout")
    lines = {}
    for name in ("ko6-me5-small", "ko6-me5-small-tuned"):
        for method in ("ce1.0", "ce0.15_triplet0.4_arcface0.45"):
            for seed in (0, 1, 2):
                shutil.copytree(runs / method / f"seed{seed}", tmp_path / name / "runs" / method / f"seed{seed}")
        table, _, _ = build_summary(tmp_path / name, n_boot=200, rng_repeats=1)
        lines[name] = [line for line in notes(table, "ce=1.0") if "− CE = " in line]
    assert len(lines["ko6-me5-small"]) == len(lines["ko6-me5-small-tuned"]) == 1
    assert lines["ko6-me5-small"][0].startswith("Primary comparison (PROTOCOL.md): ")
    assert lines["ko6-me5-small-tuned"][0].startswith("The protocol's comparison at the tuned recipes (Study 2")
    # the same numbers: only what the comparison is called differs
    assert lines["ko6-me5-small"][0].split(": ", 1)[1] == lines["ko6-me5-small-tuned"][0].split(": ", 1)[1]
