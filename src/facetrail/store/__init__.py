"""Storage: schema, migrations and the database connection."""

from .db import Database
from .models import ApiToken, Approval, Appearance, AuditEntry, Base, Confirmation, Face, Image, Job, Location, OptOut, QueryEmbedding, Source, User, WebSession

__all__ = ["ApiToken", "Appearance", "Approval", "AuditEntry", "Base", "Confirmation", "Database", "Face", "Image", "Job", "Location", "OptOut", "QueryEmbedding", "Source", "User", "WebSession"]
