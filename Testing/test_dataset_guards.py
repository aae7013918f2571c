"""Issue 21, dataset side: a class that no case has (export, dataset add, the scene path's lazily loaded cases),
kept versions protected from in-place edits of the newest, interrupted renames of ``dataset add``, case ids too long
for a file name and read-only dataset folders. Real exports on tiny in-memory and file cases."""

import json
import os

import pytest
from fixtures_data import make_case, write_case_files

from backsplit.cli import main
from backsplit.datasets.add import AddRequest, add_cases
from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError
from backsplit.io.cases import InMemoryCaseSource, LazyCaseSource


def _files(tmp_path, n=3):
    folder = tmp_path / "cases"
    for i in range(n):
        write_case_files(folder, make_case(f"c{i}", seed=i))
    return folder


def _export_cli(tmp_path, folder, *extra):
    return main(["export", "--folder", str(folder), "--out", str(tmp_path / "raw"), "--id", "7", "--name", "T",
                 "--quiet", *extra])


def test_export_typo_target_with_allow_negative_is_refused(tmp_path, capsys):
    # today: exit 0 and a dataset without a single lesion voxel (every case taken as negative)
    folder = _files(tmp_path)
    code = _export_cli(tmp_path, folder, "--targets", "Lesoin", "--supports", "Organ", "--allow-negative")
    err = capsys.readouterr().err
    assert code != 0, err
    assert "did you mean 'Lesion' (in 3 of 3 cases)?" in err and "--map 'Lesion=Lesoin'" in err
    assert "mark the case as a negative case" not in err           # --allow-negative is not offered as the fix
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").glob("Dataset*"))


def test_export_support_typo_with_missing_as_absent_is_refused(tmp_path, capsys):
    # today: exit 0, an all-empty 'Vesel' class, the vessel voxels folded into background
    folder = _files(tmp_path)
    code = _export_cli(tmp_path, folder, "--targets", "Lesion", "--supports", "Vesel", "--missing-as-absent")
    err = capsys.readouterr().err
    assert code != 0 and "did you mean 'Vessel'" in err and "support segment is missing in every case" in err


def test_absent_class_refused_for_lazily_loaded_cases(tmp_path):
    # the Slicer panel's and the study's sources load lazily: no header to read up front, checked after the cases
    sources = [LazyCaseSource(f"c{i}", (lambda i=i: make_case(f"c{i}", seed=i))) for i in range(2)]
    with pytest.raises(InputError, match=r"target segment is missing in every case.*did you mean 'Lesion'"):
        export_dataset(sources, ExportRequest(tmp_path, 31, "Lazy", ["Lesoin"], ["Organ"],
                                              allow_negative_cases=True))
    assert not list(tmp_path.glob("Dataset*"))
    with pytest.raises(InputError, match=r"support segment is missing in every case.*did you mean 'Organ'"):
        export_dataset(sources, ExportRequest(tmp_path, 31, "Lazy", ["Lesion"], ["Organn"],
                                              missing_segments="absent"))


def test_dataset_add_refuses_a_class_absent_everywhere(tmp_path):
    sources = [InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(2)]
    result = export_dataset(sources, ExportRequest(tmp_path, 21, "Grow", ["Lesion"], ["Vessel", "Organ"]))
    # a dataset written before the check, with 'Vessel' recorded absent in every case
    meta_path = result.dataset_dir / "dataset.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["backsplit"]["absent_segments"] = {"c0": ["Vessel"], "c1": ["Vessel"]}
    meta_path.write_text(json.dumps(meta))
    new = make_case("new", seed=5)
    del new.segments["Vessel"]
    with pytest.raises(InputError, match=r"'Vessel' is in none of the 1 case"):
        add_cases([InMemoryCaseSource(new)], AddRequest(result.dataset_dir, missing_segments="absent"))
    # the dataset's own cases have it: a new case without it is fine (recorded absent)
    meta["backsplit"]["absent_segments"] = {}
    meta_path.write_text(json.dumps(meta))
    added = add_cases([InMemoryCaseSource(new)], AddRequest(result.dataset_dir, missing_segments="absent"))
    assert added.absent_segments == {"new": ["Vessel"]}


def _grow(tmp_path):
    sources = [InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(2)]
    return export_dataset(sources, ExportRequest(tmp_path, 21, "Grow", ["Lesion"], ["Vessel", "Organ"]))


def _contents(*folders):
    return {f"{f.name}/{p.relative_to(f).as_posix()}": p.read_bytes() for f in folders for p in sorted(f.rglob("*"))
            if p.is_file()}


def test_add_interrupted_between_renames_restores(tmp_path, monkeypatch):
    # today: Ctrl-C after the live folders went into the snapshot left no dataset and deleted the new version.
    # The one stand-in: os.replace raises KeyboardInterrupt at an exact rename (a signal cannot be timed that well).
    result = _grow(tmp_path)
    before = _contents(result.dataset_dir, result.binary_dataset_dir)
    real_replace, calls = os.replace, []

    def interrupted(src, dst, *a, **kw):
        if os.fspath(dst) == os.fspath(result.dataset_dir) and not calls:   # the new version moving into place
            calls.append(src)
            raise KeyboardInterrupt
        return real_replace(src, dst, *a, **kw)
    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        add_cases([InMemoryCaseSource(make_case("n", seed=4))], AddRequest(result.dataset_dir))
    monkeypatch.setattr(os, "replace", real_replace)
    assert calls and _contents(result.dataset_dir, result.binary_dataset_dir) == before
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".backsplit-add-")]   # staging cleaned up
    assert not (tmp_path / "backsplit_versions" / result.dataset_dir.name / "v1").exists()
    added = add_cases([InMemoryCaseSource(make_case("n", seed=4))], AddRequest(result.dataset_dir))
    assert added.version == 2


