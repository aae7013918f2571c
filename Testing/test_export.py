"""Dataset export: content of both datasets, and every kind of bad input (clear error, nothing written)."""

import errno
import json
import os
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case, write_case_files

from backsplit.datasets.export import ExportRequest, export_dataset, iter_export
from backsplit.errors import CancelledError, InputError, OutputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.io.readers import FileCaseSource


def request(tmp_path, **kw):
    defaults = dict(out_root=tmp_path / "raw", dataset_id=501, dataset_name="Test", targets=["Lesion"],
                    supports=["Vessel", "Organ"])
    defaults.update(kw)
    return ExportRequest(**defaults)


def read(path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def assert_nothing_written(tmp_path):
    raw = tmp_path / "raw"
    assert not raw.exists() or list(raw.iterdir()) == [], list(raw.iterdir())


def test_export_writes_backsplit_and_binary_twin(tmp_path, cases):
    result = export_dataset(cases, request(tmp_path))
    main, twin = result.dataset_dir, result.binary_dataset_dir
    assert main.name == "Dataset501_Test" and twin.name == "Dataset502_TestBinary"
    meta = json.loads((main / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3}
    assert meta["channel_names"] == {"0": "CT"} and meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    assert [t["name"] for t in meta["backsplit"]["schema"]["targets"]] == ["Lesion"]
    assert [s["role"] for s in meta["backsplit"]["schema"]["supports"]] == ["support", "support"]
    assert meta["backsplit"]["twin"] == twin.name and meta["backsplit"]["variant"] == "backsplit"
    twin_meta = json.loads((twin / "dataset.json").read_text(encoding="utf-8"))
    assert twin_meta["labels"] == {"background": 0, "Lesion": 1}
    assert twin_meta["backsplit"]["variant"] == "binary" and twin_meta["backsplit"]["twin"] == main.name
    for source in cases:
        case = source.load()
        labels, image = read(main / "labelsTr" / f"{case.case_id}.nii.gz")
        # lesion wins over organ; vessel (earlier support) wins over organ
        assert (labels[case.segments["Lesion"]] == 1).all()
        assert (labels[case.segments["Vessel"] & ~case.segments["Lesion"]] == 2).all()
        assert (labels[case.segments["Organ"] & ~case.segments["Vessel"] & ~case.segments["Lesion"]] == 3).all()
        assert (labels[~(case.segments["Organ"] | case.segments["Vessel"] | case.segments["Lesion"])] == 0).all()
        assert image.GetSpacing() == case.geometry.spacing
        binary, _ = read(twin / "labelsTr" / f"{case.case_id}.nii.gz")
        assert np.array_equal(binary, np.where(labels == 1, 1, 0))
        img_main, _ = read(main / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        img_twin, _ = read(twin / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        assert np.array_equal(img_main, case.channels[0]) and np.array_equal(img_twin, img_main)
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".")]  # no staging left


def test_oblique_geometry_and_multichannel_preserved(tmp_path):
    angle = np.deg2rad(20)
    direction = [np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1]
    case = make_case("obl", direction=direction, origin=(10.5, -3.25, 7.0), channels=2)
    result = export_dataset([InMemoryCaseSource(case)], request(tmp_path, channel_names=["CT", "PET"]))
    for index in range(2):
        array, image = read(result.dataset_dir / "imagesTr" / f"obl_{index:04d}.nii.gz")
        assert np.array_equal(array, case.channels[index])
        assert np.allclose(image.GetDirection(), direction, atol=1e-6)
        assert np.allclose(image.GetOrigin(), (10.5, -3.25, 7.0))
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["channel_names"] == {"0": "CT", "1": "PET"}


def test_names_with_spaces_and_non_ascii(tmp_path):
    case = make_case("patient ü 1")
    case.segments = {"Läsion 1": case.segments["Lesion"], "Niere links": case.segments["Organ"]}
    out = tmp_path / "dir ü é"
    result = export_dataset([InMemoryCaseSource(case)],
                            request(tmp_path, out_root=out, targets=["läsion 1"], supports=["Niere links"]))
    assert (result.dataset_dir / "labelsTr" / "patient ü 1.nii.gz").is_file()
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "läsion 1": 1, "Niere links": 2}
    assert meta["backsplit"]["schema"]["targets"][0]["sources"] == ["Läsion 1"]


def test_negative_case_needs_explicit_choice_and_is_recorded(tmp_path):
    sources = [InMemoryCaseSource(make_case("pos")), InMemoryCaseSource(make_case("neg", lesion=False))]
    with pytest.raises(InputError, match=r"case 'neg'.*no target voxel.*negative case"):
        export_dataset(sources, request(tmp_path))
    assert_nothing_written(tmp_path)
    result = export_dataset(sources, request(tmp_path, allow_negative_cases=True))
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["backsplit"]["negative_cases"] == ["neg"]
    assert result.negative_cases == ["neg"]


def test_missing_support_segment_error_or_absent(tmp_path):
    case = make_case("c1")
    del case.segments["Vessel"]
    sources = [InMemoryCaseSource(case), InMemoryCaseSource(make_case("c0"))]   # c0 has the Vessel
    with pytest.raises(InputError, match=r"case 'c1', segment 'Vessel'.*missing.*absent"):
        export_dataset(sources, request(tmp_path))
    assert_nothing_written(tmp_path)
    result = export_dataset(sources, request(tmp_path, missing_segments="absent"))
    assert result.absent_segments == {"c1": ["Vessel"]}
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["backsplit"]["absent_segments"] == {"c1": ["Vessel"]}
    labels, _ = read(result.dataset_dir / "labelsTr" / "c1.nii.gz")
    assert set(np.unique(labels)) == {0, 1, 3}


def test_missing_target_segment_is_error(tmp_path):
    case = make_case("c2")
    del case.segments["Lesion"]
    with pytest.raises(InputError, match=r"case 'c2', segment 'Lesion'.*target segment is missing"):
        export_dataset([InMemoryCaseSource(case)], request(tmp_path))


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.channels[0].__setitem__((0, 0, 0), 0) or setattr(c, "channels", [c.channels[0].astype(float)]) or
     c.channels[0].__setitem__((1, 1, 1), np.nan), "NaN or infinite"),
    (lambda c: setattr(c, "channels", [c.channels[0].astype(np.float32) * np.inf]), "NaN or infinite"),
    (lambda c: setattr(c, "channels", [c.channels[0][0]]), "2D"),
    (lambda c: setattr(c, "channels", [c.channels[0][None]]), "4D"),
    (lambda c: c.segments.__setitem__("Organ", c.segments["Organ"][:, :, :5]), "segment 'Organ'.*size"),
    (lambda c: c.segments.__setitem__("organ", c.segments["Organ"]), "same name when case is ignored"),
])
def test_bad_case_content(tmp_path, mutate, message):
    good = InMemoryCaseSource(make_case("good"))
    bad_case = make_case("bad")
    mutate(bad_case)
    with pytest.raises(InputError, match=message) as info:
        export_dataset([good, InMemoryCaseSource(bad_case)], request(tmp_path))
    assert "case 'bad'" in str(info.value)
    assert_nothing_written(tmp_path)


