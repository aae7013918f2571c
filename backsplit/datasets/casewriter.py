"""Check, label and write cases into a dataset folder and its twin, keeping what dataset.json records about them.

The one loop body of ``export`` and ``dataset add``: a case's segments are matched to the schema
(``validation.case_labels``), generated context classes are painted (``context.add_context``), the files are queued
on the ``.nii.gz`` writer (``layout.write_case``), and the case's negative / absent / source-segment facts are kept
for dataset.json. Once every case is written, ``finish`` refuses a class that no case had a segment for
(``validation.classes_absent_everywhere``), before anything is moved into place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from backsplit.datasets.layout import link_twin_images, write_case
from backsplit.datasets.validation import case_labels, classes_absent_everywhere
from backsplit.io.cases import Case
from backsplit.io.niftiio import NiftiGzWriter
from backsplit.labels.context import ContextSpec, add_context
from backsplit.labels.schema import LabelSchema


@dataclass
class CaseWriter:
    """Writes checked cases into ``main_dir`` (and the binary labels into ``twin_dir``) with ``writer``.

    ``schema``: the classes read from segments; ``output_schema``: every class written (``schema`` plus generated
    context classes after the support structures). After the cases, ``negative``, ``absent`` (case -> classes
    without a segment), ``sources`` (class -> source segment names), ``source_colors`` (class -> RGB 0..1, 4 decimals)
    and ``source_terminology`` (class -> Slicer terminology string) hold what dataset.json records."""
    writer: NiftiGzWriter
    schema: LabelSchema
    output_schema: LabelSchema
    context: ContextSpec
    mapping: Mapping[str, str]                   # segment alias -> class
    channels: int                                # image channels each case must have
    allow_negative: bool
    missing: str                                 # validation.MISSING_ERROR or MISSING_ABSENT
    main_dir: Path
    twin_dir: Optional[Path] = None
    negative: list[str] = field(default_factory=list)
    absent: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, set[str]] = field(default_factory=dict)
    source_colors: dict[str, list[float]] = field(default_factory=dict)
    source_terminology: dict[str, str] = field(default_factory=dict)
    check_absent: bool = True                    # refuse a class no case has (finish); off for derived study data
    present_elsewhere: Optional[Mapping[str, int]] = None   # class -> cases already in the dataset that have it
    segment_names: dict[str, list[str]] = field(default_factory=dict)   # case -> its segment names

    def __post_init__(self) -> None:
        for cls in self.output_schema.classes:
            self.sources.setdefault(cls.name, set())

    def write(self, case: Case) -> None:
        """Check one loaded case against the schema and queue its files. Raises InputError (naming the case and
        segment) for a case that does not fit; nothing of it is recorded then."""
        checked = case_labels(case, self.schema, mapping=self.mapping, expected_channels=self.channels,
                              allow_negative=self.allow_negative, missing=self.missing)
        self.segment_names[case.case_id] = list(case.segments)
        if checked.negative:
            self.negative.append(case.case_id)
        if checked.absent_classes:
            self.absent[case.case_id] = checked.absent_classes
        for cls, names in checked.sources.items():
            self.sources[cls].update(names)
            for name in names:
                if name in case.colors and cls not in self.source_colors:
                    self.source_colors[cls] = [round(float(c), 4) for c in case.colors[name]]
                if name in case.terminology and cls not in self.source_terminology:
                    self.source_terminology[cls] = case.terminology[name]
        labels = add_context(checked.labels, case.channels[0], case.geometry.spacing[::-1], len(self.schema.targets),
                             len(self.schema.classes) + 1, self.context)
        write_case(self.writer, case, labels, self.output_schema, self.main_dir, self.twin_dir)

    @property
    def busy(self) -> bool:
        """True while files still wait for compression (a GUI-driven step can yield meanwhile)."""
        return self.writer.pending_count > 0

    def finish(self) -> None:
        """Wait for every file (re-raising the first write error) and link the twin's images to the dataset's.
        Raises InputError for a target or support class that no case had a segment for."""
        self.writer.wait()
        if self.check_absent:
            classes_absent_everywhere(self.schema, self.segment_names, self.mapping, self.present_elsewhere)
        link_twin_images(self.main_dir, self.twin_dir)
