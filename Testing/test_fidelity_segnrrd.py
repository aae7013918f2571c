"""Every .seg.nrrd layout 3D Slicer reads is read as Slicer reads it (vtkMRMLSegmentationStorageNode, v5.10.0):
Slicer 4.10 files (one component per segment, no _Layer / _LabelValue), files with only one of the two fields, the
shared-layer layout of Slicer 4.11+, the 4D spatial layout of Slicer 4.8, extent clipping, the 1x1x1 empty file;
and a segment that reads as empty against its header is an error, never a silent empty mask."""

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_fidelity import extent_of, segment_fields, unit_directions, write_nrrd

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.io.readers import FileCaseSource, read_seg_nrrd

SHAPE = (8, 10, 12)  # z, y, x


def masks():
    kidney = np.zeros(SHAPE, bool)
    kidney[1:7, 2:8, 2:10] = True
    cyst = np.zeros(SHAPE, bool)
    cyst[3:5, 4:6, 4:7] = True            # inside the kidney: the layers overlap
    tumor = np.zeros(SHAPE, bool)
    tumor[2:4, 6:8, 7:9] = True
    return {"kidney": kidney, "cyst": cyst, "tumor": tumor}


def write_image(folder, name="case.nii.gz"):
    folder.mkdir(parents=True, exist_ok=True)
    geometry = Geometry.create((1, 1, 1), (0, 0, 0), None, SHAPE)
    image = np.random.default_rng(0).normal(0, 10, SHAPE).astype(np.int16)
    path = folder / name
    sitk.WriteImage(geometry.to_sitk(image), str(path))
    return path


def write_per_segment_layers(path, segments, layers=None, values=None, stored_values=None):
    """One component per segment (Slicer 4.10's layout), component c holding ``stored_values[c]`` (default 1)."""
    names = list(segments)
    stored = stored_values or [1] * len(names)
    array = np.stack([segments[n].astype(np.uint8) * stored[i] for i, n in enumerate(names)], axis=-1)
    fields = segment_fields(names, [extent_of(segments[n]) for n in names], layers, values)
    return write_nrrd(path, array, ["none"] + unit_directions(), (0, 0, 0), "list domain domain domain", fields)


def test_slicer_410_file_keeps_every_segment(tmp_path):
    """Fault 1: a 4.10 file lost every segment after the first (read as layer 0, value index+1), exit 0."""
    image = write_image(tmp_path)
    seg = write_per_segment_layers(tmp_path / "case.seg.nrrd", masks())
    content = read_seg_nrrd(seg, "case")
    for name, mask in masks().items():
        assert np.array_equal(content.masks[name], mask), name
    result = export_dataset([FileCaseSource("case", [image], seg)],
                            ExportRequest(tmp_path / "raw", 501, "Old", ["cyst"], ["kidney"], binary_twin=False))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(result.dataset_dir / "labelsTr" / "case.nii.gz")))
    assert np.array_equal(labels == 1, masks()["cyst"])
    assert np.array_equal(labels == 2, masks()["kidney"] & ~masks()["cyst"])


