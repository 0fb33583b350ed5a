"""The node's settings: one TOML file plus ``DICOM_NODE_*`` environment variables.

Precedence, highest first: environment variables, the TOML file, defaults.
A top-level key ``port`` is set by ``DICOM_NODE_PORT``; a key inside a table,
``quiet_seconds`` in ``[completion]``, by ``DICOM_NODE_COMPLETION__QUIET_SECONDS``.
Lists and tables given in an environment variable are written as JSON.

Settings are validated once, at start-up, into a frozen :class:`Settings`
object that is passed explicitly to whatever needs it. Every bad value is
reported by :class:`SettingsError` with the name of the setting and where it
came from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dicom_node.core.credentials import read_secret, redact_url

ENV_PREFIX = "DICOM_NODE_"
CONFIG_ENV = "DICOM_NODE_CONFIG"
#: The embedded queue (a SQLite file; see workers/transport.py).
EMBEDDED_BROKER_SCHEME = "dicomnode+sqlite"

# PS3.5 6.2: AE titles are at most 16 characters of the default repertoire
# without backslash or control characters, and not entirely spaces.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


#: Settings that are URLs and may carry a password.
_URL_FIELDS = ("database_url", "broker_url")


class SettingsError(ValueError):
    """One or more settings are invalid; ``str()`` lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


def _check_ae_title(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError(
            f"{value!r} is not a valid AE title (1-16 printable ASCII characters, "
            "no backslash, not all spaces)"
        )
    return value.strip()


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CallingAE(_Section):
    """A calling AE title allowed to associate, optionally bound to a host."""

    ae_title: str
    host: str | None = Field(
        default=None, description="IP address or host name the association must come from"
    )

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        return _check_ae_title(value)


class Destination(_Section):
    """A DICOM peer the results are sent to (C-STORE)."""

    ae_title: str
    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    name: str | None = Field(default=None, description="label shown by `dicom-node outbox`")
    tls: bool = Field(default=False, description="associate over DICOM TLS (see [tls])")

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        return _check_ae_title(value)

    @property
    def label(self) -> str:
        return self.name or self.ae_title


class ResultsSettings(_Section):
    """The DICOM objects written for each analysed series and their delivery."""

    enabled: bool = True
    key_images: bool = True
    summary: bool = True
    key_image_count: Annotated[int, Field(ge=1, le=20)] = 5
    # a BINARY segmentation can only be encapsulated as JPEG 2000 (lossless)
    seg_compression: Literal["none", "jpeg2000-lossless"] = "none"
    return_to_sender: bool = False
    return_to_sender_port: Annotated[int, Field(ge=1, le=65535)] = 104
    return_to_sender_tls: bool = False
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_max_interval_seconds: Annotated[float, Field(gt=0)] = 900.0
    retry_max_age_hours: Annotated[float, Field(gt=0)] = 48.0
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25


class WebhookChannel(_Section):
    """A JSON POST per alert, signed with HMAC-SHA256 of the body."""

    name: str
    url: str
    secret_env: str | None = Field(
        default=None, description="environment variable holding the HMAC secret"
    )
    secret_file: Path | None = Field(default=None, description="file holding the HMAC secret")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    def secret(self) -> bytes:
        """The signing secret, read when needed (never stored in settings or logs)."""
        value = read_secret(f"webhook {self.name}", self.secret_env, self.secret_file)
        if value is None:
            raise ValueError(f"webhook {self.name}: no secret_env or secret_file")
        return value.encode()


class EmailChannel(_Section):
    """An e-mail per alert over SMTP."""

    smtp_host: str
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="environment variable holding the SMTP password"
    )
    password_file: Path | None = Field(default=None, description="file holding the SMTP password")
    sender: str
    recipients: tuple[str, ...]

    def password(self) -> str | None:
        """The SMTP password, read when needed (never stored in settings or logs)."""
        return read_secret("alerts.email password", self.password_env, self.password_file)


class HL7Channel(_Section):
    """An HL7 v2.5 ORU^R01 per alert over MLLP, for an EHR's interface engine."""

    host: str
    port: Annotated[int, Field(ge=1, le=65535)]
    sending_application: str = "DICOM_NODE"
    sending_facility: str = "RADIOLOGY"
    receiving_application: str = "EHR"
    receiving_facility: str = "HOSPITAL"


