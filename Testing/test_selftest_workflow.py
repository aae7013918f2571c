"""The CI workflow for a public repository host that runs both modules' Slicer self-tests
(``.github/workflows/slicer-selftests.yml``). It cannot run here (no display, no Slicer download); this keeps it
valid: it parses, it installs Slicer 5.10 and 5.12, runs both self-tests under Xvfb the way Slicer's own CTest
registration runs a module's unittest, and a failed self-test fails the job.

PyYAML parses the file (a well-kept YAML reader; it comes with nnU-Net's dependencies, which the test environment
installs)."""

import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "slicer-selftests.yml"
MODULES = ["BackSplitSegment", "BackSplitTrain"]


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def job() -> dict:
    jobs = workflow()["jobs"]
    assert len(jobs) == 1
    return next(iter(jobs.values()))


def run_text() -> str:
    return "\n".join(step.get("run", "") for step in job()["steps"])


def test_the_file_says_it_cannot_run_in_this_projects_ci():
    head = WORKFLOW.read_text(encoding="utf-8").split("\nname:")[0]
    assert "CANNOT RUN IN THIS PROJECT'S OWN CI" in head and "public" in head


def test_triggers_and_matrix_cover_slicer_5_10_and_5_12():
    data = workflow()
    triggers = data.get("on", data.get(True))   # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request"} <= set(triggers)
    matrix = job()["strategy"]["matrix"]
    assert {"5.10", "5.12"} <= {str(v) for v in matrix["slicer"]}
    assert all(isinstance(v, str) for v in matrix["slicer"]), "quote versions: YAML reads 5.10 as the number 5.1"
    assert job()["strategy"]["fail-fast"] is False
    assert job()["runs-on"].startswith("ubuntu")


def test_slicer_is_found_for_the_matrix_version_and_its_checksum_checked():
    text = run_text()
    assert "https://download.slicer.org/find?os=linux&stability=release&version=${{ matrix.slicer }}" in text
    assert "sha512sum -c" in text


def test_both_self_tests_run_headless_under_xvfb_with_the_checkout_module_paths():
    steps = [s for s in job()["steps"] if "runUnitTest" in s.get("run", "")]
    assert {m for s in steps for m in MODULES if f"'{m}')" in s["run"]} == set(MODULES)
    for step in steps:
        command = shlex.split(step["run"].replace("\\\n", " "))
        assert command[0] == "xvfb-run"
        slicer = next(i for i, word in enumerate(command) if word.endswith("/Slicer"))
        options = command[slicer + 1:]
        assert "--testing" in options and "--no-splash" in options
        paths = options[options.index("--additional-module-paths") + 1:]
        paths = paths[: next(i for i, word in enumerate(paths) if word.startswith("--"))]
        assert paths == [f"$GITHUB_WORKSPACE/{m}" for m in MODULES]
        code = options[options.index("--python-code") + 1]
        module = re.search(r"runUnitTest\(\['\$GITHUB_WORKSPACE/(\w+)'\], '(\w+)'\)", code)
        assert code.startswith("import slicer.testing;") and module and module[1] == module[2]
    # the second self-test runs even when the first failed; any failed step fails the job
    assert steps[1].get("if") == "success() || failure()"
    assert not any(s.get("continue-on-error") for s in job()["steps"])


def test_the_self_tests_never_install_only_the_cpu_leg_does_with_backsplits_requirements():
    from backsplit.runtime.requirements import NNUNET_REQUIREMENT, TORCH_SPECIFIER

    env = job()["env"]
    assert env["TORCH_REQUIREMENT"] == f"torch{TORCH_SPECIFIER}" and env["NNUNET_REQUIREMENT"] == NNUNET_REQUIREMENT
    installs = [s for s in job()["steps"] if "pip install" in s.get("run", "")]
    assert installs and all("matrix.nnunet == 'cpu'" in s.get("if", "") for s in installs)
    assert {"none", "cpu"} == set(job()["strategy"]["matrix"]["nnunet"])
