"""Dataset versions: ``dataset add`` (engine and command line) on real exported datasets, every bad input, and
nnU-Net's own integrity check on the new and the kept version."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case, write_case_files

from backsplit.datasets.add import AddRequest, add_cases
from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.datasets.policy import UnknownSegmentsError, assign_case_ids, orientation_code
from backsplit.datasets.versions import file_records, list_versions, verify_files, version_folder
from backsplit.errors import InputError, OutputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.labels.context import ContextSpec


def export(tmp_path, n=3, **kw):
    sources = [InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(n)]
    return export_dataset(sources, ExportRequest(tmp_path, 21, "Grow", ["Lesion"], ["Vessel", "Organ"], **kw))


def labels_of(folder, case):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / f"{case}.nii.gz")))


def snapshot_of(folders):
    return {p.relative_to(f).as_posix() + f"@{f.name}": p.read_bytes() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


def test_add_makes_version_two_and_keeps_version_one(tmp_path):
    nnunet = pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    result = export(tmp_path)
    meta1 = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta1["backsplit"]["version"] == 1
    assert set(meta1["backsplit"]["files"]) == set(file_records(result.dataset_dir))
    before = snapshot_of([result.dataset_dir, result.binary_dataset_dir])
    new = make_case("new", seed=7)
    new.segments["Lesion"][:] = False
    new.segments["Lesion"][5:8, 6:9, 7:10] = True                                  # the "corrected" lesion
    added = add_cases([InMemoryCaseSource(new)], AddRequest(result.dataset_dir))
    assert added.version == 2 and added.parent_version == 1 and added.case_ids == {"new": "new"}

    meta2 = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    section = meta2["backsplit"]
    assert meta2["numTraining"] == 4 and section["case_ids"] == ["c0", "c1", "c2", "new"]
    assert section["version"] == 2 and section["parent_version"] == 1
    assert [(v["version"], v["parent"], v["added_cases"]) for v in section["versions"]] == \
        [(1, None, ["c0", "c1", "c2"]), (2, 1, ["new"])]
    assert section["geometry_policy"]["orientation"] == "LPS"
    labels = labels_of(result.dataset_dir, "new")
    assert np.array_equal(labels == 1, new.segments["Lesion"])                     # earliest class wins, as export
    assert set(np.unique(labels_of(result.binary_dataset_dir, "new"))) == {0, 1}   # twin: supports folded
    twin_meta = json.loads((result.binary_dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert twin_meta["backsplit"]["version"] == 2 and twin_meta["numTraining"] == 4
    assert verify_files(result.dataset_dir) == [] and verify_files(result.binary_dataset_dir) == []

    kept = version_folder(result.dataset_dir, 1)
    assert kept == added.previous_version_dir / result.dataset_dir.name
    assert snapshot_of([kept, added.previous_version_dir / result.binary_dataset_dir.name]) == before  # v1 unchanged
    assert [v.version for v in list_versions(result.dataset_dir)] == [1, 2]
    assert (result.dataset_dir / "imagesTr" / "c0_0000.nii.gz").stat().st_ino == \
        (kept / "imagesTr" / "c0_0000.nii.gz").stat().st_ino                         # hard links, no copies
    for folder in (result.dataset_dir, result.binary_dataset_dir, kept):
        verify_dataset_integrity(str(folder), num_processes=1)                      # raises on any problem
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]             # no staging left behind
    assert nnunet


def test_bad_cases_are_refused_and_nothing_changes(tmp_path):
    result = export(tmp_path)
    before = snapshot_of([result.dataset_dir, result.binary_dataset_dir])
    request = AddRequest(result.dataset_dir)

    with pytest.raises(InputError, match=r"case 'two': .*2 image channel\(s\) but the dataset expects 1"):
        add_cases([InMemoryCaseSource(make_case("ok", seed=3)), InMemoryCaseSource(make_case("two", channels=2))],
                  request)
    flipped = make_case("flip", direction=np.diag([-1.0, -1.0, 1.0]))
    with pytest.raises(InputError, match="orientation RAS but the dataset's cases are LPS"):
        add_cases([InMemoryCaseSource(flipped)], request)
    with pytest.raises(InputError, match="spacing along z is 9 mm .* about 2 mm"):
        add_cases([InMemoryCaseSource(make_case("thick", spacing=(1.0, 1.5, 9.0)))], request)
    renamed = make_case("renamed")
    renamed.segments["lesions"] = renamed.segments.pop("Lesion")
    with pytest.raises(UnknownSegmentsError, match='\'lesions\' are not classes .*"lesions=Lesion"') as info:
        add_cases([InMemoryCaseSource(renamed)], request)
    assert info.value.suggestions == {"lesions": "Lesion"}
    with pytest.raises(InputError, match="case 'c1': a case with this id is already in the dataset.*never replaced"):
        add_cases([InMemoryCaseSource(make_case("c1"))], request)
    with pytest.raises(InputError, match="binary baseline dataset; add cases to the BackSplit dataset"):
        add_cases([InMemoryCaseSource(make_case("x"))], AddRequest(result.binary_dataset_dir))
    assert snapshot_of([result.dataset_dir, result.binary_dataset_dir]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.dataset_dir.name, result.binary_dataset_dir.name]

    # the offered rename, an explicit ignore, and a new id: accepted, each said in the result
    extra = make_case("c1", seed=5)
    extra.segments["lesions"] = extra.segments.pop("Lesion")
    extra.segments["pen mark"] = np.zeros_like(extra.segments["Organ"])
    added = add_cases([InMemoryCaseSource(extra)],
                      AddRequest(result.dataset_dir, name_mapping={"lesions": "Lesion"}, ignore_segments=["pen mark"],
                                 on_existing_id="rename"))
    assert added.case_ids == {"c1": "c1_2"} and added.unused_segments == {"c1_2": ["pen mark"]}
    assert "the id 'c1' existed: new id given" in "\n".join(added.summary_lines())
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["backsplit"]["name_mapping"] == {"lesions": "Lesion"}
    assert "lesions" in meta["backsplit"]["schema"]["targets"][0]["sources"]
    with pytest.raises(InputError, match="earlier version kept for reference"):
        add_cases([InMemoryCaseSource(make_case("y"))], AddRequest(version_folder(result.dataset_dir, 1)))


def test_generated_context_classes_are_regenerated(tmp_path):
    result = export(tmp_path, context=ContextSpec("rings", (2.0,)))
    case = make_case("ctx", seed=4)
    case.segments["ring 0-2 mm"] = np.ones_like(case.segments["Organ"])   # as a prediction would hold it
    added = add_cases([InMemoryCaseSource(case)], AddRequest(result.dataset_dir))
    assert added.unused_segments == {"ctx": ["ring 0-2 mm"]}
    reference = export_dataset([InMemoryCaseSource(make_case("ctx", seed=4))],
                               ExportRequest(tmp_path / "ref", 21, "Grow", ["Lesion"], ["Vessel", "Organ"],
                                             context=ContextSpec("rings", (2.0,))))
    assert np.array_equal(labels_of(result.dataset_dir, "ctx"), labels_of(reference.dataset_dir, "ctx"))


def test_case_id_policy_and_orientation_code():
    assert assign_case_ids(["a", "A", "b"], ["a", "a_2"], "rename") == {"a": "a_3", "A": "A_4", "b": "b"}
    with pytest.raises(ValueError):
        assign_case_ids(["a"], [], "replace")
    assert orientation_code(np.eye(3).ravel()) == "LPS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0]).ravel()) == "RAS"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backsplit", *map(str, args)], capture_output=True, text=True)


def test_command_line_add_versions_verify(tmp_path):
    result = export(tmp_path / "raw")
    images, seg, _ = write_case_files(tmp_path / "files", make_case("p9", seed=9))
    done = run_cli("dataset", "add", result.dataset_dir, "--image", images[0], "--segmentation", seg, "--quiet")
    assert done.returncode == 0, done.stderr
    assert "version 2 (parent 1), 1 case(s) added" in done.stdout and "added 'p9'" in done.stdout
    again = run_cli("dataset", "add", result.dataset_dir, "--image", images[0], "--segmentation", seg, "--quiet")
    assert again.returncode == 1 and "case 'p9': a case with this id is already in the dataset" in again.stderr
    listed = run_cli("dataset", "versions", result.dataset_dir)
    assert listed.returncode == 0 and "v1" in listed.stdout and "v2  parent v1" in listed.stdout
    assert run_cli("dataset", "verify", result.dataset_dir).returncode == 0
    label = result.dataset_dir / "labelsTr" / "p9.nii.gz"
    data = bytearray(label.read_bytes())
    data[len(data) // 2] ^= 0xFF
    label.write_bytes(bytes(data))                                                       # tampered case file
    checked = run_cli("dataset", "verify", result.dataset_dir)
    assert checked.returncode == 1 and "labelsTr/p9.nii.gz: changed" in checked.stdout


def test_interrupted_add_leaves_dataset_as_it_was(tmp_path, monkeypatch):
    import backsplit.datasets.add as add_module

    result = export(tmp_path)
    before = snapshot_of([result.dataset_dir, result.binary_dataset_dir])

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(add_module, "_write_version_json", fail)   # a full disk while finishing the new version
    with pytest.raises(OutputError, match="disk .* is full"):
        add_cases([InMemoryCaseSource(make_case("n", seed=2))], AddRequest(result.dataset_dir))
    assert snapshot_of([result.dataset_dir, result.binary_dataset_dir]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [result.dataset_dir.name, result.binary_dataset_dir.name]