class AlertSettings(_Section):
    """The progression rule and where its alerts go."""

    enabled: bool = True
    window_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 48.0
    min_interval_hours: Annotated[float, Field(ge=0)] = 1.0
    growth_threshold: Annotated[float, Field(gt=0)] = 0.5
    empty_prior_max_ml: Annotated[float, Field(ge=0)] = 1.0
    new_infection_min_ml: Annotated[float, Field(ge=0)] = 10.0
    # Growth (and new infection) only counts when the infected volume grew by at least
    # this many mL; 0 switches the check off. See docs/tracking.md.
    min_growth_ml: Annotated[float, Field(ge=0)] = 70.0  # = tracking.rule.DEFAULT_MIN_GROWTH_ML
    default_timezone: str = "UTC"
    webhooks: tuple[WebhookChannel, ...] = ()
    email: EmailChannel | None = None
    hl7: HL7Channel | None = None
    retry_initial_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_max_interval_seconds: Annotated[float, Field(gt=0)] = 900.0
    retry_max_age_hours: Annotated[float, Field(gt=0)] = 72.0

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a known time zone (e.g. Europe/Berlin)") from exc
        return value


class PriorsSettings(_Section):
    """Asking the PACS for earlier scans the node has not seen (C-FIND, then C-MOVE)."""

    query_pacs: bool = False
    ae_title: str | None = None
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    tls: bool = Field(default=False, description="query and retrieve over DICOM TLS")


class TLSSettings(_Section):
    """DICOM TLS (PS3.15 B.1): the listener's certificate and the trust for peers.

    ``enabled`` makes the listener speak TLS only. Outgoing associations use TLS
    per peer (``destinations[].tls``, ``priors.tls``, ``results.return_to_sender_tls``);
    they verify the peer against ``ca_file`` (the system's CAs when unset) and
    present ``cert_file``/``key_file`` as client certificate when set.
    """

    enabled: bool = False
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    require_client_cert: bool = False
    check_hostname: bool = True

    @model_validator(mode="after")
    def _complete(self) -> TLSSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together: set both or neither")
        if self.enabled and self.cert_file is None:
            raise ValueError("tls.enabled needs tls.cert_file and tls.key_file")
        if self.require_client_cert and not (self.enabled and self.ca_file):
            raise ValueError(
                "tls.require_client_cert needs tls.enabled and tls.ca_file (the CA of the clients)"
            )
        return self


class CompletionSettings(_Section):
    """When a series counts as completely received."""

    quiet_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    max_wait_seconds: Annotated[float, Field(gt=0, le=86400)] = 900.0
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    # a released association whose series forms a complete, regular stack completes
    # it after this short grace instead of quiet_seconds
    release_grace_seconds: Annotated[float, Field(ge=0, le=60)] = 0.5


class NetworkSettings(_Section):
    """The listener's limits and timeouts: what a peer may announce and how long it may stall.

    Every size a peer announces is checked against these before memory is taken,
    and every phase of a connection has a deadline, so that neither a hostile
    peer nor a broken one can exhaust the node or hold its slots.
    """

    listener_processes: Literal["auto"] | Annotated[int, Field(ge=0, le=64)] = Field(
        default="auto",
        description="processes sharing the port (auto: one per CPU core, at most 4; "
        "0: inside the node process)",
    )
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 50
    max_pending_connections: Annotated[int, Field(ge=1, le=10000)] = 100
    request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    acse_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    dimse_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    idle_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    pdu_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 30.0
    max_pdu_bytes: Annotated[int, Field(ge=4096, le=64 * 2**20)] = 2**20
    max_association_request_bytes: Annotated[int, Field(ge=4096, le=16 * 2**20)] = 2**20
    max_dataset_mb: Annotated[int, Field(ge=1, le=65536)] = 1024
    max_pixel_data_mb: Annotated[int, Field(ge=1, le=65536)] = 1024

    @property
    def processes(self) -> int:
        """How many listener processes to run (0: the listener runs in the node process)."""
        if self.listener_processes == "auto":
            return max(1, min(4, os.cpu_count() or 1))
        return self.listener_processes

    @property
    def max_dataset_bytes(self) -> int:
        return self.max_dataset_mb * 2**20

    @property
    def max_pixel_data_bytes(self) -> int:
        return self.max_pixel_data_mb * 2**20


class JobSettings(_Section):
    """Self-healing of the analysis queue: jobs whose message the broker lost are sent again."""

    reaper_interval_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # a complete or queued job is looked for in the broker's queues after this long
    requeue_after_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0
    # a job running longer than this is taken to be lost with its worker and runs again
    max_running_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 60.0


