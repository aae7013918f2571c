"""Every compressed input is verified end to end (gzip CRC-32 and length, zlib Adler-32), streamed in bounded
memory, for images, labelmaps and .seg.nrrd alike, in export, prediction and evaluation."""

import gzip
import tracemalloc

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case, write_case_files
from fixtures_fidelity import damage_middle

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError
from backsplit.io.compressed import verify_compressed
from backsplit.io.readers import FileCaseSource, read_image


def ct_volume(shape=(32, 64, 64)):
    return np.random.default_rng(0).normal(0, 300, shape).astype(np.int16)


def test_nii_gz_damaged_in_the_middle_is_refused(tmp_path):
    """Fault 3: ITK reads it without complaint and about half of the voxels come back wrong."""
    volume = ct_volume()
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(path), True)
    damage_middle(path)
    garbage = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))    # what ITK alone gives
    assert (garbage != volume).mean() > 0.1
    with pytest.raises(gzip.BadGzipFile if hasattr(gzip, "BadGzipFile") else OSError):
        gzip.decompress(path.read_bytes())                            # Python's gzip sees the CRC error
    with pytest.raises(InputError, match=r"ct.nii.gz.*damaged.*gzip data fails the integrity check"):
        read_image(path, "ct")


def test_export_refuses_damaged_image_labelmap_and_seg_nrrd(tmp_path):
    for what in ("image", "seg"):
        case = make_case("d")
        images, seg, _ = write_case_files(tmp_path / what, case)
        damage_middle(images[0] if what == "image" else seg, count=16)
        with pytest.raises(InputError, match=r"case 'd'.*(d.nii.gz|d.seg.nrrd).*damaged"):
            export_dataset([FileCaseSource("d", images, seg)],
                           ExportRequest(tmp_path / f"raw-{what}", 501, "D", ["Lesion"], ["Vessel", "Organ"]))
        assert not (tmp_path / f"raw-{what}").exists() or not any((tmp_path / f"raw-{what}").iterdir())
    case = make_case("l")
    images, labelmap, names = write_case_files(tmp_path / "label", case, as_labelmap=True)
    damage_middle(labelmap, count=16)
    with pytest.raises(InputError, match=r"case 'l'.*l.label.nii.gz.*damaged"):
        FileCaseSource("l", images, labelmap, names).load()


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_gzip_nrrd_and_zlib_mha_are_verified(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume()), str(path), True)
    assert verify_compressed(path) is True
    damage_middle(path)
    with pytest.raises(InputError, match="damaged"):
        read_image(path, "v")


def test_truncated_and_uncompressed_files(tmp_path):
    path = tmp_path / "t.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume()), str(path), True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match=r"t.nii.gz.*truncated"):
        read_image(path, "t")
    plain = tmp_path / "p.nii"
    sitk.WriteImage(sitk.GetImageFromArray(ct_volume((4, 5, 6))), str(plain), False)
    assert verify_compressed(plain) is False


def test_verification_streams_in_bounded_memory(tmp_path):
    """256 MiB of voxels compressed to a few hundred kB: the check never holds the decompressed data."""
    path = tmp_path / "zeros.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        chunk = bytes(16 << 20)
        for _ in range(16):
            handle.write(chunk)
    del chunk
    tracemalloc.start()
    try:
        assert verify_compressed(path) is True
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"


def test_evaluation_refuses_a_damaged_prediction(tmp_path):
    from backsplit.evaluation.evaluate import evaluate_case
    from backsplit.labels.schema import LabelSchema

    labels = np.zeros((16, 32, 32), np.uint8)
    labels[4:12, 8:24, 8:24] = 1
    labels[6:10, 12:20, 12:20] = 2
    for name in ("pred", "ref"):
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / f"{name}.nii.gz"), True)
    damage_middle(tmp_path / "pred.nii.gz", count=8)
    with pytest.raises(InputError, match=r"case 'c'.*pred.nii.gz.*(damaged|truncated)"):
        evaluate_case("c", tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", LabelSchema.create(["Lesion"]))
