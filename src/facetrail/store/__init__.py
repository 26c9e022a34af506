"""Storage: schema, migrations and the database connection."""

from .db import Database
from .models import AuditEntry, Base, Face, Image, Location

__all__ = ["AuditEntry", "Base", "Database", "Face", "Image", "Location"]
