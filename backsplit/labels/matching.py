"""Match the segments of a case to the schema's classes by name.

Names are compared as a person reads them (``name_key``): Unicode NFKC normalisation, invisible characters removed
(zero-width spaces, joiners, soft hyphens, byte-order marks: Unicode category Cf, plus control characters),
whitespace of any kind folded to one space and trimmed, and case ignored (``str.casefold``). So 'Cyst', 'cyst​'
(zero-width space copied from a PDF), ' cyst ' and 'ｃｙｓｔ' (full-width) are one name. An explicit mapping
("alias -> class") covers renames across cases (e.g. "Renal cyst" -> "cyst"). Several segments of one case that
map to the same class are united (e.g. "left kidney" and "right kidney" -> "kidney").

``name_key`` is the one comparison used by the export, name maps, manifests and the Slicer panel; ``near_miss``
explains, code point by code point, why a name that looks alike does not match (e.g. a Cyrillic 'с').
"""

from __future__ import annotations

import difflib
import unicodedata
from typing import Iterable, Mapping, Optional, Sequence

from backsplit.errors import InputError
from backsplit.labels.schema import LabelSchema, name_key

__all__ = ["name_key", "normalise", "match_segments", "near_miss", "describe_code_points", "missing_message",
           "split_names", "parse_mapping", "did_you_mean"]


def split_names(text: str) -> list[str]:
    """Class or channel names typed as one comma-separated string: 'kidney, cyst,' -> ['kidney', 'cyst'] (blanks
    around names and empty entries dropped; the names themselves are compared later with ``name_key``)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def parse_mapping(items: list[str]) -> dict[str, str]:
    """Segment renames typed as ``ALIAS=CLASS`` entries (the CLI's ``--map``, the panel's name mapping lines) ->
    ``{alias: class}`` (both trimmed; a later entry for the same alias wins). Raises InputError for an entry
    without '='."""
    mapping = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--map '{item}' is not ALIAS=CLASS")
        alias, cls = item.split("=", 1)
        mapping[alias.strip()] = cls.strip()
    return mapping


def normalise(name: str) -> str:
    """Old name of ``name_key`` (kept for callers)."""
    return name_key(name)


def describe_code_points(text: str) -> str:
    """'cy\u200bst' -> "U+0063 U+0079 U+200B ZERO WIDTH SPACE U+0073 U+0074": code points, with the Unicode name of
    every character that is not plain printable ASCII."""
    parts = []
    for ch in text:
        code = f"U+{ord(ch):04X}"
        if not (ch.isascii() and ch.isprintable() and ch != " "):
            code += f" {unicodedata.name(ch, 'unnamed')}"
        parts.append(code)
    return " ".join(parts)


def near_miss(wanted: str, candidates: Iterable[str], cutoff: float = 0.75) -> Optional[str]:
    """For a class name that matched nothing: the closest candidate that reads alike (same key length +-2 and a
    similarity ratio >= ``cutoff`` on the keys, as ``difflib.SequenceMatcher`` measures it) explained with the
    code points that differ, or None."""
    key = name_key(wanted)
    by_key = {name_key(c): c for c in candidates}
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=cutoff)
    if not close or abs(len(close[0]) - len(key)) > 2:
        return None
    found = by_key[close[0]]
    differing = []
    matcher = difflib.SequenceMatcher(a=key, b=close[0], autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op != "equal":
            differing.append(f"'{key[a0:a1]}' ({describe_code_points(key[a0:a1]) or 'nothing'}) vs "
                             f"'{close[0][b0:b1]}' ({describe_code_points(close[0][b0:b1]) or 'nothing'})")
    return (f"'{found}' looks like '{wanted}' but differs: {'; '.join(differing)} "
            f"(code points of '{found}': {describe_code_points(found)})")


def did_you_mean(wanted: str, candidates: Iterable[str], cutoff: float = 0.6) -> Optional[str]:
    """The candidate whose ``name_key`` is closest to ``wanted``'s (``difflib.get_close_matches``, similarity ratio
    >= ``cutoff``), or None. 'cysst' -> 'cyst'; a name that reads the same as ``wanted`` is never returned."""
    key = name_key(wanted)
    by_key: dict[str, str] = {}
    for candidate in candidates:
        if name_key(candidate) != key:
            by_key.setdefault(name_key(candidate), candidate)
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=cutoff)
    return by_key[close[0]] if close else None


def missing_message(role: str, class_name: str, available: Sequence[str]) -> str:
    """The text for a class with no segment in a case: "did you mean '<close name>'?" first when a segment's name is
    close, then, for a name that reads alike, the code points that differ (``near_miss``)."""
    listed = ", ".join(f"'{n}'" for n in sorted(available)) or "none"
    text = f"the {role} segment is missing (the case has: {listed})"
    close = did_you_mean(class_name, available)
    if close:
        text += f"; did you mean '{close}'?"
        hint = near_miss(class_name, [close])
        if hint:
            text += f" ({hint})"
        text += f" Rename the segment or map it with --map '{close}={class_name}'"
    return text


def match_segments(case_id: str, segment_names: Iterable[str], schema: LabelSchema,
                   mapping: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Map each class name of ``schema`` to the case's segment names that feed it (possibly none).

    Names are compared with ``name_key``. Raises InputError when two of the case's segments have names that
    read the same, or when the mapping points to a class that the schema does not have.
    """
    class_by_key = {name_key(c.name): c.name for c in schema.classes}
    alias = {}
    for source, target in (mapping or {}).items():
        if name_key(target) not in class_by_key:
            raise InputError(f"the name mapping sends '{source}' to '{target}', which is not a chosen target or "
                             f"support class ({', '.join(schema.names)}); fix the mapping")
        alias[name_key(source)] = class_by_key[name_key(target)]

    seen: dict[str, str] = {}
    matched: dict[str, list[str]] = {c.name: [] for c in schema.classes}
    for segment in segment_names:
        key = name_key(segment)
        if key in seen:
            raise InputError(f"two segments are named '{seen[key]}' and '{segment}', which are the same name when "
                             "case is ignored (spacing and invisible characters are ignored too; code points: "
                             f"{describe_code_points(seen[key])} vs {describe_code_points(segment)}); rename one of "
                             "them", case=case_id,
                             segment=segment)
        seen[key] = segment
        cls = alias.get(key) or class_by_key.get(key)
        if cls is not None:
            matched[cls].append(segment)
    return matched
