"""Settings from the environment (and ``.env``), prefix ``LASTRA_`` (PROTOCOL §9).

Times are seconds. List settings are comma-separated plain strings
(``LASTRA_WS_USERS=u1,u2``), not JSON. Every name here is listed with its
default and meaning in ``.env.example``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LASTRA_", env_file=".env", extra="ignore", frozen=True
    )

    # where and how
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["memory", "sqlite", "redis"] = "sqlite"
    data_dir: Path = Path("./data")
    redis_url: str = "redis://127.0.0.1:6379/0"
    node_ttl: float = Field(6.0, ge=1)
    secret: str = ""
    token_ttl: float = Field(86400.0, gt=0)
    log_level: str = "info"

    # the transport flag (§7)
    transport: Literal["sse", "ws", "rollout"] = "ws"
    ws_rollout_percent: int = Field(0, ge=0, le=100)
    ws_users: CommaList = []
    sse_users: CommaList = []
    sse_enabled: bool = True
    # the SSE-era client's wire for tokenless requests (issue 16; off unless turned on)
    legacy_wire: bool = False
    legacy_wire_until: date | None = None  # off from the day after this (UTC)

    # the chat
    history_limit: int = Field(256, ge=1, le=100_000)
    heartbeat_interval: float = Field(30.0, gt=0)
    heartbeat_timeout: float = Field(75.0, gt=0)
    auth_timeout: float = Field(10.0, gt=0)
    typing_timeout: float = Field(5.0, gt=0)
    presence_grace: float = Field(5.0, ge=0)
    presence_batch: float = Field(0.25, ge=0)
    presence_snapshot_max: int = Field(200, ge=1, le=100_000)  # bigger rooms page (§8)
    presence_batch_large: float = Field(0.5, ge=0, le=60)  # their diffs' batch (§8)
    presence_page: int = Field(50, ge=1, le=100_000)  # their pages (§8)
    max_message_bytes: int = Field(65536, ge=1024)
    sse_keepalive: float = Field(15.0, gt=0)
    outbound_queue: int = Field(1024, ge=16)
    outbound_queue_bytes: int = Field(4 * 1024 * 1024, ge=65536)  # and in bytes (4409 past it)
    allowed_origins: CommaList = []

    # calls: STUN/TURN URLs for browsers, and coturn's use-auth-secret secret
    ice_servers: CommaList = []
    turn_secret: str = ""
    turn_ttl: float = Field(86400.0, gt=0)

    # operations and hardening
    admin_token: str = ""
    max_connections: int = Field(10_000, ge=1)
    max_user_connections: int = Field(20, ge=1)
    max_address_connections: int = Field(100, ge=1)  # streams per client address
    # X-Forwarded-For/-Proto are believed only from these (proxy) addresses; empty: none
    forwarded_allow_ips: CommaList = []
    allowed_hosts: CommaList = []  # Host header allow-list (DNS rebinding); empty: any
    moderators: CommaList = []  # userIds allowed to clear and toggle bots; empty: anyone
    # HTTP framing limits, enforced by ``python -m app``'s protocol
    max_header_bytes: int = Field(32768, ge=1024)  # request line + headers, in total
    max_headers: int = Field(100, ge=8)
    header_timeout: float = Field(10.0, gt=0)  # to receive a request's headers
    body_timeout: float = Field(30.0, gt=0)  # the longest pause inside a request body
    session_rate: float = Field(0.5, gt=0)  # sessions per second per client IP
    session_burst: float = Field(20.0, ge=1)
    log_format: Literal["json", "text"] = "json"

    # per-user rate limits: messages per second and burst
    rate_chat: float = Field(5.0, gt=0)
    rate_chat_burst: float = Field(20.0, ge=1)
    rate_signal: float = Field(50.0, gt=0)
    rate_signal_burst: float = Field(200.0, ge=1)
    rate_other: float = Field(20.0, gt=0)
    rate_other_burst: float = Field(60.0, ge=1)
    rate_report: float = Field(1.0, gt=0)  # call-outcome and delivery-report
    rate_report_burst: float = Field(20.0, ge=1)

    # the rollout guard: the WebSocket cohort worse than SSE over the window → assign SSE
    rollout_guard: bool = False
    rollout_guard_window: float = Field(300.0, ge=10, le=3600)  # seconds
    rollout_guard_min_samples: int = Field(20, ge=1)  # WS events before a figure counts
    rollout_guard_abnormal_closes: float = Field(0.05, ge=0, le=1)  # rate above SSE's
    rollout_guard_failed_resumes: float = Field(0.02, ge=0, le=1)
    rollout_guard_call_failures: float = Field(0.10, ge=0, le=1)
    rollout_guard_delivery_p99_ms: float = Field(500.0, ge=0)  # ms above SSE's p99
    test_faults: bool = False  # tests only: POST /api/test/fault, behind the admin token

    # bots and AI
    ai_provider: Literal["offline", "openai"] = "offline"
    ai_model: str = "gpt-4o-mini"
    bots_dir: Path | None = None
    openai_api_key: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "LASTRA_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "LASTRA_OPENAI_BASE_URL")
    )
    ai_timeout: float = Field(30.0, gt=0)  # for the response and for each chunk after it
    ai_retries: int = Field(2, ge=0, le=10)  # retries before the first token only
    ai_context_messages: int = Field(10, ge=0, le=200)  # chat messages sent as context
    ai_seed: int | None = None  # seeds the offline provider and interjections
    ai_interject_gap: float = Field(10.0, ge=0, le=3600)  # least s between two interjections
    ai_offline_delay: float = Field(0.03, ge=0, le=5)  # offline provider: pause per token

    # push notifications (ntfy-compatible; off unless NTFY_URL is set)
    ntfy_url: str | None = None
    ntfy_topic: str | None = None
    ntfy_timeout: float = Field(5.0, gt=0)

    @field_validator(
        "ws_users",
        "sse_users",
        "allowed_origins",
        "ice_servers",
        "forwarded_allow_ips",
        "allowed_hosts",
        "moderators",
        mode="before",
    )
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _heartbeat(self) -> Settings:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("LASTRA_HEARTBEAT_TIMEOUT must exceed LASTRA_HEARTBEAT_INTERVAL")
        return self
