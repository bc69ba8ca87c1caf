"""Searches every file under a folder for identifying strings, as bytes and as text.

Usage: phi_search.py DIR PHI_JSON_FILE
PHI_JSON_FILE holds a JSON list of strings. Each file is searched as raw bytes; gzip files
(NIfTI) also decompressed; parquet tables also as the text of every column (their pages are
compressed, so a byte search alone would miss a value); DICOM files also element by element
through pydicom. Prints JSON: a list of {file, string, where} hits (empty when clean), and how
many files were searched.
"""
import gzip
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pydicom


def texts(path: Path):
    raw = path.read_bytes()
    yield "bytes", raw
    if raw[:2] == b"\x1f\x8b":
        yield "gunzipped", gzip.decompress(raw)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        yield "parquet", str(table.to_pylist()).encode()
    if raw[128:132] == b"DICM":
        ds = pydicom.dcmread(path, force=True)
        yield "dicom", str(ds).encode()


def main():
    root = Path(sys.argv[1])
    phi = json.loads(Path(sys.argv[2]).read_text())
    hits, searched = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        searched += 1
        for where, data in texts(path):
            low = data.lower()
            for s in phi:
                # Case-insensitive, and PN components also with spaces (DOE^JANE as DOE JANE).
                for form in {s, s.replace("^", " ")}:
                    if form.lower().encode() in low:
                        hits.append({"file": str(path.relative_to(root)), "string": s, "where": where})
    print(json.dumps({"hits": hits, "searched": searched}))


if __name__ == "__main__":
    main()
