"""Summarise a valgrind memcheck XML file; exit 1 if any memory error
(invalid read/write/free, use of uninitialised values) has a stack passing
through one of cnn_bp's extension modules (cnn_bp/_*.so). Leak records are
counted, not judged: Python never frees its modules at exit, so everything
allocated at import time shows up as "lost"."""

import sys
import xml.etree.ElementTree as ET
from collections import Counter


def main(path):
    errors = ET.parse(path).getroot().findall("error")
    ours, others = [], Counter()
    for error in errors:
        objects = [frame.findtext("obj") or "" for frame in error.iter("frame")]
        kind = error.findtext("kind")
        if kind.startswith("Leak_"):
            others[f"{kind} (not judged)"] += 1
        elif any("cnn_bp/_" in obj and ".so" in obj for obj in objects):
            ours.append(error)
        else:
            first = next((o.rsplit("/", 1)[-1] for o in objects if o), "?")
            others[f"{kind} in {first}"] += 1
    print(f"valgrind memcheck: {len(errors)} error records in total")
    for what, count in others.most_common():
        print(f"  {count:6d}  {what}")
    print(f"  memory errors through cnn_bp's extensions: {len(ours)}")
    for error in ours:
        print(ET.tostring(error, encoding="unicode")[:2000])
    return 1 if ours else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
