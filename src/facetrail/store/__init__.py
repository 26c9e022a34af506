"""Storage: schema, migrations and the database connection."""

from .db import Database
from .models import ApiToken, AuditEntry, Base, Face, Image, Location, OptOut, User, WebSession

__all__ = ["ApiToken", "AuditEntry", "Base", "Database", "Face", "Image", "Location", "OptOut", "User", "WebSession"]
