"""Generated context labels (CoLab): rings around the lesions and intensity clusters, checked on hand-made arrays
with known answers, through the export (dataset.json, label values, binary twin) and the command line."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.labels.context import ContextSpec, add_context, intensity_clusters, kmeans_1d, otsu_threshold, ring_masks


def test_spec_parsing_and_names():
    assert ContextSpec.parse(None) == ContextSpec() and not ContextSpec().enabled
    rings = ContextSpec.parse("rings:3,10")
    assert rings.ring_widths_mm == (3.0, 10.0) and rings.class_names() == ["ring 0-3 mm", "ring 3-10 mm"]
    assert ContextSpec.parse("rings").class_names() == ["ring 0-5 mm", "ring 5-15 mm"]
    assert ContextSpec.parse("kmeans:3").class_names() == ["intensity 1 of 3", "intensity 2 of 3", "intensity 3 of 3"]
    for bad in ("rings:10,3", "rings:-1", "kmeans:0", "kmeans:x", "blobs"):
        with pytest.raises(InputError):
            ContextSpec.parse(bad)


def test_rings_follow_physical_distance():
    target = np.zeros((9, 21, 21), bool)
    target[4, 10, 10] = True
    spacing = (3.0, 1.0, 1.0)                                  # z voxels are 3 mm apart
    inner, outer = ring_masks(target, spacing, (2.0, 4.0))
    assert inner[4, 10, 12] and not inner[4, 10, 13]            # 2 mm in x: in the first ring, 3 mm: not
    assert outer[4, 10, 13] and outer[4, 10, 14] and not outer[4, 10, 15]
    assert outer[5, 10, 10] and not inner[5, 10, 10]            # 3 mm in z
    assert not (inner & outer).any() and not (inner & target).any()
    assert not any(r.any() for r in ring_masks(np.zeros((3, 3, 3), bool), spacing, (2.0,)))


def test_kmeans_and_otsu_on_known_intensities():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-1000, 5, 5000), rng.normal(0, 5, 3000), rng.normal(300, 5, 2000)])
    assert -990 < otsu_threshold(values) < -10
    centres = kmeans_1d(values[values > -500], 2)
    assert abs(centres[0]) < 5 and abs(centres[1] - 300) < 5
    image = np.full((4, 10, 10), -1000, np.int16)               # air outside the body
    image[:, 2:8, 2:8] = 40                                     # soft tissue
    image[:, 4:6, 4:6] = 400                                    # bone
    background = np.ones(image.shape, bool)
    background[0] = False                                       # a labelled slice stays as it is
    soft, bone = intensity_clusters(image, background, 2)
    expected_bone = (image == 400) & background
    assert np.array_equal(bone, expected_bone) and np.array_equal(soft, (image == 40) & background)


def test_otsu_and_kmeans_agree_with_scikit_image_and_scikit_learn():
    """ITK's Otsu (SimpleITK) and SciPy's k-means against scikit-image's and scikit-learn's (installed with nnU-Net):
    the thresholds differ by at most one histogram bin (ITK gives a bin edge, scikit-image a bin centre)."""
    filters = pytest.importorskip("skimage.filters")
    cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(-800, 40, 4000), rng.normal(50, 20, 3000), rng.normal(700, 60, 1000)])
    bin_width = (values.max() - values.min()) / 256
    assert abs(otsu_threshold(values) - filters.threshold_otsu(values, nbins=256)) <= bin_width
    body = values[values > otsu_threshold(values)]
    start = np.quantile(body, [0.25, 0.75]).reshape(-1, 1)
    reference = cluster.KMeans(2, init=start, n_init=1).fit(body.reshape(-1, 1)).cluster_centers_[:, 0]
    assert np.allclose(kmeans_1d(body, 2), np.sort(reference), atol=1e-6)


def test_add_context_paints_background_only():
    labels = np.zeros((5, 12, 12), np.uint8)
    labels[2, 5:7, 5:7] = 1           # lesion
    labels[:, 8:, :] = 2              # a user's support structure
    image = np.zeros(labels.shape, np.float32)
    out = add_context(labels, image, (1.0, 1.0, 1.0), 1, 3, ContextSpec("rings", (1.5, 3.0)))
    assert np.array_equal(out[labels > 0], labels[labels > 0])   # lesion and support untouched
    assert set(np.unique(out)) == {0, 1, 2, 3, 4}
    assert out[2, 4, 5] == 3 and out[2, 3, 5] == 4 and out[2, 0, 0] == 0
    assert add_context(labels, image, (1, 1, 1), 1, 3, ContextSpec()) is labels


def test_export_with_rings_and_twin(tmp_path):
    sources = [InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(2)]
    request = ExportRequest(tmp_path, 21, "Rings", ["Lesion"], ["Organ"], context=ContextSpec("rings", (2.0, 4.0)))
    result = export_dataset(sources, request)
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "Lesion": 1, "Organ": 2, "ring 0-2 mm": 3, "ring 2-4 mm": 4}
    supports = meta["backsplit"]["schema"]["supports"]
    assert [s["sources"] for s in supports][1:] == [["generated (rings)"]] * 2
    assert meta["backsplit"]["context"] == {"method": "rings", "ring_widths_mm": [2.0, 4.0]}
    case = make_case("c0", seed=0)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(result.dataset_dir / "labelsTr" / "c0.nii.gz")))
    assert (labels[case.segments["Lesion"]] == 1).all()
    assert (labels[case.segments["Organ"] & ~case.segments["Lesion"]] == 2).all()   # organ wins over rings
    ring = (labels == 3) | (labels == 4)
    assert ring.any() and not (ring & case.segments["Organ"]).any()   # the lesion sits inside the organ here...
    twin = sitk.GetArrayFromImage(sitk.ReadImage(str(result.binary_dataset_dir / "labelsTr" / "c0.nii.gz")))
    assert np.array_equal(twin, (labels == 1).astype(twin.dtype))
    assert json.loads((result.binary_dataset_dir / "dataset.json").read_text(encoding="utf-8"))["labels"] == \
        {"background": 0, "Lesion": 1}


def test_export_with_kmeans_and_no_organ_labels(tmp_path):
    """Only the lesion is labelled: the context classes are all the support there is."""
    sources = [InMemoryCaseSource(make_case(f"c{i}", seed=i)) for i in range(2)]
    request = ExportRequest(tmp_path, 23, "Kmeans", ["Lesion"], [], context=ContextSpec("kmeans", clusters=2))
    result = export_dataset(sources, request)
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert list(meta["labels"]) == ["background", "Lesion", "intensity 1 of 2", "intensity 2 of 2"]
    case = make_case("c1", seed=1)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(result.dataset_dir / "labelsTr" / "c1.nii.gz")))
    assert (labels[case.segments["Lesion"]] == 1).all()
    image = case.channels[0]
    dark, bright = image[labels == 2], image[labels == 3]
    assert dark.size and bright.size and dark.max() <= bright.min()
    # Otsu's threshold puts the dim surroundings (40 +- 10) outside the body and the organ (140 +- 10) inside it:
    # the two clusters split the organ, nothing outside it becomes context
    assert not ((labels >= 2) & ~case.segments["Organ"]).any()
    assert ((labels >= 2) == (case.segments["Organ"] & ~case.segments["Lesion"])).mean() > 0.99


def test_context_name_clash_is_refused(tmp_path):
    with pytest.raises(InputError, match="ring 0-5 mm"):
        export_dataset([InMemoryCaseSource(make_case("c0"))],
                       ExportRequest(tmp_path, 25, "Clash", ["Lesion"], ["ring 0-5 mm"], context=ContextSpec("rings")))
    assert not any(tmp_path.iterdir())


def test_command_line_context_option_and_nnunet_integrity(tmp_path):
    """`backsplit export --context rings:3` on files; nnU-Net's own integrity check accepts the result."""
    import subprocess
    import sys

    from fixtures_data import write_case_files

    for i in range(2):
        write_case_files(tmp_path / "cases", make_case(f"p{i}", seed=i))
    out = tmp_path / "raw"
    proc = subprocess.run([sys.executable, "-m", "backsplit", "export", "--folder", str(tmp_path / "cases"),
                           "--targets", "lesion", "--context", "rings:3", "--out", str(out), "--id", "31",
                           "--name", "Ctx", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "Dataset031_Ctx" / "dataset.json").read_text(encoding="utf-8"))
    assert meta["labels"] == {"background": 0, "lesion": 1, "ring 0-3 mm": 2}
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(out / "Dataset031_Ctx"), num_processes=1)
    bad = subprocess.run([sys.executable, "-m", "backsplit", "export", "--folder", str(tmp_path / "cases"),
                          "--targets", "lesion", "--context", "rings:9,2", "--out", str(out), "--id", "33",
                          "--name", "Bad", "--quiet"], capture_output=True, text=True)
    assert bad.returncode != 0 and "increasing" in bad.stderr
