"""The command line end to end on generated files, and nnU-Net's own integrity check on what it wrote."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case, write_case_files

from backsplit.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backsplit", *map(str, args)], capture_output=True, text=True)


def test_export_from_csv_with_mapping_and_labelmaps(tmp_path):
    folder = tmp_path / "my cases"
    rows = []
    for i in range(3):
        case = make_case(f"pat {i}", seed=i)
        if i == 1:  # renamed segment in one case
            case.segments["renal lesion"] = case.segments.pop("Lesion")
        images, seg, names = write_case_files(folder, case, as_labelmap=(i == 2))
        if names:
            (folder / "names.json").write_text(json.dumps({str(k): v for k, v in names.items()}))
        rows.append({"case_id": case.case_id, "image": images[0].name, "segmentation": seg.name,
                     "names": "names.json" if names else ""})
    with open(folder / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "raw"
    proc = run_cli("export", "--cases", folder / "cases.csv", "--targets", "lesion", "--supports", "vessel,organ",
                   "--map", "renal lesion=lesion", "--out", out, "--id", "7", "--name", "Pats")
    assert proc.returncode == 0, proc.stderr
    assert "Dataset007_Pats" in proc.stdout and "Dataset008_PatsBinary" in proc.stdout
    assert "[" in proc.stderr and "100%" in proc.stderr  # progress bar
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "Dataset007_Pats" / "labelsTr" / "pat 1.nii.gz")))
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # Second run refuses to overwrite, with a clear message and exit code 1.
    again = run_cli("export", "--cases", folder / "cases.csv", "--targets", "lesion", "--supports", "vessel,organ",
                    "--map", "renal lesion=lesion", "--out", out, "--id", "7", "--name", "Pats")
    assert again.returncode == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_cli_reports_bad_segment_name_without_traceback(tmp_path, capsys):
    write_case_files(tmp_path / "in", make_case("c1"))
    code = main(["export", "--folder", str(tmp_path / "in"), "--targets", "Tumour", "--supports", "organ",
                 "--out", str(tmp_path / "raw"), "--id", "9", "--name", "X", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "case 'c1', segment 'Tumour'" in err and "missing" in err
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def test_demo_command_writes_both_datasets(tmp_path):
    proc = run_cli("demo", "--out", tmp_path / "demo", "--cases", "3", "--stop-after", "export")
    assert proc.returncode == 0, proc.stderr
    raw = tmp_path / "demo" / "nnUNet_raw"
    meta = json.loads((raw / "Dataset501_DemoKidneyCyst" / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "cyst": 1, "tumor": 2, "kidney": 3}
    assert meta["numTraining"] == 3
    assert (raw / "Dataset502_DemoKidneyCystBinary" / "dataset.json").is_file()


def test_nnunet_integrity_check_accepts_exported_datasets(tmp_path, cases):
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.io.cases import InMemoryCaseSource

    sources = cases + [InMemoryCaseSource(make_case("negative", lesion=False))]
    result = export_dataset(sources, ExportRequest(tmp_path, 601, "Check", ["Lesion"], ["Vessel", "Organ"],
                                                   allow_negative_cases=True))
    verify_dataset_integrity(str(result.dataset_dir), num_processes=1)   # raises on any problem
    verify_dataset_integrity(str(result.binary_dataset_dir), num_processes=1)
