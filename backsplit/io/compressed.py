"""End-to-end check of compressed image files before they are used.

ITK decompresses only the bytes it needs and never looks at the checksum that closes a compressed stream, so a file
damaged in the middle (a bad disk sector, an interrupted copy that rewrote a block) is read without complaint and
about half of its voxels come back wrong. Measured with SimpleITK 2.5: a ``.nii.gz`` and a gzip-encoded ``.nrrd``
with 64 bytes overwritten mid-stream are both read with no error. Python's ``gzip`` module does check the CRC-32.

``verify_compressed(path)`` streams the compressed part of a file through a decompressor in fixed-size chunks (the
output is thrown away, so memory stays at a few MiB whatever the file size) and checks what the format stores:

* gzip (``.nii.gz``, and the data of ``.nrrd``/``.nhdr``/``.seg.nrrd`` with ``encoding: gzip``): the CRC-32 and the
  length (ISIZE) of every member, and that the stream is complete (not truncated);
* zlib (``.mha``/``.mhd`` with ``CompressedData = True``, as MetaIO writes it): the Adler-32 checksum;
* bzip2 (NRRD ``encoding: bzip2``): the block and stream CRCs.

Decompression uses ISA-L (``isal``, about 3x faster than zlib, when installed) or zlib; one pass over the file.
Raises ``InputError`` naming the file and saying it is damaged or truncated.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import re
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Iterator, Optional

from backsplit.errors import InputError

try:  # optional accelerator, same API as zlib's decompressobj
    from isal import isal_zlib as _fast_zlib  # type: ignore
except ImportError:  # pragma: no cover - depends on the environment
    _fast_zlib = None

CHUNK = 4 << 20          # compressed bytes read at a time
OUTPUT_LIMIT = 16 << 20  # decompressed bytes produced at a time (bounds memory for highly compressible labelmaps)


def compressed_part(path: Path) -> Optional[tuple[Path, int, str]]:
    """(file holding the compressed data, byte offset where it starts, 'gzip' | 'zlib' | 'bzip2') or None when the
    file is not compressed. Reads the header only."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == b"\x1f\x8b":
        return path, 0, "gzip"
    lower = path.name.lower()
    if lower.endswith((".nrrd", ".nhdr")):
        return _nrrd_part(path)
    if lower.endswith((".mha", ".mhd")):
        return _meta_part(path)
    return None


def _header_lines(path: Path, limit: int = 1 << 20) -> tuple[list[str], int]:
    """Text lines of a header that ends at the first empty line (NRRD); and the byte offset after it."""
    with open(path, "rb") as handle:
        data = handle.read(limit)
    end = data.find(b"\n\n")
    if end < 0:
        end = data.find(b"\r\n\r\n")
        skip = 4
    else:
        skip = 2
    if end < 0:  # detached header without data, or not a header at all
        return data.decode("latin-1", "replace").splitlines(), -1
    return data[:end].decode("latin-1", "replace").splitlines(), end + skip