def test_wrong_channel_count(tmp_path):
    with pytest.raises(InputError, match=r"case 'c'.*1 image channel.*expects 2"):
        export_dataset([InMemoryCaseSource(make_case("c"))], request(tmp_path, channel_names=["CT", "PET"]))


def test_empty_list_and_duplicate_ids(tmp_path):
    with pytest.raises(InputError, match="case list is empty"):
        export_dataset([], request(tmp_path))
    with pytest.raises(InputError, match=r"case 'x'.*used twice"):
        export_dataset([InMemoryCaseSource(make_case("x")), InMemoryCaseSource(make_case("x"))], request(tmp_path))
    with pytest.raises(InputError, match="file name"):
        export_dataset([InMemoryCaseSource(make_case("a/b"))], request(tmp_path))
    assert_nothing_written(tmp_path)


def test_existing_dataset_is_never_overwritten_unless_asked(tmp_path, cases):
    first = export_dataset(cases[:1], request(tmp_path))
    before = (first.dataset_dir / "dataset.json").read_text(encoding="utf-8")
    for kw in ({}, {"dataset_name": "Other"}, {"dataset_id": 500}):  # 500: its twin would take 501
        with pytest.raises(OutputError, match="already exists"):
            export_dataset(cases, request(tmp_path, **kw))
    assert (first.dataset_dir / "dataset.json").read_text(encoding="utf-8") == before
    second = export_dataset(cases, request(tmp_path, overwrite=True))
    assert json.loads((second.dataset_dir / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 3
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset501_Test", "Dataset502_TestBinary"]


def test_output_not_writable(tmp_path, cases):
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        export_dataset(cases, request(tmp_path, out_root=blocker / "raw"))


def test_disk_full_leaves_nothing(tmp_path, cases, monkeypatch):
    # A full disk cannot be produced portably without root; simulate the OSError the writer would raise.
    import backsplit.io.niftiio as niftiio

    calls = {"n": 0}
    real = niftiio.compress_file

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(niftiio, "compress_file", failing)
    with pytest.raises(OutputError, match="disk.*full"):
        export_dataset(cases, request(tmp_path))
    assert_nothing_written(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0 if hasattr(os, "geteuid") else True, reason="needs root to mount a tmpfs")
def test_real_full_disk_on_small_tmpfs(tmp_path, cases):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        big = [InMemoryCaseSource(make_case(f"big{i}", shape=(40, 40, 40), seed=i)) for i in range(3)]
        with pytest.raises(OutputError, match="full"):
            export_dataset(big, request(tmp_path, out_root=mount))
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)])


def test_cancel_between_cases(tmp_path, cases):
    steps = []
    with pytest.raises(CancelledError):
        for event in iter_export(cases, request(tmp_path), cancel=lambda: len(steps) >= 2):
            steps.append(event)
    assert_nothing_written(tmp_path)


# ---- cases from files ------------------------------------------------------------------------------------------

