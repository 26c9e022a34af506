"""Storage: schema, migrations and the database connection."""

from .db import Database
from .models import ApiToken, Approval, AuditEntry, Base, Confirmation, Face, Image, Location, OptOut, QueryEmbedding, User, WebSession

__all__ = ["ApiToken", "Approval", "AuditEntry", "Base", "Confirmation", "Database", "Face", "Image", "Location", "OptOut", "QueryEmbedding", "User", "WebSession"]
