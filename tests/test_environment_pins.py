"""environment.yml (conda) pins the same versions as the pip requirement files."""
import re

from lib.paths import PROJECT_ROOT


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(?:-\s*)?([A-Za-z0-9_.\-]+)\s*==?\s*([^\s#;=]+)\s*$", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_environment_yml_matches_requirements():
    pip = {}
    for name in ("requirements.txt", "requirements-nodeps.txt", "requirements-test.txt"):
        pip.update(_pins((PROJECT_ROOT / name).read_text()))
    conda_text = (PROJECT_ROOT / "environment.yml").read_text()
    conda = _pins(conda_text)
    assert pip, "no pins found in the requirement files"
    missing = sorted(set(pip) - set(conda))
    assert not missing, f"environment.yml lacks pins for {missing}"
    differ = {k: (pip[k], conda[k]) for k in pip if pip[k] != conda[k]}
    assert not differ, f"environment.yml and requirements disagree (pip, conda): {differ}"


def test_torch_is_pinned_to_the_cpu_wheel_version():
    assert "torch==2.13.0" in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
