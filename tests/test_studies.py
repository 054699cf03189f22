"""lib.study.studies: the one list of each protocol's studies, as scripts/confirmatory_runs.sh reads it."""
from __future__ import annotations

import shlex

from lib.study import studies


def test_each_line_gives_the_folder_the_arguments_the_seed_by_seed_arguments_and_the_seeds(capsys):
    assert studies.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("|")[0] for line in lines] == [s.folder for s in studies.STUDIES]
    primary = next(line for line in lines if line.startswith("ko6-me5-small|")).split("|")
    assert primary == ["ko6-me5-small", "--profile paper",
                       "--profile paper --notebooks 00_data_exploration,01_baseline_ce,04_combined",
                       "0,1,2,3,4,5,6,7,8,9"]
    ed32 = next(line for line in lines if line.startswith("ed32-minilm|")).split("|")
    assert shlex.split(ed32[1])[-2:] == ["--set", 'LOSSES=["combined"]'] and ed32[2] == "" and ed32[3] == "0,1,2,3,4"
    assert studies.main(["--protocol", "1"]) == 0 and capsys.readouterr().out.splitlines() == lines


def test_a_protocol_without_studies_or_an_unknown_one_is_refused_in_one_line(capsys, monkeypatch):
    monkeypatch.setitem(studies.PROTOCOLS, 2, ("PROTOCOL-2.md", ()))
    assert studies.main(["--protocol", "2"]) == 2
    assert capsys.readouterr().err == ("error: PROTOCOL-2.md names no study yet (its studies are written into "
                                       "lib/study/studies.py with it)\n")
    for bad in (["--protocol", "3"], ["--protocol"], ["2"], ["--protocol", "x"]):
        assert studies.main(bad) == 2 and capsys.readouterr().err == studies.USAGE + "\n", bad


def test_a_study_2_in_a_study_1_folder_is_refused(capsys, monkeypatch):
    """Publishing it would replace Study 1's published folder (scripts/confirmatory_runs.sh publish)."""
    again = studies.Study("ko6-me5-small", "ko6 again", (300,), "--profile paper --set BF16=false")
    fresh = studies.Study("ko6-me5-small-tuned", "ko6 tuned", (300,), "--profile paper --set TUNED_RECIPES=x")
    monkeypatch.setitem(studies.PROTOCOLS, 2, ("PROTOCOL-2.md", (fresh, again)))
    assert studies.main(["--protocol", "2"]) == 2
    assert capsys.readouterr().err == ("error: PROTOCOL-2.md lists ko6-me5-small, a study of PROTOCOL.md: each "
                                       "protocol's studies need folders of their own\n")
    monkeypatch.setitem(studies.PROTOCOLS, 2, ("PROTOCOL-2.md", (fresh,)))
    assert studies.main(["--protocol", "2"]) == 0 and capsys.readouterr().out.startswith("ko6-me5-small-tuned|")


def test_publish_takes_the_folder_of_a_listed_study_and_no_other(monkeypatch, capsys):
    """--publish --results results/<folder>: only a folder some protocol lists (a Study 1 recipe re-trained for
    Study 2 gets a name the runner would not derive); anything else is refused before a folder is made."""
    from lib.paths import PROJECT_ROOT
    from lib.study import runner

    arm = studies.Study("ed6-minilm-study1-recipe", "ed6, Study 1 recipe in fp32", (300,), "--set BF16=false")
    monkeypatch.setitem(studies.PROTOCOLS, 2, ("PROTOCOL-2.md", (arm,)))
    assert runner.listed_study_folder("results/ed6-minilm") and runner.listed_study_folder("results/" + arm.folder)
    assert runner.listed_study_folder(str(PROJECT_ROOT / "results" / arm.folder))
    for other in ("results/local/" + arm.folder, "results/ed6-minilm-unlisted", "ed6-minilm", "results/tuning"):
        assert not runner.listed_study_folder(other), other
    assert runner.main(["--publish", "--results", "results/ed6-minilm-unlisted", "--notebooks", "06_summary"]) == 2
    assert "--publish writes into the published results/<dataset>-<encoder>, or with --results into results/<a " \
           "study a protocol lists>" in capsys.readouterr().err
    assert not (PROJECT_ROOT / "results" / "ed6-minilm-unlisted").exists()


def test_a_study_whose_line_would_train_other_seeds_is_refused(capsys, monkeypatch):
    """A study's seeds are written once (Study.seeds): arguments naming --seeds, no seeds or repeated ones, a
    field the line could not carry ('|', a line break) and a folder listed twice are refused, naming the study."""
    good = studies.Study("ed6-minilm-tuned", "t", (300, 301), "--profile paper-secondary --set TUNED_RECIPES=x")
    bad = "ko6-me5-small-tuned"
    cases = {"arguments name --seeds": studies.Study(bad, "t", (300,), "--profile paper --seeds 0,1"),
             "arguments name --seeds:": studies.Study(bad, "t", (300,), "--profile paper", "--profile paper --seeds=0"),
             "seeds ()": studies.Study(bad, "t", (), "--profile paper"),
             "seeds (300, 300)": studies.Study(bad, "t", (300, 300), "--profile paper"),
             "'|' separates": studies.Study(bad, "t", (300,), "--set 'A=x|y'"),
             "a line break": studies.Study(bad, "t", (300,), "--profile paper\n--set A=1"),
             "No closing quotation": studies.Study(bad, "t", (300,), "--set 'A=x")}
    for expected, study in cases.items():
        monkeypatch.setitem(studies.PROTOCOLS, 2, ("PROTOCOL-2.md", (good, study)))
        assert studies.main(["--protocol", "2"]) == 2
        out = capsys.readouterr()
        assert out.out == "" and out.err.startswith(f"error: PROTOCOL-2.md, study '{bad}': ")
        assert expected in out.err and out.err.count("\n") == 1, (expected, out.err)
    monkeypatch.setitem(studies.PROTOCOLS, 2, ("PROTOCOL-2.md", (good, good)))
    assert studies.main(["--protocol", "2"]) == 2
    assert capsys.readouterr().err == "error: PROTOCOL-2.md lists ed6-minilm-tuned more than once\n"


def test_study_1_seeds_are_its_profiles_in_order():
    """Study.seeds (what scripts/confirmatory_runs.sh passes) and the profile each Study 1 study names (what its
    documented commands, without --seeds, train) give the same seeds in the same order."""
    from lib.study.profiles import PROFILES

    for s in studies.STUDIES:
        words = shlex.split(s.run_all_args)
        assert list(s.seeds) == PROFILES[words[words.index("--profile") + 1]]["seeds"], s.folder
