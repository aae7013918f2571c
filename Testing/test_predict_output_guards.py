"""Issue 21 item 9 (predict side): a read-only output folder and a case id too long for the output file names give
one line naming the folder or id and the fix, before any file is written (today: an OSError traceback). Real
tiny trained model (the shared session fixture), real read-only folder (``read_only`` in fixtures_data)."""

import subprocess
import sys

import numpy as np
import SimpleITK as sitk


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).normal(40, 10, (8, 16, 16)).astype(np.int16)   # a CT-like, non-constant image
    sitk.WriteImage(sitk.GetImageFromArray(noise), str(path))
    return path


def _predict(*args):
    return subprocess.run([sys.executable, "-m", "backsplit", "predict", *map(str, args), "--device", "cpu",
                           "--quiet"], capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_predict_into_read_only_folder(tiny_model_dir, tmp_path, read_only):
    writable, freeze = read_only
    out = writable(tmp_path / "out")
    freeze(out)
    run = _predict(tiny_model_dir, _image(tmp_path / "in" / "a.nii.gz"), "--out", out)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert f"cannot write in the folder '{out}'" in run.stderr and "choose another output folder (--out)" in run.stderr


def test_predict_long_case_id_refused(tiny_model_dir, tmp_path):
    long_id = "p" * 230                                   # 237-byte input name: fine; outputs need 272 bytes
    run = _predict(tiny_model_dir, _image(tmp_path / "in" / f"{long_id}.nii.gz"), "--out", tmp_path / "out")
    assert run.returncode == 1 and "the case id is 230 bytes long" in run.stderr, run.stderr
    assert "shorten the id to at most 213 bytes" in run.stderr and "Traceback" not in run.stderr
    assert not list((tmp_path / "out").glob("*.nii.gz"))