def test_file_cases_seg_nrrd_and_labelmap(tmp_path):
    case_a, case_b = make_case("a"), make_case("b", seed=1)
    images_a, seg_a, _ = write_case_files(tmp_path / "in", case_a)
    images_b, seg_b, names = write_case_files(tmp_path / "in", case_b, as_labelmap=True)
    sources = [FileCaseSource("a", images_a, seg_a), FileCaseSource("b", images_b, seg_b, names)]
    loaded = sources[0].load()
    assert all(np.array_equal(loaded.segments[k], case_a.segments[k]) for k in case_a.segments)  # overlaps kept
    result = export_dataset(sources, request(tmp_path, missing_segments="absent"))
    labels_b, _ = read(result.dataset_dir / "labelsTr" / "b.nii.gz")
    assert (labels_b[case_b.segments["Lesion"]] == 1).all()


def test_cropped_seg_nrrd_is_pasted_into_image_grid(tmp_path):
    from backsplit.io.geometry import Geometry
    from backsplit.io.segfile import write_seg_nrrd

    case = make_case("crop")
    images, _, _ = write_case_files(tmp_path, case)
    # Slicer crops .seg.nrrd files to the segments' extent: write a sub-block with a shifted origin.
    sub = (slice(2, 10), slice(3, 13), slice(4, 16))
    g = case.geometry
    origin = np.asarray(g.origin) + g.direction_matrix @ (np.array([4, 3, 2]) * np.asarray(g.spacing))
    cropped = Geometry.create(g.spacing, origin, g.direction, (8, 10, 12))
    write_seg_nrrd(tmp_path / "crop.seg.nrrd", cropped, {k: v[sub] for k, v in case.segments.items()
                                                          if k != "Vessel"})
    loaded = FileCaseSource("crop", images, tmp_path / "crop.seg.nrrd").load()
    assert np.array_equal(loaded.segments["Organ"], case.segments["Organ"])
    assert np.array_equal(loaded.segments["Lesion"], case.segments["Lesion"])


@pytest.mark.parametrize("change,what", [
    (dict(spacing=(1.0, 1.5, 2.5)), "spacing"),
    (dict(direction=[0, 1, 0, 1, 0, 0, 0, 0, 1]), "direction"),
    (dict(origin=(0.3, 0.0, 0.0)), "origin"),
])
def test_image_segmentation_geometry_mismatch_names_what_differs(tmp_path, change, what):
    from backsplit.io.geometry import Geometry
    from backsplit.io.segfile import write_seg_nrrd

    case = make_case("geo")
    images, _, _ = write_case_files(tmp_path, case)
    g = case.geometry
    params = dict(spacing=g.spacing, origin=g.origin, direction=g.direction, shape=g.shape)
    params.update(change)
    write_seg_nrrd(tmp_path / "geo.seg.nrrd", Geometry.create(**params), case.segments)
    with pytest.raises(InputError, match=rf"case 'geo'.*geo.seg.nrrd.*{what} differs"):
        FileCaseSource("geo", images, tmp_path / "geo.seg.nrrd").load()


def test_channel_geometry_mismatch(tmp_path):
    case = make_case("ch", channels=2)
    images, seg, _ = write_case_files(tmp_path, case)
    img = sitk.ReadImage(str(images[1]))
    img.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(img, str(images[1]))
    with pytest.raises(InputError, match=r"case 'ch'.*channel 1.*origin differs"):
        export_dataset([FileCaseSource("ch", images, seg)], request(tmp_path, channel_names=["CT", "PET"]))
    assert_nothing_written(tmp_path)


def test_unreadable_truncated_and_missing_files(tmp_path):
    case = make_case("t")
    images, seg, _ = write_case_files(tmp_path, case)
    data = images[0].read_bytes()
    images[0].write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"case 't'.*t.nii.gz.*cannot be read"):
        FileCaseSource("t", images, seg).load()
    (tmp_path / "junk.nii.gz").write_text("not an image")
    with pytest.raises(InputError, match="junk.nii.gz.*cannot be read"):
        FileCaseSource("t", [tmp_path / "junk.nii.gz"], seg).load()
    with pytest.raises(InputError, match="does not exist"):
        FileCaseSource("t", [tmp_path / "nope.nii.gz"], seg).load()
    good_images, _, _ = write_case_files(tmp_path / "ok", case)
    with pytest.raises(InputError, match="needs a name map"):
        FileCaseSource("t", good_images, good_images[0]).load()


def test_2d_and_4d_image_files_are_refused(tmp_path):
    case = make_case("f")
    _, seg, _ = write_case_files(tmp_path, case)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16), isVector=False),
                    str(tmp_path / "four.nii.gz"))
    with pytest.raises(InputError, match=r"case 'f'.*four.nii.gz.*is 4D"):
        FileCaseSource("f", [tmp_path / "four.nii.gz"], seg).load()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.int16)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match=r"flat.nii.gz.*is 2D"):
        FileCaseSource("f", [tmp_path / "flat.nii.gz"], seg).load()
