"""Match the segments of a case to the schema's classes by name.

Names are compared after stripping whitespace and ignoring case. An explicit mapping ("alias -> class")
covers renames across cases (e.g. "Renal cyst" -> "cyst"). Several segments of one case that map to the same
class are united (e.g. "left kidney" and "right kidney" -> "kidney").
"""

from __future__ import annotations

from typing import Iterable, Mapping

from .errors import InputError
from .schema import LabelSchema


def normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def match_segments(case_id: str, segment_names: Iterable[str], schema: LabelSchema,
                   mapping: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Map each class name of ``schema`` to the case's segment names that feed it (possibly none).

    Raises InputError when two of the case's segments have names that collide after case-folding, or when
    the mapping points to a class that the schema does not have.
    """
    class_by_key = {normalise(c.name): c.name for c in schema.classes}
    alias = {}
    for source, target in (mapping or {}).items():
        if normalise(target) not in class_by_key:
            raise InputError(f"the name mapping sends '{source}' to '{target}', which is not a chosen target or "
                             f"support class ({', '.join(schema.names)}); fix the mapping")
        alias[normalise(source)] = class_by_key[normalise(target)]

    seen: dict[str, str] = {}
    matched: dict[str, list[str]] = {c.name: [] for c in schema.classes}
    for segment in segment_names:
        key = normalise(segment)
        if key in seen:
            raise InputError(f"two segments are named '{seen[key]}' and '{segment}', which are the same name when "
                             "case is ignored; rename one of them", case=case_id, segment=segment)
        seen[key] = segment
        cls = alias.get(key) or class_by_key.get(key)
        if cls is not None:
            matched[cls].append(segment)
    return matched
