"""Storage: schema, migrations and the database connection."""

from .db import Database
from .models import ApiToken, AuditEntry, Base, Confirmation, Face, Image, Location, OptOut, User, WebSession

__all__ = ["ApiToken", "AuditEntry", "Base", "Confirmation", "Database", "Face", "Image", "Location", "OptOut", "User", "WebSession"]