@pytest.mark.parametrize("layout", ["layer only", "label value only", "shared layer", "4d spatial (Slicer 4.8)"])
def test_every_layout_slicer_reads(tmp_path, layout):
    segments = masks()
    names = list(segments)
    path = tmp_path / "case.seg.nrrd"
    if layout == "layer only":          # _Layer given, no _LabelValue: value 1 (vtkSegment's default)
        write_per_segment_layers(path, segments, layers=[0, 1, 2])
    elif layout == "label value only":  # _LabelValue given, no _Layer: layer = segment index
        write_per_segment_layers(path, segments, values=[3, 5, 7], stored_values=[3, 5, 7])
    elif layout == "shared layer":      # Slicer 4.11+: one layer, values 1..3 (kidney where nothing else is)
        labels = np.zeros(SHAPE, np.uint8)
        labels[segments["kidney"]] = 1
        labels[segments["cyst"]] = 2
        labels[segments["tumor"]] = 3
        segments["kidney"] = segments["kidney"] & ~segments["cyst"] & ~segments["tumor"]
        stray = labels.copy()
        stray[0, 0, 0] = 2  # a voxel outside every extent of layer 0: Slicer clips it away
        write_nrrd(path, stray, unit_directions(), (0, 0, 0), "domain domain domain",
                   segment_fields(names, [extent_of(segments[n]) for n in names], [0, 0, 0], [1, 2, 3]))
    else:                               # Segmentation_Extent + a 4D image, one volume per segment
        array = np.stack([segments[n].astype(np.uint8) for n in names])
        image = sitk.GetImageFromArray(array, isVector=False)
        offset = (1, 0, 2)              # segment extents are given in the common extent's index space
        fields = segment_fields(names, [" ".join(str(int(v) + offset[i // 2]) for i, v in
                                                 enumerate(extent_of(segments[n]).split())) for n in names])
        fields["Segmentation_Extent"] = "1 12 0 9 2 9"
        for key, value in fields.items():
            image.SetMetaData(key, value)
        sitk.WriteImage(image, str(path), True)
    content = read_seg_nrrd(path, "case")
    assert list(content.masks) == names
    for name in names:
        assert np.array_equal(content.masks[name], segments[name]), (layout, name)


def test_segment_empty_against_its_extent_is_an_error(tmp_path):
    segments = {"kidney": masks()["kidney"], "cyst": masks()["cyst"]}
    path = write_per_segment_layers(tmp_path / "bad.seg.nrrd", segments, layers=[0, 1], values=[1, 9])
    with pytest.raises(InputError, match=r"segment 'cyst'.*reads as empty.*layer 1, label value 9.*covers voxels"):
        read_seg_nrrd(path, "bad")


def test_voxels_no_segment_claims_are_an_error(tmp_path):
    """_Layer given, no _LabelValue, but one shared layer with values 1 and 2: read as Slicer would, the cyst
    would be the kidney's copy and value 2 would vanish."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[masks()["kidney"]] = 1
    labels[masks()["cyst"]] = 2
    fields = segment_fields(["kidney", "cyst"], [extent_of(labels > 0)] * 2, layers=[0, 0])
    path = write_nrrd(tmp_path / "shared.seg.nrrd", labels, unit_directions(), (0, 0, 0), "domain domain domain",
                      fields)
    with pytest.raises(InputError, match=r"layer 0 holds voxel value\(s\) \[2\] that no segment claims"):
        read_seg_nrrd(path, "shared")


def test_empty_1x1x1_segmentation_exports_as_negative_case(tmp_path):
    """Slicer saves an empty segmentation without reference geometry as 1x1x1 (spacing 1, origin 0)."""
    image_geometry = Geometry.create((0.7, 0.7, 3.0), (-100, -80, 20), None, SHAPE)
    image = tmp_path / "neg.nii.gz"
    sitk.WriteImage(image_geometry.to_sitk(np.zeros(SHAPE, np.int16) + np.arange(12, dtype=np.int16)), str(image))
    seg = write_nrrd(tmp_path / "neg.seg.nrrd", np.zeros((1, 1, 1), np.uint8), unit_directions(), (0, 0, 0),
                     "domain domain domain", segment_fields(["Lesion"], ["0 -1 0 -1 0 -1"], [0], [1]))
    source = FileCaseSource("neg", [image], seg)
    request = dict(out_root=tmp_path / "raw", dataset_id=501, dataset_name="Neg", targets=["Lesion"],
                   binary_twin=False)
    with pytest.raises(InputError, match=r"case 'neg': the case has no target voxel \('Lesion' is empty\)"):
        export_dataset([source], ExportRequest(**request))
    result = export_dataset([source], ExportRequest(**request, allow_negative_cases=True))
    assert result.negative_cases == ["neg"]
