#!/usr/bin/env python3
"""Replaces the results section of docs/BENCHMARKS.md (between the
`<!-- results:start -->` and `<!-- results:end -->` markers) with
bench/out/results/all.md, as written by bench/all.sh.

Usage: bench/all.sh && python3 bench/update_docs.py
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
doc = REPO / "docs" / "BENCHMARKS.md"
results = REPO / "bench" / "out" / "results" / "all.md"
if not results.exists():
    sys.exit(f"{results} is missing: run bench/all.sh first")
text = doc.read_text()
new = results.read_text().strip()
# Sections of all.md are "###" headings; the doc nests them under "## Latest results".
out, n = re.subn(r"(<!-- results:start -->\n).*?(\n<!-- results:end -->)",
                 lambda m: m.group(1) + new + m.group(2), text, flags=re.S)
if n != 1:
    sys.exit("markers not found in docs/BENCHMARKS.md")
doc.write_text(out)
print(f"updated {doc}")
