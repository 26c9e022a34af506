"""Settings changes are accountable actions: when the effective settings differ from those last
recorded, a `settings.change` entry (every setting, secrets redacted, and which ones changed) is
written to the audit log. Checked whenever the web app starts and whenever a command opens the
database, so a change made in the environment or the configuration file is on record before it
takes effect on a search."""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..store import AuditEntry
from . import audit
from .actors import Actor

ACTION = "settings.change"
SECRET_FIELDS = {"vector_token", "audit_key"}  # audit_key: the checkpoint signing key itself
# where this process keeps its data and how many processes it uses: they differ between machines
# and commands (--workers, --data-dir) and change nothing of what a search may do
OPERATIONAL = {"workers", "data_dir", "database_url", "config_file"}
_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def effective(settings: Settings) -> dict:
    """Every setting as plain JSON, secrets redacted (passwords in URLs, tokens)."""
    values = json.loads(settings.model_dump_json(exclude=OPERATIONAL))
    for name in SECRET_FIELDS:
        if values.get(name):
            values[name] = "(set)"
    for name, value in values.items():
        if isinstance(value, str):
            values[name] = _PASSWORD.sub(r"\1***@", value)
    return values


def record_if_changed(session: Session, settings: Settings, actor: Actor | None = None) -> bool:
    """Write a settings.change entry if the settings differ from the last recorded ones (in the
    caller's transaction). Returns True if one was written."""
    current = effective(settings)
    last = session.scalar(select(AuditEntry.details).where(AuditEntry.action == ACTION)
                          .order_by(AuditEntry.id.desc()).limit(1))
    previous = (last or {}).get("settings", {})
    changed = sorted(name for name in set(current) | set(previous) if current.get(name) != previous.get(name))
    if last is not None and not changed:
        return False
    audit.record(session, actor, ACTION, settings=current, changed=changed if last is not None else [],
                 first=last is None)
    return True
