"""N8 (issue 20): File > Close Scene while a prediction or a support-structure generation is being imported, in a
real MRML scene (slicer-core). The import writes nothing into the new scene, raises no error out of a later step
other than the one worded for the user, and releases its temporary folder. (The panels' side, every
action finished with "Stopped: the scene was closed." at ``StartCloseEvent``, is ``BackSplitSegment.
onSceneStartClose`` with ``BackSplitShared.panel_action``.)"""

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_slicer import add_volume

from backsplit.errors import InputError
from backsplit.inference.scenearrays import write_scene_arrays
from backsplit.labels.schema import LabelSchema
from backsplit.runtime.progress import ProgressEvent


def _finished_prediction(out, schema):
    """Stands in for a finished PredictionProcess (the real child: test_prediction_import.py::
    test_apply_path_child_process_to_scene); the output files are written by the test."""
    import types

    return types.SimpleNamespace(cancelled=False, returncode=0, error=None, log_lines=[], summaries=[{}],
                                 request=types.SimpleNamespace(out_dir=str(out)), lesion_only=False, work_dir=out,
                                 model_info=types.SimpleNamespace(schema=schema, variant="backsplit"),
                                 poll_events=lambda: [])


def test_scene_close_mid_prediction_import_writes_nothing_into_the_new_scene(slicer_scene, tmp_path):
    from BackSplitSegmentLib.prediction_run import PredictionFinish
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (5, 6, 7)
    volume = add_volume(slicer, np.zeros(shape, np.int16), np.diag([0.8, 0.8, 2.0, 1.0]), "CT")
    labels = np.zeros(shape, np.uint8)
    labels[1:3, 2:4, 2:5] = 2
    out = tmp_path / "out"
    out.mkdir()
    sitk.WriteImage(volume_geometry(volume).to_sitk(labels), str(out / "input.nii.gz"))
    write_scene_arrays(out, "input", 2)          # as the prediction child writes them for the import
    finish = PredictionFinish(_finished_prediction(out, LabelSchema.create(["Lesion"], ["Organ"])), volume)
    while finish._segmentation is None:          # files read, the new segmentation made: the import is under way
        assert not finish.step(wait=True)
    scene.Clear(0)                               # File > Close Scene
    after_close = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="case 'CT'.*scene was closed"):
        finish.step()
    finish.close()
    finish.close()                               # idempotent (the panel's on_idle may run after the error)
    assert scene.GetNumberOfNodes() == after_close and not out.exists()


def test_scene_close_mid_generation_import_adds_nothing_and_says_why(slicer_scene, tmp_path):
    from BackSplitSegmentLib.generation_run import GenerationJob, import_events
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    volume = add_volume(slicer, np.zeros((4, 5, 6), np.int16), np.eye(4), "CT")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CT segmentation")
    job = GenerationJob(process=None, cases={"CT": SceneCase("CT", volume, segmentation)}, work_dir=tmp_path)
    scene.Clear(0)
    after_close = scene.GetNumberOfNodes()
    events = [ProgressEvent("generate", data={"case": "CT", "status": "done", "file": str(tmp_path / "x.seg.nrrd")})]
    messages = import_events(job, events)        # the file is never read: the nodes are gone
    assert messages == ["case 'CT': the scene was closed before its generated segments could be added"]
    assert "CT" in job.failed and job.imported == {} and scene.GetNumberOfNodes() == after_close