class EligibilitySettings(_Section):
    """Which series are analysed."""

    modalities: tuple[str, ...] = ("CT",)
    min_slices: Annotated[int, Field(ge=1)] = 20
    reject_localizers: bool = True
    orientation_tolerance: Annotated[float, Field(gt=0, le=0.5)] = 0.01
    spacing_tolerance: Annotated[float, Field(gt=0, le=1)] = 0.1


class AnalysisSettings(_Section):
    """The analysis method and its parameters."""

    engine: Literal["hu", "unet2d", "unet25d"] = Field(
        default="unet25d",
        description="hu: the HU-threshold baseline; unet2d / unet25d: the deep models",
    )
    classifier: bool = Field(
        default=True, description="remove false-positive regions with the candidate classifier"
    )
    classifier_threshold: Annotated[float, Field(gt=0, lt=1)] | None = Field(
        default=None, description="classifier operating point (default: the manifest's)"
    )
    classifier_margin: Annotated[float, Field(ge=0, le=2)] = 0.25
    mirror_averaging: bool = Field(
        default=True,
        description="average the infected-region network's prediction with its prediction "
        "on the left-right mirrored slices (twice that network's time; docs/models.md)",
    )
    consolidation_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.25,
        description="the UNet engines' infected-region threshold where the tissue is as dense "
        "as consolidation (-300 HU or more) when it is below the network's operating point "
        "(which applies elsewhere); 1: the operating point everywhere (docs/models.md)",
    )
    weights_dir: Path | None = Field(
        default=None, description="folder of the weights and manifest (default: the shipped ones)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    lung_threshold_hu: float = -200.0
    aerated_threshold_hu: float = -750.0
    body_threshold_hu: float = -500.0
    min_lung_volume_ml: Annotated[float, Field(gt=0)] = 300.0
    edge_rim_mm: Annotated[float, Field(ge=0, le=10)] = 1.5


#: ``scrypt$N$r$p$salt$hash`` (base64), as ``dicom-node web hash-password`` prints it
_PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


class WebUser(_Section):
    """A dashboard user: a name and a password hash (never the password itself)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    password_hash: str

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not _PASSWORD_HASH.match(value):
            raise ValueError("not a password hash; make one with `dicom-node web hash-password`")
        return value


class WebSettings(_Section):
    """Who may open the dashboard: its own users, or users named by a trusted reverse proxy."""

    auth: Literal["password", "header"] = "password"
    users: tuple[WebUser, ...] = ()
    user_header: str = "X-Forwarded-User"
    trusted_proxies: tuple[str, ...] = ()
    session_secret_env: str | None = Field(
        default=None, description="environment variable holding the session-signing secret"
    )
    session_secret_file: Path | None = Field(
        default=None, description="file holding the session-signing secret"
    )
    session_hours: Annotated[float, Field(gt=0, le=24 * 7)] = 12.0
    cookie_secure: bool = False
    login_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or network") from exc
        return value

    @field_validator("session_secret_env")
    @classmethod
    def _secret_env(cls, value: str | None) -> str | None:
        if value is not None and value.startswith(ENV_PREFIX):
            raise ValueError(
                f"{value!r}: names starting with {ENV_PREFIX} are read as settings; "
                "choose another name"
            )
        return value

    @model_validator(mode="after")
    def _header_needs_proxies(self) -> WebSettings:
        if self.auth == "header" and not self.trusted_proxies:
            raise ValueError("web.auth = 'header' needs web.trusted_proxies (the proxy addresses)")
        names = [user.name for user in self.users]
        if len(names) != len(set(names)):
            raise ValueError("web.users: a user name appears twice")
        return self

    def session_secret(self) -> bytes | None:
        """The secret that signs session cookies, read when needed (never logged).

        None when neither a variable nor a file is set: the dashboard then makes
        a random one, and sessions end when the process restarts.
        """
        what = "web session secret"
        secret = read_secret(what, self.session_secret_env, self.session_secret_file)
        if secret is None:
            return None
        if len(secret) < 16:
            raise ValueError(f"{what}: it must be at least 16 characters long")
        return secret.encode()


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dicom-node"


class Settings(_Section):
    """All settings of the node, its workers and its command-line tools."""

    ae_title: str = "DICOM_NODE"
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=1, le=65535)] = 11112
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    min_free_disk_mb: Annotated[int, Field(ge=0)] = 1024
    allowed_callers: tuple[CallingAE, ...] = ()
    destinations: tuple[Destination, ...] = ()
    embedded_worker: bool = True
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    network_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    network: NetworkSettings = NetworkSettings()
    completion: CompletionSettings = CompletionSettings()
    jobs: JobSettings = JobSettings()
    eligibility: EligibilitySettings = EligibilitySettings()
    analysis: AnalysisSettings = AnalysisSettings()
    results: ResultsSettings = ResultsSettings()
    alerts: AlertSettings = AlertSettings()
    priors: PriorsSettings = PriorsSettings()
    tls: TLSSettings = TLSSettings()
    # the dashboard, /metrics and the health endpoints; http_port 0 turns them off
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    web: WebSettings = WebSettings()

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, value: str) -> str:
        return _check_ae_title(value)

    @field_validator("host", "http_host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address to listen on") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError(f"{value!r}: only sqlite:// and postgresql:// URLs are supported")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "sqla+", "amqp")):
            raise ValueError(
                f"{value!r}: use a redis://, amqp:// or sqla+<database URL> broker URL"
            )
        return value

    @model_validator(mode="after")
    def _priors_need_a_pacs(self) -> Settings:
        p = self.priors
        if p.query_pacs and not (p.ae_title and p.host and p.port):
            raise ValueError("priors.query_pacs needs priors.ae_title, priors.host and priors.port")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name in _URL_FIELDS else value)

    def redacted_dump(self) -> dict[str, Any]:
        """The settings as JSON values, with passwords in URLs masked (for display)."""
        dumped = self.model_dump(mode="json")
        for name in _URL_FIELDS:
            dumped[name] = redact_url(dumped[name])
        return dumped

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'node.sqlite'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"{EMBEDDED_BROKER_SCHEME}:///{self.data_dir / 'queue.sqlite'}"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url is None

    @property
    def min_free_disk_bytes(self) -> int:
        return self.min_free_disk_mb * 1024 * 1024


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Nest ``DICOM_NODE_*`` variables into a dict; also return where each came from."""
    values: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        value: Any = raw
        if raw.strip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SettingsError([f"{name}: not valid JSON ({exc.msg})"]) from exc
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise SettingsError([f"{name}: {part!r} is not a table of settings"])
        target[path[-1]] = value
        origin[path] = f"environment variable {name}"
    return values, origin


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _describe(error: Mapping[str, Any], origin: Mapping[tuple[str, ...], str], source: str) -> str:
    loc = tuple(str(part) for part in error["loc"])
    name = ".".join(loc) or "settings"
    where = source
    for length in range(len(loc), 0, -1):
        if loc[:length] in origin:
            where = origin[loc[:length]]
            break
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling; see deploy/dicom-node.example.toml)"
    value = error.get("input")
    shown = "" if error["type"] in ("extra_forbidden", "missing") else f" (got {value!r})"
    return f"{name} [{where}]: {message}{shown}"


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the settings.

    ``config_file`` defaults to ``$DICOM_NODE_CONFIG`` when that is set; with
    neither, only the environment and the defaults apply.
    """
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    file_values: dict[str, Any] = {}
    source = "defaults"
    if config_file is not None:
        source = f"file {config_file}"
        try:
            with config_file.open("rb") as handle:
                file_values = tomllib.load(handle)
        except FileNotFoundError as exc:
            raise SettingsError([f"settings file {config_file} does not exist"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"settings file {config_file} is not valid TOML: {exc}"]) from exc
    env_values, origin = _env_overrides(env)
    try:
        return Settings.model_validate(_merge(file_values, env_values))
    except ValidationError as exc:
        problems = [_describe(error, origin, source) for error in exc.errors()]
        raise SettingsError(problems) from exc


def check_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Problems with the secrets the settings point to (checked at start-up)."""
    problems = []
    alerts = settings.alerts
    sources = [(f"webhook {h.name}", h.secret_env, h.secret_file) for h in alerts.webhooks]
    for hook, env, file in sources:
        if env is None and file is None:
            problems.append(f"{hook}: set secret_env or secret_file (the HMAC signing secret)")
    email = alerts.email
    if email is not None and email.username:
        if email.password_env is None and email.password_file is None:
            problems.append("alerts.email: username is set; set password_env or password_file")
        sources.append(("alerts.email password", email.password_env, email.password_file))
    web = settings.web
    sources.append(("web session secret", web.session_secret_env, web.session_secret_file))
    for what, env, file in sources:
        try:
            read_secret(what, env, file, environ)
        except ValueError as exc:
            problems.append(str(exc))
    return problems