def _nrrd_part(path: Path) -> Optional[tuple[Path, int, str]]:
    lines, offset = _header_lines(path)
    if not lines or not lines[0].startswith("NRRD"):
        return None
    fields = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep and not line.startswith("#") and not value.startswith("="):  # 'key: value' fields, not 'key:=value'
            fields[key.strip().lower()] = value.strip()
    encoding = fields.get("encoding", "raw").lower()
    kind = {"gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}.get(encoding)
    if kind is None:
        return None
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file:
        if data_file.upper().startswith("LIST") or re.search(r"%\d*d", data_file):
            return None  # several data files: ITK reads them, no single stream to check here
        return (path.parent / data_file), 0, kind
    return (path, offset, kind) if offset >= 0 else None


def _meta_part(path: Path) -> Optional[tuple[Path, int, str]]:
    with open(path, "rb") as handle:
        data = handle.read(1 << 20)
    compressed, offset, data_file = False, -1, None
    position = 0
    for raw in data.split(b"\n"):
        position += len(raw) + 1
        key, sep, value = raw.decode("latin-1", "replace").partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "CompressedData":
            compressed = value.lower() == "true"
        if key == "ElementDataFile":
            data_file = value
            offset = position
            break
    if not compressed or data_file is None:
        return None
    if data_file.upper() == "LOCAL":
        return path, offset, "zlib"
    if data_file.upper().startswith("LIST") or "%" in data_file:
        return None
    return path.parent / data_file, 0, "zlib"


def _decompressor(kind: str):
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    wbits = 31 if kind == "gzip" else 15
    return (_fast_zlib or zlib).decompressobj(wbits)


_VERIFIED: dict[tuple[str, int, int], bool] = {}  # (path, mtime, size) of files checked in this process


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size


def verify_compressed(path: Path, what: str = "image", case: Optional[str] = None) -> bool:
    """Check the compressed data of ``path`` end to end; True when it was compressed (and is intact), False when
    there was nothing to check. Raises InputError naming the file when it is damaged or truncated. A file already
    checked in this process and unchanged since (same modification time and size) is not decompressed again."""
    stamp = _stamp(path)
    if stamp in _VERIFIED:
        return _VERIFIED[stamp]
    part = compressed_part(Path(path))
    if part is None:
        _VERIFIED[stamp] = False
        return False
    data_path, offset, kind = part
    if not data_path.is_file():
        raise InputError(f"the {what}'s data file '{data_path.name}' does not exist; keep it next to the header",
                         case=case, path=str(path))
    errors = (zlib.error, OSError, EOFError, ValueError) + ((_fast_zlib.error,) if _fast_zlib else ())
    try:
        complete = _stream(data_path, offset, kind)
    except errors as exc:
        raise InputError(f"the {what} file is damaged: its {kind} data fails the integrity check ({exc}), so some "
                         "voxels would be read wrong; copy it again from its source or re-export it", case=case,
                         path=str(path)) from None
    if not complete:
        raise InputError(f"the {what} file cannot be read (truncated: the {kind} data ends early); copy it again "
                         "from its source or re-export it", case=case, path=str(path))
    if len(_VERIFIED) > 10_000:
        _VERIFIED.clear()
    _VERIFIED[stamp] = True
    return True


def _feed(decompressor, kind: str, data: bytes, sink) -> bytes:
    """Give ``data`` to the decompressor, producing at most OUTPUT_LIMIT bytes at a time (passed to ``sink``);
    return the bytes after the end of the stream (the next gzip member), if it ended."""
    sink(decompressor.decompress(data, OUTPUT_LIMIT))
    if kind == "bzip2":
        while not decompressor.eof and not decompressor.needs_input:
            sink(decompressor.decompress(b"", OUTPUT_LIMIT))
    else:
        while decompressor.unconsumed_tail:
            sink(decompressor.decompress(decompressor.unconsumed_tail, OUTPUT_LIMIT))
    return decompressor.unused_data if decompressor.eof else b""


def _discard(_: bytes) -> None:
    pass


def _stream(path: Path, offset: int, kind: str, sink=_discard) -> bool:
    """Decompress ``path`` from ``offset`` to the end, discarding the output; True when the stream ended cleanly.
    Several gzip members one after the other (as ``cat a.gz b.gz`` makes) are each checked; zero padding after the
    last member is tolerated, as gzip does."""
    decompressor = _decompressor(kind)
    with open(path, "rb") as handle:
        handle.seek(offset)
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                return bool(decompressor.eof)
            while chunk:
                if decompressor.eof:  # data after the end of a stream
                    if kind != "gzip" or not chunk.strip(b"\x00"):
                        return True  # trailing bytes after a zlib/bzip2 stream or zero padding: as the readers do
                    decompressor = _decompressor(kind)
                chunk = _feed(decompressor, kind, chunk, sink)


def _plain_nrrd_header(path: Path, offset: int) -> Optional[bytes]:
    """The header of an attached-data gzip NRRD with 'encoding: raw', or None when it uses byte/line skips (then the
    raw copy would not be equivalent and the file is only verified)."""
    with open(path, "rb") as handle:
        header = handle.read(offset)
    lines = header.decode("latin-1").rstrip("\r\n").splitlines()
    out = []
    for line in lines:
        key = line.split(":", 1)[0].strip().lower()
        if key in ("byte skip", "byteskip", "line skip", "lineskip"):
            return None
        out.append("encoding: raw" if key == "encoding" and not line.startswith("#") else line)
    return ("\n".join(out) + "\n\n").encode("latin-1")


@contextlib.contextmanager
def verified_readable(path: Path, what: str = "image", case: Optional[str] = None) -> Iterator[Path]:
    """Verify ``path`` and give a file ITK can read without decompressing it again: for a ``.nii.gz`` or a NRRD
    with attached gzip data, the data is decompressed once, in one streamed pass that checks the CRC, into an
    uncompressed copy in a temporary folder (deleted afterwards), so the file is decompressed once instead of twice
    (by the check and by ITK) and memory holds no second copy. Other files are verified and given as they are; so is
    the original when the temporary folder has no room."""
    path = Path(path)
    part = compressed_part(path)
    plain_header: Optional[bytes] = b""
    if part is not None and part[0] == path and part[2] == "gzip" and part[1] > 0:
        plain_header = _plain_nrrd_header(path, part[1])
    if part is None or part[2] != "gzip" or part[0] != path or plain_header is None or (
            part[1] == 0 and not path.name.lower().endswith(".nii.gz")):
        verify_compressed(path, what, case)
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="backsplit-read-"))
    target = folder / ("image.nii" if part[1] == 0 else "image.nrrd")
    errors = (zlib.error, EOFError, ValueError) + ((_fast_zlib.error,) if _fast_zlib else ())
    try:
        try:
            with open(target, "wb") as out:
                out.write(plain_header)
                complete = _stream(path, part[1], "gzip", out.write)
        except errors as exc:
            raise InputError(f"the {what} file is damaged: its gzip data fails the integrity check ({exc}), so some "
                             "voxels would be read wrong; copy it again from its source or re-export it",
                             case=case, path=str(path)) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                raise
            shutil.rmtree(folder, ignore_errors=True)  # no room for the copy: check, then let ITK decompress
            verify_compressed(path, what, case)
            yield path
            return
        if not complete:
            raise InputError(f"the {what} file cannot be read (truncated: the gzip data ends early); copy it again "
                             "from its source or re-export it", case=case, path=str(path))
        _VERIFIED[_stamp(path)] = True
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)
