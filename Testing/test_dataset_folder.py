"""The dataset folder's typed view (``DatasetFolder``) and its one content identity: the SHA-256 records export
writes into dataset.json are what preprocessing and the study scan use; datasets written before records existed
(older exports, plain nnU-Net datasets) still load and are hashed from their files, to the same values."""

import json
import os

import pytest
from fixtures_data import make_case

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.datasets.folder import DatasetFolder, load_dataset_folder
from backsplit.datasets.layout import read_dataset_json, write_dataset_json
from backsplit.datasets.versions import list_versions, verify_files
from backsplit.errors import InputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.study.hashing import FileHasher
from backsplit.study.scan import scan_dataset


class CountingHasher(FileHasher):
    """The study's file hasher, counting the files it had to read."""

    def __init__(self):
        super().__init__()
        self.read = []

    def __call__(self, path):
        self.read.append(path.name)
        return super().__call__(path)


def export(tmp_path, n=2):
    sources = [InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(n)]
    return export_dataset(sources, ExportRequest(tmp_path, 31, "Folder", ["Lesion"], ["Vessel", "Organ"]))


def make_old(folder):
    """Rewrite dataset.json as exports before dataset versions wrote it: no version, no file records, no format."""
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    for key in ("version", "parent_version", "versions", "files", "format_version"):
        meta["backsplit"].pop(key, None)
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def test_view_of_a_fresh_export(tmp_path):
    result = export(tmp_path)
    dataset = load_dataset_folder(result.dataset_dir)
    assert isinstance(dataset, DatasetFolder)
    assert (dataset.dataset_id, dataset.name, dataset.variant) == (31, "Folder", "backsplit")
    assert dataset.case_ids == ["c0", "c1"] and dataset.channel_names == ["CT"] and dataset.file_ending == ".nii.gz"
    assert dataset.version == 1 and dataset.twin_folder == result.binary_dataset_dir
    assert [c.name for c in dataset.schema.targets] == ["Lesion"]
    assert set(dataset.file_records) == {"imagesTr/c0_0000.nii.gz", "imagesTr/c1_0000.nii.gz",
                                         "labelsTr/c0.nii.gz", "labelsTr/c1.nii.gz"}
    twin = load_dataset_folder(result.binary_dataset_dir)
    assert twin.variant == "binary" and twin.twin_folder == result.dataset_dir


def test_scan_uses_the_recorded_hashes_and_rehashes_a_changed_file(tmp_path):
    result = export(tmp_path)
    hasher = CountingHasher()
    scan = scan_dataset(result.dataset_dir, hasher)
    assert hasher.read == []                                            # every case file came from its record
    label = result.dataset_dir / "labelsTr" / "c1.nii.gz"
    assert scan.label_hashes["c1"] == FileHasher()(label)               # one identity: the same 32 hex digits
    before = load_dataset_folder(result.dataset_dir).content_hash()

    data = bytearray(label.read_bytes())
    data[-1] ^= 1                                                       # same size, other bytes
    label.write_bytes(bytes(data))
    written = (result.dataset_dir / "dataset.json").stat().st_mtime_ns
    os.utime(label, ns=(written + 10**9, written + 10**9))             # modified after dataset.json
    dataset = load_dataset_folder(result.dataset_dir)
    assert dataset.recorded_hash(label) is None
    hasher = CountingHasher()
    rescan = scan_dataset(result.dataset_dir, hasher)
    assert hasher.read == ["c1.nii.gz"]
    assert rescan.label_hashes["c1"] != scan.label_hashes["c1"] and rescan.image_hashes == scan.image_hashes
    assert dataset.content_hash() != before


def test_an_export_written_before_file_records_still_loads(tmp_path):
    result = export(tmp_path)
    recorded = scan_dataset(result.dataset_dir, CountingHasher())
    make_old(result.dataset_dir)
    dataset = load_dataset_folder(result.dataset_dir)
    assert dataset.version == 1 and dataset.file_records == {} and dataset.variant == "backsplit"
    assert dataset.recorded_hash(result.dataset_dir / "labelsTr" / "c0.nii.gz") is None
    assert len(dataset.content_hash()) == 16
    hasher = CountingHasher()
    old = scan_dataset(result.dataset_dir, hasher)
    assert len(hasher.read) == 4                                        # no records: the files are hashed
    # ... to the very same values
    assert (old.image_hashes, old.label_hashes) == (recorded.image_hashes, recorded.label_hashes)
    assert [v.version for v in list_versions(result.dataset_dir)] == [1]
    assert "no file hashes are recorded" in verify_files(result.dataset_dir)[0]


def test_a_plain_nnunet_dataset_loads_as_external(tmp_path):
    result = export(tmp_path)
    meta = read_dataset_json(result.dataset_dir)
    del meta["backsplit"]
    write_dataset_json(result.dataset_dir, meta)
    dataset = load_dataset_folder(result.dataset_dir)
    assert dataset.variant == "external" and dataset.schema is None and dataset.twin_folder is None
    assert dataset.target_labels == [1, 2, 3] and dataset.file_records == {}
    assert len(scan_dataset(result.dataset_dir, CountingHasher()).label_hashes) == 2


def test_read_dataset_json_names_the_file_and_the_fix(tmp_path):
    (tmp_path / "dataset.json").write_text('{"labels": {"background": 0}}', encoding="utf-8")
    with pytest.raises(InputError, match="no 'channel_names'; export the dataset again") as raised:
        read_dataset_json(tmp_path)
    assert raised.value.path == str(tmp_path / "dataset.json")
    assert read_dataset_json(tmp_path, required=("labels",))["labels"] == {"background": 0}
    (tmp_path / "dataset.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="cannot be parsed .*; copy the model"):
        read_dataset_json(tmp_path, required=(), fix="copy the model")
