"""Where `nearrec evaluate` keeps its last report: ``<data_dir>/reports/last-evaluate.json`` (read by the
dashboard's Evaluation page). The file holds :meth:`EvalReport.to_dict` plus the time it was written."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LAST_REPORT = Path("reports") / "last-evaluate.json"


def last_report_path(data_dir: Path) -> Path:
    return data_dir / LAST_REPORT


def save_last(report: dict[str, Any], data_dir: Path) -> Path:
    """Write ``report`` atomically (a reader never sees half a file); returns the path."""
    path = last_report_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**report, "saved_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def load_last(data_dir: Path) -> dict[str, Any] | None:
    """The last saved report, or None when evaluate never ran here (or the file is not a report)."""
    path = last_report_path(data_dir)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("methods"), dict) else None
