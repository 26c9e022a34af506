"""One Settings object for the whole application, read from the environment (FACETRAIL_*)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

CONFIG_FILE = "facetrail.toml"
POLICIES = ("none", "review", "prior")


class ConfigFile(PydanticBaseSettingsSource):
    """Settings from a TOML file: FACETRAIL_CONFIG, or facetrail.toml in the data folder if it exists.
    The environment and command-line options take precedence over it."""

    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.init_kwargs = init_kwargs

    def path(self) -> Path | None:
        explicit = self.init_kwargs.get("config_file") or os.environ.get("FACETRAIL_CONFIG")
        if explicit:
            return Path(explicit)
        data_dir = self.init_kwargs.get("data_dir") or os.environ.get("FACETRAIL_DATA_DIR") or "facetrail-data"
        found = Path(data_dir) / CONFIG_FILE
        return found if found.is_file() else None

    def get_field_value(self, field, field_name):  # required by the base class; __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self.path()
        if path is None:
            return {}
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read the configuration file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
        unknown = sorted(set(values) - set(self.settings_cls.model_fields))
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}")
        return {**values, "config_file": path}


class Settings(BaseSettings):
    """facetrail settings. Every field can be set with an environment variable FACETRAIL_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FACETRAIL_", extra="ignore")

    data_dir: Path = Field(Path("facetrail-data"), description="Folder for the database, index and media.")
    config_file: Path | None = Field(
        None, description=f"TOML file of settings (FACETRAIL_CONFIG); default: {CONFIG_FILE} in the data folder, if any."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file facetrail.db in the data folder."
    )

    # Face engine
    detect_max_side: int = Field(
        1024, ge=64, description="Longest side of the downscaled copy the HOG detector scans (see bench/detect.py)."
    )
    detect_min_side: int = Field(
        200, ge=32, description="Images smaller than this are enlarged to it (and padded) before detection."
    )
    cnn_fallback_max_side: int = Field(
        400,
        ge=0,
        description="When HOG finds nothing in an image no larger than this, retry with dlib's CNN detector "
        "(slow, so only for small images such as tight profile crops). 0 disables the fallback.",
    )
    min_face_size: int = Field(20, ge=1, description="Faces smaller than this (pixels) are ignored.")
    face_model: str = Field(
        "dlib_resnet_v1",
        description="The active face model (`facetrail models` lists them): detector, alignment and descriptor. "
        "Vectors of one model only are indexed and searched. Not set, every command (and a running server or "
        "worker) uses the stored faces' model, so it follows `facetrail reembed`'s switch; set to another "
        "model than the stored faces', it is refused (model_mismatch). See docs/models.md.",
    )

    # Decoding limits
    max_image_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Files larger than this are skipped.")
    max_image_pixels: int = Field(
        64_000_000, ge=1, description="Images with more pixels than this are refused (decompression bombs)."
    )
    decode_budget_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1024 * 1024,
        description="Memory one image decode may use, counted from the header before any pixel is decoded "
        "(width x height x bytes per pixel of the decoded frame, plus the RGB copy facetrail works on). "
        "Larger images are reduced within it (JPEG while decoding) or refused as too_much_memory.",
    )

    # Web
    upload_max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest photo the web app accepts.")
    cpu_workers: int = Field(
        0, ge=0, description="Threads of the web app's CPU pool (decoding, face detection and embedding, index "
        "search, opt-outs, password checks): how many such jobs run at once. 0: one per CPU core but one "
        "(at least 1), leaving a core to the event loop that answers everything else.",
    )
    cpu_queue: int = Field(
        16, ge=0, description="Jobs that may wait for the CPU pool; when that many wait, the web app answers "
        "503 busy with Retry-After instead of queueing more.",
    )

    # Governance
    purposes: list[str] = Field(
        default=["source-verification", "trust-and-safety", "rights-management", "authorised-investigation"],
        min_length=1,
        description="Purpose categories a search may give (JSON list).",
    )

    approval_policy: dict[str, str] = Field(
        default={"investigator": "review", "supervisor": "review"},
        description='Per role: "none", "review" (supervisor reviews afterwards) or "prior" (results withheld until approved).',
    )
    urgent_roles: list[str] = Field(
        default=["investigator", "supervisor"], description="Roles that may make urgent searches."
    )
    urgent_hours: int = Field(48, ge=1, description="Urgent searches must be approved within this many hours.")
    repeat_subject_count: int = Field(
        5, ge=2, description="Hold a user's N-th search of the same face (without a shared case) for a supervisor."
    )
    repeat_subject_days: int = Field(
        30, ge=1, description="Window for repeat-subject detection; query descriptors are deleted after it."
    )
    search_limits: dict[str, dict[str, int]] = Field(
        default={"investigator": {"hour": 30, "day": 200}, "supervisor": {"hour": 60, "day": 400}},
        description='Searches allowed per role and window, e.g. {"investigator": {"hour": 30, "day": 200}}.',
    )
    user_search_limits: dict[str, dict[str, int]] = Field(
        default={}, description="Per-user limits that replace the role's, same form, keyed by username."
    )
    opt_out_per_hour: int = Field(5, ge=1, description="Opt-out requests accepted per client address per hour.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Addresses or networks (comma separated, e.g. \"127.0.0.1, 10.0.0.0/8\") of reverse proxies "
        "whose X-Forwarded-For and X-Forwarded-Proto headers are believed; from anyone else they are ignored. "
        "Default: none (the connecting address is the client's).",
    )

    # Search
    match_threshold: float = Field(
        0.6, gt=0, description="Largest descriptor distance reported as a match (dlib's usual 0.6)."
    )
    top_k: int = Field(10, ge=1, le=1000, description="Default number of results.")

    # Ingest
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="Processes used by ingest."
    )

    # Vector index
    vector_uri: str = Field(
        "",
        description="Where face vectors are searched: empty = FAISS files in the data folder (exact while "
        "small, compressed with exact re-ranking beyond exact_limit); a path ending in .db = embedded "
        "milvus-lite (one process at a time); http(s)://host:19530 = a Milvus standalone or cluster.",
    )
    vector_token: str = Field("", description="Token (or user:password) for a Milvus server.")
    exact_limit: int = Field(
        200_000, ge=0, description="Faces up to which the FAISS index stays exact (flat); beyond it a "
        "compressed index is trained in the background (see bench/search.py).",
    )

    # Fetching and crawling (declared sources only)
    fetch_allow: str = Field(
        "",
        description='Exact "host:port" pairs on loopback or private networks that may be fetched anyway '
        '(comma separated, e.g. "127.0.0.1:8765" for a local test site). Everything else non-public is refused.',
    )
    user_agent: str = Field(
        "facetrail/0.1 (+https://github.com/facetrail/facetrail; declared-source crawler)",
        description="User-Agent of the crawler and fetcher; must hold a contact URL. robots.txt groups are "
        "matched on its product token, the leading letters, '_' and '-' ('facetrail').",
    )
    crawl_delay: float = Field(1.0, ge=0, description="Seconds between requests to one host (AutoThrottle may raise it).")
    crawl_max_pages: int = Field(1000, ge=1, description="Default page limit of a crawl (a source or --max-pages may set it).")
    crawl_max_depth: int = Field(3, ge=0, description="Default link depth of a crawl.")
    crawl_max_images_per_page: int = Field(
        500, ge=0, description="Images of one page indexed at most, in document order; the rest are "
        "reported once as too_many_images."
    )
    crawl_max_images: int = Field(
        20_000, ge=0, description="Images one crawl requests at most; pages met after that list only images "
        "requested before (reported as image_budget)."
    )
    crawl_max_seconds: float = Field(
        3600, gt=0, description="Seconds a crawl may run in all; then it stops requesting, and what it "
        "fetched is stored (reported as deadline)."
    )
    fetch_max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest page or image fetched.")
    fetch_timeout: float = Field(30, gt=0, description="Seconds a fetch may take in all (slow servers are cut off).")
    capture_max_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024, description="Capture (ingest/capture.py): a WARC file of captured HTTP "
        "responses is closed and a new one started past this size."
    )
    capture_source_max_bytes: int = Field(
        20 * 1024 * 1024 * 1024, ge=0, description="Capture: the WARC files of one source hold at most this "
        "much; past it, its oldest files are deleted. 0: nothing more is captured (files kept stay)."
    )

    # Verifiable audit log (docs/audit-verification.md)
    audit_key_file: Path | None = Field(
        None, description="Ed25519 key that signs audit checkpoints (PEM, 0600), made by `facetrail init`; "
        "default: audit-signing.key in the data folder. Keep it off the database's host and backups if you can.",
    )
    audit_key: str = Field(
        "", description="The signing key itself (PEM text, or the 32-byte seed in base64), e.g. from a secret "
        "store; takes precedence over audit_key_file.",
    )
    audit_origin: str = Field(
        "", description="The log's name in its checkpoints; default: facetrail/audit/ and the key's fingerprint."
    )
    audit_witnesses: list[str] = Field(
        default=[], description='Where every checkpoint is also sent (JSON list): "file:/mnt/other/checkpoints.log" '
        '(appended), "dir:/mnt/other/checkpoints/" (one file each), "syslog:" (local /dev/log), '
        '"syslog:HOST:PORT" (UDP), "https://witness.example/checkpoints" (POST).',
    )
    audit_checkpoint_minutes: float = Field(
        5, gt=0, description="The web server signs a checkpoint this often when the audit log grew (and at shutdown).",
    )
    audit_tsa_url: str = Field(
        "", description="RFC 3161 time-stamping authority that countersigns each checkpoint (optional).",
    )
    audit_retention_days: int = Field(
        0, ge=0, description="Days audit entries are kept; 0 (the default): for ever. Facetrail deletes no "
        "audit entry; a value under 183 (six months, EU AI Act Art. 26(6)) is refused.",
    )

    # Watches: their threshold and the notifications of their hits (docs/governance.md#watches)
    watch_threshold: float | None = Field(
        None, gt=0, le=2, description="Largest distance at which a new face is a watch's hit; default: the "
        "model's match threshold narrowed as watch photos add up (1 stranger's new face in 1,000 fires a watch; "
        "docs/governance.md#watches).",
    )
    smtp_host: str = Field("", description="SMTP server that sends watch notifications by email; empty: no email.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Its port.")
    smtp_from: str = Field("facetrail@localhost", description="The sender address of watch notifications.")
    smtp_starttls: bool = Field(False, description="Use STARTTLS before sending (verifying the server's certificate).")
    public_url: str = Field("", description="The web app's address as its users reach it (e.g. "
                            "https://facetrail.example), for links in notifications; empty: paths only.")

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit-signing.key"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, ConfigFile(settings_cls, init_settings.init_kwargs))

    @field_validator("audit_origin")
    @classmethod
    def _origin(cls, value: str) -> str:
        if value and (value != value.strip() or "+" in value or any(c.isspace() for c in value)):
            raise ValueError(f"audit_origin {value!r}: a checkpoint's log name holds no spaces and no '+'")
        return value

    @field_validator("audit_retention_days")
    @classmethod
    def _six_months(cls, value: int) -> int:
        if 0 < value < 183:
            raise ValueError(f"audit_retention_days {value}: audit entries are kept at least 183 days "
                             "(six months, EU AI Act Art. 26(6)); 0 keeps them for ever")
        return value

    @field_validator("approval_policy")
    @classmethod
    def _policies(cls, value: dict[str, str]) -> dict[str, str]:
        for role, policy in value.items():
            if policy not in POLICIES:
                raise ValueError(f"approval policy of {role!r} is {policy!r}; one of {', '.join(POLICIES)}")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", ",").split(",") if part]
        if isinstance(value, list):
            for entry in value:
                try:
                    ipaddress.ip_network(str(entry).strip(), strict=False)
                except ValueError:
                    raise ValueError(f"trusted proxy {entry!r} is not an IP address or network") from None
            value = [str(entry).strip() for entry in value]
        return value

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @cached_property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'facetrail.db').resolve()}"

    @property
    def index_dir(self) -> Path:
        """The vector index of the active face model: one folder per model (the default model's is
        the folder of earlier versions), so vectors of two models never share an index."""
        default = type(self).model_fields["face_model"].default
        return self.data_dir / ("index" if self.face_model == default else f"index-{self.face_model}")

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. from CLI options) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