def test_ctrl_c_during_the_renames_waits_for_them(tmp_path, monkeypatch):
    # a real SIGINT sent while the folders move: held back until every rename is done, then raised
    import signal

    result = _grow(tmp_path)
    real_replace, sent = os.replace, []

    def with_signal(src, dst, *a, **kw):
        if os.fspath(dst) == os.fspath(result.dataset_dir) and not sent:
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGINT)
        return real_replace(src, dst, *a, **kw)
    monkeypatch.setattr(os, "replace", with_signal)
    with pytest.raises(KeyboardInterrupt):
        add_cases([InMemoryCaseSource(make_case("n", seed=4))], AddRequest(result.dataset_dir))
    monkeypatch.setattr(os, "replace", real_replace)
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    twin = json.loads((result.binary_dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert sent and meta["backsplit"]["version"] == twin["backsplit"]["version"] == 2   # the pair moved together
    assert (tmp_path / "backsplit_versions" / result.dataset_dir.name / "v1" / result.dataset_dir.name).is_dir()


def test_add_after_an_add_killed_before_its_first_rename(tmp_path):
    # today: the empty version folder left behind made every later add fail ("exists already")
    result = _grow(tmp_path)
    (tmp_path / "backsplit_versions" / result.dataset_dir.name / "v1").mkdir(parents=True)
    added = add_cases([InMemoryCaseSource(make_case("n", seed=4))], AddRequest(result.dataset_dir))
    assert added.version == 2 and (added.previous_version_dir / result.dataset_dir.name).is_dir()


def test_kept_version_survives_in_place_label_edit(tmp_path, capsys):
    # today: the kept version's label file is a hard link of the newest's, so writing into it changes version 1
    import SimpleITK as sitk

    result = _grow(tmp_path)
    add_cases([InMemoryCaseSource(make_case("n", seed=4))], AddRequest(result.dataset_dir))
    kept = tmp_path / "backsplit_versions" / result.dataset_dir.name / "v1" / result.dataset_dir.name
    kept_label = (kept / "labelsTr" / "c0.nii.gz").read_bytes()
    newest = result.dataset_dir / "labelsTr" / "c0.nii.gz"
    image = sitk.ReadImage(str(newest))
    corrected = sitk.GetArrayFromImage(image) * 0
    fixed = sitk.GetImageFromArray(corrected)
    fixed.CopyInformation(image)
    sitk.WriteImage(fixed, str(newest))                                  # written into the same path, in place
    assert (kept / "labelsTr" / "c0.nii.gz").read_bytes() == kept_label
    assert main(["dataset", "verify", str(kept)]) == 0
    # an image is still a hard link: written in place, the kept version is named by 'versions' and 'verify'
    shared = result.dataset_dir / "imagesTr" / "c1_0000.nii.gz"
    assert shared.stat().st_ino == (kept / "imagesTr" / "c1_0000.nii.gz").stat().st_ino
    old_time = shared.stat().st_mtime
    with open(shared, "r+b") as handle:                                 # an in-place write, one byte changed
        handle.seek(40)
        byte = handle.read(1)
        handle.seek(40)
        handle.write(bytes([byte[0] ^ 1]))
    os.utime(shared, (old_time + 60, old_time + 60))                    # as a later edit leaves it
    capsys.readouterr()
    assert main(["dataset", "versions", str(result.dataset_dir)]) == 0
    out = capsys.readouterr().out
    assert "1 case file(s) modified after this version was kept (imagesTr/c1_0000.nii.gz)" in out
    assert main(["dataset", "verify", str(kept)]) == 1
    assert "imagesTr/c1_0000.nii.gz: changed since it was recorded" in capsys.readouterr().out


def test_long_case_id_refused(tmp_path):
    # today: an OSError (File name too long) deep in the writer; now one line naming the id and the longest allowed
    case = make_case("x" * 240, seed=1)
    with pytest.raises(InputError, match=r"case 'x{24}\.\.\.': the case id is 240 bytes long.*shorten the id to at "
                                         r"most 238 bytes"):
        export_dataset([InMemoryCaseSource(case)], ExportRequest(tmp_path, 41, "Long", ["Lesion"]))
    result = _grow(tmp_path)
    with pytest.raises(InputError, match="is 240 bytes long"):
        add_cases([InMemoryCaseSource(case)], AddRequest(result.dataset_dir))
    export_dataset([InMemoryCaseSource(make_case("y" * 238))], ExportRequest(tmp_path, 43, "Edge", ["Lesion"]))


def test_dataset_add_into_read_only_folder(tmp_path, read_only, capsys):
    # today: a PermissionError / OSError traceback from the lock file
    writable, freeze = read_only
    raw = writable(tmp_path / "raw")
    result = export_dataset([InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(2)],
                            ExportRequest(raw, 21, "Grow", ["Lesion"], ["Vessel", "Organ"]))
    folder = tmp_path / "new"
    write_case_files(folder, make_case("n", seed=3))
    freeze(raw)
    code = main(["dataset", "add", str(result.dataset_dir), "--folder", str(folder), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"cannot write in the folder '{raw.resolve()}'" in err and ".backsplit-add-Dataset021_Grow.lock" in err
    assert "make the folder writable" in err and "Traceback" not in err
