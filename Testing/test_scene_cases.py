"""The scene adapter on real MRML scenes (slicer-core): volumes + segmentation nodes -> engine cases -> files."""


import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_slicer import add_segmentation, add_volume

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError


def oblique_ijk_to_ras(spacing=(0.8, 1.2, 2.0), origin=(12.0, -30.5, 4.25), degrees=25.0):
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ \
        np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    m = np.eye(4)
    m[:3, :3] = rotation @ np.diag(spacing)
    m[:3, 3] = origin
    return m


def masks_for(shape):
    organ = np.zeros(shape, bool)
    organ[2:9, 3:12, 4:14] = True
    lesion = np.zeros(shape, bool)
    lesion[4:6, 5:8, 6:9] = True                     # inside the organ: overlapping segments
    return {"Organ": organ, "Lesion": lesion}


def test_oblique_case_round_trips_through_export(slicer_scene, tmp_path):
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (11, 14, 17)
    image = np.random.default_rng(0).normal(40, 10, shape).astype(np.int16)
    ijk_to_ras = oblique_ijk_to_ras()
    volume = add_volume(slicer, image, ijk_to_ras)
    masks = masks_for(shape)
    segmentation = add_segmentation(slicer, scene, masks, volume)
    case = SceneCase("oblique case", volume, segmentation).load()
    assert np.array_equal(case.channels[0], image)
    assert np.array_equal(case.segments["Lesion"], masks["Lesion"])
    assert np.array_equal(case.segments["Organ"], masks["Organ"])   # overlap kept: the lesion voxels too
    result = export_dataset([SceneCase("oblique case", volume, segmentation).source()],
                            ExportRequest(tmp_path, 501, "Scene", ["lesion"], ["organ"]))
    written = sitk.ReadImage(str(result.dataset_dir / "imagesTr" / "oblique case_0000.nii.gz"))
    labels = sitk.ReadImage(str(result.dataset_dir / "labelsTr" / "oblique case.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(written), image)
    label_array = sitk.GetArrayFromImage(labels)
    assert (label_array[masks["Lesion"]] == 1).all() and (label_array[masks["Organ"] & ~masks["Lesion"]] == 2).all()
    # Geometry as SimpleITK sees it equals Slicer's (RAS -> LPS).
    lps = np.diag([-1, -1, 1, 1]) @ ijk_to_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    for image_ in (written, labels):
        assert np.allclose(image_.GetSpacing(), spacing, atol=1e-5)
        assert np.allclose(image_.GetOrigin(), lps[:3, 3], atol=1e-4)
        assert np.allclose(np.reshape(image_.GetDirection(), (3, 3)), lps[:3, :3] / spacing, atol=1e-5)
    # Physical position of a lesion voxel agrees between Slicer and SimpleITK.
    k, j, i = np.argwhere(masks["Lesion"])[0]
    ras = ijk_to_ras @ [i, j, k, 1]
    assert np.allclose(labels.TransformIndexToPhysicalPoint((int(i), int(j), int(k))), [-ras[0], -ras[1], ras[2]],
                       atol=1e-4)


def test_segmentation_on_another_grid_is_resampled_by_slicer(slicer_scene):
    from BackSplitSegmentLib.scene_cases import case_from_scene

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    fine = np.zeros((20, 20, 20), np.int16)
    volume = add_volume(slicer, fine, np.diag([1.0, 1.0, 1.0, 1.0]), "fine")
    coarse = add_volume(slicer, np.zeros((10, 10, 10), np.int16), np.diag([2.0, 2.0, 2.0, 1.0]), "coarse")
    block = np.zeros((10, 10, 10), bool)
    block[2:5, 3:6, 4:7] = True                        # 3x3x3 coarse voxels = 6x6x6 fine voxels
    segmentation = add_segmentation(slicer, scene, {"Lesion": block}, coarse)
    case = case_from_scene("c", volume, segmentation)
    mask = case.segments["Lesion"]
    assert mask.shape == (20, 20, 20)
    assert mask.sum() == 6 * 6 * 6
    zs, ys, xs = np.nonzero(mask)
    # coarse voxel k covers fine voxels around 2k (centres at 2k and 2k+1 map back by nearest neighbour)
    assert zs.min() in (3, 4) and zs.max() - zs.min() == 5
    assert xs.min() in (7, 8) and xs.max() - xs.min() == 5


def test_extra_channels_and_bad_inputs(slicer_scene):
    from BackSplitSegmentLib.scene_cases import case_from_scene

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (6, 7, 8)
    ct = add_volume(slicer, np.ones(shape, np.int16), np.eye(4), "CT")
    pet = add_volume(slicer, np.full(shape, 5.0, np.float32), np.eye(4), "PET")
    shifted = add_volume(slicer, np.ones(shape, np.float32), np.array([[1, 0, 0, 3.0], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                      [0, 0, 0, 1]]), "PET moved")
    masks = {"Lesion": np.pad(np.ones((2, 2, 2), bool), ((2, 2), (2, 3), (3, 3)))}
    segmentation = add_segmentation(slicer, scene, masks, ct)
    case = case_from_scene("two channels", ct, segmentation, [pet])
    assert len(case.channels) == 2 and float(case.channels[1].mean()) == 5.0
    with pytest.raises(InputError, match=r"case 'x'.*channel 1 \('PET moved'\).*origin differs"):
        case_from_scene("x", ct, segmentation, [shifted])
    with pytest.raises(InputError, match=r"case 'x', segment 'Kidney'.*no such segment.*Lesion"):
        case_from_scene("x", ct, segmentation, names=["Kidney"])


def node_counts(scene):
    counts = {}
    for i in range(scene.GetNumberOfNodes()):
        name = scene.GetNthNode(i).GetClassName()
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_export_leaves_no_node_behind(slicer_scene, tmp_path):
    """Slicer adds a colour table for every labelmap it exports to (and display nodes): all of it is removed."""
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (6, 7, 8)
    sources = []
    for index in range(3):
        volume = add_volume(slicer, np.zeros(shape, np.int16), np.eye(4), f"case {index}")
        masks = {name: np.zeros(shape, bool) for name in ("Lesion", "Organ", "Vessel")}
        for offset, mask in enumerate(masks.values()):
            mask[1 + offset:3 + offset, 2:4, 2:5] = True
        segmentation = add_segmentation(slicer, scene, masks, volume, f"case {index} segmentation")
        sources.append(SceneCase(f"case {index}", volume, segmentation).source())
    before = node_counts(scene)
    result = export_dataset(sources, ExportRequest(tmp_path, 502, "Count", ["lesion"], ["organ", "vessel"]))
    assert len(result.case_ids) == 3
    assert node_counts(scene) == before          # 3 cases x 3 segments exported, no colour table or labelmap left


def test_failed_export_and_import_raise_with_names_without_the_output_window(slicer_scene):
    """Failures are found from return values, message collections and the result's size, not from VTK's output
    window (Slicer's application replaces it with CTK's, which emits no ErrorEvent)."""
    import inspect

    import BackSplitSegmentLib.prediction_import as prediction_import
    import BackSplitSegmentLib.scene_cases as scene_cases
    import BackSplitSegmentLib.scene_nodes as scene_nodes
    from backsplit.labels.schema import LabelSchema
    from BackSplitSegmentLib.prediction_import import add_class_segment, class_crops, class_images

    for module in (scene_cases, scene_nodes, prediction_import):
        assert "vtkOutputWindow" not in inspect.getsource(module)
    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    volume = add_volume(slicer, np.zeros((4, 5, 6), np.int16), np.eye(4), "CT 7")
    segmentation = add_segmentation(slicer, scene, {"Lesion": np.ones((4, 5, 6), bool)}, volume)
    outside = slicer.vtkMRMLLabelMapVolumeNode()              # not in the scene: Slicer's export returns False
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Lesion")
    with pytest.raises(InputError, match=r"case 'case 7', segment 'Lesion'.*could not export"):
        scene_nodes.export_segment(segmentation, segment_id, outside, volume, "case 7", "Lesion")
    # A segmentation that cannot take a binary labelmap (no conversion to its source representation):
    # vtkSegmentation::AddSegment returns False and only logs.
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    target.GetSegmentation().SetSourceRepresentationName("No such representation")
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    geometry = scene_nodes.volume_geometry(volume)
    images = class_images(class_crops(labels, 1), geometry)
    with pytest.raises(InputError, match=r"case 'case 7', segment 'Lesion'.*could not add the predicted segment"):
        add_class_segment(target, images[1], LabelSchema.create(["Lesion"], []).classes, 1, "case 7")


def test_segmentation_from_file_pairs_with_the_volume_on_its_grid(slicer_scene, tmp_path):
    """The demo sample data as Sample Data / drag and drop loads it: a .seg.nrrd file without reference link."""
    from BackSplitSegmentLib.demo_scene import demo_sample_files
    from BackSplitSegmentLib.pairing import pairing_summary
    from BackSplitSegmentLib.scene_cases import scene_pairings

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    (image, seg_file), = demo_sample_files(tmp_path, count=1)
    volume = slicer_scene.logics["volumes"].AddArchetypeVolume(str(image), "kits23 CT", 0)
    decoy = add_volume(slicer, np.zeros((3, 3, 3), np.int16), np.eye(4) * 7, "other")       # another grid
    segmentation = slicer_scene.logics["segmentations"].LoadSegmentationFromFile(str(seg_file), False)
    assert segmentation is not None and segmentation.GetNodeReference("referenceImageGeometryRef") is None
    cases, skipped = scene_pairings(scene)
    assert [(c.volume, c.segmentation, c.pairing) for c in cases] == [(volume, segmentation, "geometry")]
    assert skipped == [] and "1 by same voxel grid" in pairing_summary([c.pairing for c in cases])
    assert cases[0].load().segments["cyst"].any()
    # A segmentation on no volume's grid is paired by name; one that matches nothing is reported.
    by_name = add_volume(slicer, np.zeros((5, 5, 5), np.int16), np.eye(4) * 3, "Patient 2")
    moved = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "patient_2 segmentation")
    moved.GetSegmentation().AddEmptySegment("Lesion")
    lonely = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nobody")
    lonely.GetSegmentation().AddEmptySegment("Lesion")
    cases, skipped = scene_pairings(scene)
    assert [(c.volume, c.pairing) for c in cases] == [(volume, "geometry"), (by_name, "name")]
    assert skipped == ["nobody"] and "No volume found for: nobody" in pairing_summary([], skipped)
    assert decoy not in [c.volume for c in cases]


def test_grid_and_name_rules():
    from BackSplitSegmentLib.pairing import lies_on_grid, name_key

    volume = np.diag([0.8, 0.8, 2.0, 1.0])
    volume[:3, 3] = (10, -5, 3)
    cropped = volume.copy()
    cropped[:3, 3] += volume[:3, :3] @ [4, 5, 2]                      # a cropped labelmap starting at voxel (4, 5, 2)
    assert lies_on_grid(cropped, (0, 9, 0, 9, 0, 4), volume, (20, 20, 10))
    assert not lies_on_grid(cropped, (0, 19, 0, 9, 0, 4), volume, (20, 20, 10))          # sticks out
    half = cropped.copy()
    half[0, 3] += 0.4
    assert not lies_on_grid(half, (0, 9, 0, 9, 0, 4), volume, (20, 20, 10))              # between voxels
    assert not lies_on_grid(np.diag([1.0, 0.8, 2.0, 1.0]), (0, 1, 0, 1, 0, 1), volume, (20, 20, 10))
    assert name_key("CT_1.seg.nrrd") == name_key("ct 1 Segmentation") == name_key("CT-1") == "ct1"


def test_cases_in_scene_pairs_segmentations_with_their_volumes(slicer_scene):
    from BackSplitSegmentLib.scene_cases import cases_in_scene, segment_names_in_cases

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (5, 6, 7)
    a = add_volume(slicer, np.zeros(shape, np.int16), np.eye(4), "patient 1")
    b = add_volume(slicer, np.zeros(shape, np.int16), np.eye(4), "patient 1")
    mask = np.zeros(shape, bool)
    mask[1:3, 1:3, 1:3] = True
    add_segmentation(slicer, scene, {"Lesion": mask, "Kidney": mask}, a)
    # 'liver' + a zero-width space (text pasted from a PDF) reads as 'Liver' and is one entry, as in the export
    add_segmentation(slicer, scene, {"lesion": mask, "Liver": mask, "liver\u200b": mask}, b)
    cases = cases_in_scene(scene)
    assert [c.case_id for c in cases] == ["patient 1", "patient 1_2"]
    assert [c.volume for c in cases] == [a, b]
    assert segment_names_in_cases(cases) == ["Lesion", "Kidney", "Liver"]
