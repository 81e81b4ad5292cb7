"""Configuration: environment variables prefixed ``AIOPS_`` (or a ``.env`` file), with defaults
that run everything embedded on one machine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.connection import nats_servers

Role = Literal["viewer", "operator", "admin", "agent"]


class FreezeWindowSetting(BaseModel):
    """A change freeze: {"start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00Z", "reason": "..."}."""

    start: datetime
    end: datetime
    reason: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AIOPS_", env_file=".env", extra="ignore", populate_by_name=True
    )

    nats_url: str | None = Field(
        default=None,
        description="an existing NATS: one URL or a cluster's, comma-separated; unset = start the embedded server",
    )
    js_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="replicas of every JetStream stream and KV bucket: 1 on one server, 3 on a NATS cluster",
    )
    data_dir: Path = Field(default=Path(".aiops"), description="embedded NATS data, state files")
    backend: Literal["twin", "kubernetes", "slurm"] = Field(
        default="twin",
        description="what the MCP tools act on: the embedded fleet twin, a Kubernetes or a Slurm cluster",
    )
    cluster: str = "sim-a"
    seed: int = 7
    fleet_nodes: int | None = Field(
        default=None,
        description="nodes of the fleet twin (twin backend only): a multiple of 8, at least 16; "
        "unset = the 16-node twin",
    )
    speed: float = Field(default=60.0, gt=0, description="simulated seconds per wall-clock second (twin)")
    http_host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("aiops_http_host", "aiops_mcp_host"),
        description="AIOPS_HTTP_HOST (or AIOPS_MCP_HOST): where MCP over HTTP and /metrics listen",
    )
    http_port: int = Field(
        default=8765,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("aiops_http_port", "aiops_mcp_port"),
        description="AIOPS_HTTP_PORT (or AIOPS_MCP_PORT): MCP over HTTP and /metrics; 0 = any free port",
    )
    max_isolations_per_hour: int = Field(default=8, ge=0)
    dedupe_window_s: float = Field(default=600.0, gt=0)
    group_wait_s: float = Field(
        default=2.0, ge=0, description="hangs and slowdowns wait for concurrent signals before planning"
    )
    metrics_port: int = Field(
        default=9400, ge=0, le=65535, description="the twin's dcgm-exporter /metrics port (0 = any free)"
    )
    dcgm_scrape_interval_s: float = Field(default=1.0, gt=0, description="DCGM detector scrape interval")
    heartbeat_interval_s: float = Field(default=10.0, gt=0, description="twin ranks beat every N simulated s")
    agent_id: str = "triage-agent"
    mcp_principal: str = Field(default="local-operator", description="who `aiops mcp` (stdio) acts as")
    mcp_role: Role = "operator"
    slack_signing_secret: str | None = Field(
        default=None,
        description="Slack app signing secret; set it to serve /slack/commands and /slack/interactivity",
    )
    slack_users: dict[str, str] = Field(
        default_factory=dict,
        description='chat users to principals: {"<slack user id>": "<principal>:<role>"}; ids only (names change), unmapped = viewer',
    )
    slack_bot_token: str | None = Field(default=None, description="bot token for incident notifications")
    slack_channel: str | None = Field(default=None, description="channel id for incident notifications")
    slack_api_url: str = "https://slack.com/api/"
    mcp_url: str | None = Field(
        default=None, description="a running platform's MCP endpoint, for `aiops slash`"
    )
    mcp_token: str | None = Field(default=None, description="bearer token for mcp_url")
    tokens: dict[str, str] = Field(
        default_factory=dict,
        description='bearer tokens of the HTTP MCP endpoint: {"<token>": "<principal>:<role>"} (JSON)',
    )
    # The Claude planner and summaries (agents/claude, agents/planner_select.py). Off without a key.
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("aiops_anthropic_api_key", "anthropic_api_key"),
        description="ANTHROPIC_API_KEY; unset = rules planner and template summaries only",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("aiops_anthropic_base_url", "anthropic_base_url"),
        description="ANTHROPIC_BASE_URL; unset = Anthropic's API",
    )
    planner: Literal["rules", "explain", "hybrid", "claude"] = Field(
        default="hybrid",
        description="rules; explain = rules decide, Claude summarizes; hybrid = Claude for what the rules "
        "do not know; claude = Claude decides every incident (rules on any failure)",
    )
    claude_model: str = "claude-sonnet-4-6"
    claude_max_steps: int = Field(default=8, ge=1, le=50, description="model calls per incident")
    claude_max_wall_s: float = Field(default=90.0, gt=0, description="wall-clock seconds per incident")
    claude_max_tokens: int = Field(default=150_000, ge=1_000, description="tokens per incident, in + out")
    claude_max_cost_usd: float = Field(default=0.50, gt=0, description="dollars per incident")
    claude_min_confidence: float = Field(default=0.6, ge=0, le=1, description="below it Claude may not act")
    # The MCP server as a product (mcp_server/): transports, identity, backends. See README "MCP clients".
    tokens_file: Path | None = Field(
        default=None, description='a JSON file of bearer tokens, {"<token>": "<principal>:<role>[:<kind>]"}'
    )
    read_only: bool = Field(
        default=False, description="people's MCP endpoints hide and refuse every mutation"
    )
    confirm_destructive: bool = Field(
        default=True,
        description="a person confirms destructive tools through MCP elicitation (refused if the client cannot ask)",
    )
    prometheus_url: str | None = Field(
        default=None, description="a Prometheus scraping dcgm-exporter: the telemetry tools read it"
    )
    dcgm_source: Literal["prometheus", "exporters", "nodes", "off"] | None = Field(
        default=None,
        description="where the DCGM detector of a real backend reads: prometheus (AIOPS_PROMETHEUS_URL), "
        "exporters (AIOPS_DCGM_EXPORTERS), nodes (node agents relay with `aiops node --dcgm-exporter`) "
        "or off; unset = whichever of the two URLs settings is set (both or neither: an error at start)",
    )
    dcgm_exporters: str | None = Field(
        default=None,
        description="comma-separated dcgm-exporter /metrics URLs the DCGM detector reads directly (no Prometheus)",
    )
    dcgm_exporter_timeout_s: float = Field(
        default=5.0, gt=0, description="an exporter that has not answered within this is down for the round"
    )
    dcgm_exporter_concurrency: int = Field(
        default=32, ge=1, le=1024, description="exporters read at the same time"
    )
    kube_context: str | None = Field(
        default=None, description="kubeconfig context; unset = current (or in-cluster)"
    )
    kube_in_cluster: bool = Field(default=False, description="use the pod's service account")
    kube_job_kind: Literal["volcano", "pytorchjob", "jobset"] = Field(
        default="volcano", description="which job API the training jobs use (restart goes through it)"
    )
    kube_job_namespace: str = Field(default="default", description="namespace of the training jobs")
    # The Slurm backend (mcp_server/backends/slurm/; README "Run on a Slurm cluster").
    slurm_conf: Path | None = Field(
        default=None, description="slurm.conf for sinfo/squeue/scontrol (SLURM_CONF); unset = Slurm's default"
    )
    slurm_bin_dir: Path | None = Field(
        default=None, description="where Slurm's client commands are; unset = PATH"
    )
    slurm_timeout_s: float = Field(default=30.0, gt=0, description="a Slurm command that takes longer fails")
    slurm_spare_partition: str | None = Field(
        default=None,
        description="the partition holding warm spares (a swap moves one into the job's partition)",
    )
    slurm_spare_reservation: str | None = Field(
        default=None, description="or: the reservation holding warm spares (a swap takes one out of it)"
    )
    # Safety of real operations (aiops/safety.py turns these into the policy's limits).
    observe_only: bool | None = Field(
        default=None,
        description="plan, policy-check and record runbooks but change nothing; unset = on for any real "
        "backend (kubernetes), off for the fleet twin",
    )
    max_out_of_service_pct: int = Field(
        default=30, ge=0, le=100, description="blast radius: cluster share out of service"
    )
    min_spares: int | Literal["auto"] = Field(
        default=1,
        description="warm spares kept in reserve; dipping below needs approval. 'auto': the reserve "
        "follows spare_advice (P(dry) < 1% from 30 days of incidents), never below min_spares_floor",
    )
    min_spares_floor: int = Field(
        default=1,
        ge=0,
        description="with AIOPS_MIN_SPARES=auto: the least reserve, and the reserve while "
        "the incident history has nothing to size from",
    )
    max_gpu_hours_at_risk: int = Field(
        default=100, ge=0, description="a restart discarding more GPU-hours of progress needs approval"
    )
    breaker_threshold_pct: int = Field(
        default=20, ge=0, le=100, description="circuit breaker: share of nodes taken out within the window"
    )
    breaker_window_s: float = Field(
        default=3600.0, gt=0, description="circuit breaker window (backend clock)"
    )
    approval_ttl_s: float = Field(default=3600.0, gt=0, description="an approval request expires after this")
    agent_requires_approval: bool = Field(
        default=False, description="every mutation of the agent waits for a person"
    )
    freeze_windows: list[FreezeWindowSetting] = Field(
        default_factory=list, description="change freezes (JSON list): the agent acts only with approval"
    )
    preemptive_removal: bool = Field(
        default=False,
        description="the agent swaps out GPUs whose signals predict failure (rising corrected ECC, retired "
        "pages, recurring thermal slowdown, a lemon left in service) at their job's next stop or checkpoint "
        "boundary, and hands the node to the deferred repair (agents/preemptive.py)",
    )
    preemptive_drain_after_s: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="with preemptive_removal: when the job has not stopped this long after the flag, drain "
        "it at its next checkpoint boundary (backend clock)",
    )
    embedded_agent: bool = Field(
        default=True, description="run the triage agent inside `aiops up`; off when it runs as `aiops agent`"
    )
    agents: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="`aiops up` runs this many `aiops agent` replicas as child processes and restarts "
        "any that dies; unset = one agent inside the platform process",
    )
    # The node agent (`aiops node`, events/node/).
    node_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("aiops_node_name", "node_name"),
        description="NODE_NAME: this node's name for `aiops node` (unset = the host name)",
    )
    node_state_dir: Path = Field(
        default=Path("/var/lib/aiops-node"), description="`aiops node`: cursor and on-disk buffer"
    )
    node_spool_lines: int = Field(
        default=100_000, ge=1, description="`aiops node`: kernel log lines kept on disk through a NATS outage"
    )
    agent_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="`aiops agent` serves its own /metrics (planner latency, Claude tokens) on this port",
    )
    log_format: Literal["text", "json"] = Field(default="text", description="log lines as text or JSON")
    agent_token: str | None = Field(
        default=None, description="bearer token `aiops agent` presents to the MCP endpoint"
    )

    @model_validator(mode="after")
    def _one_spare_pool(self) -> Settings:
        if self.slurm_spare_partition and self.slurm_spare_reservation:
            raise ValueError(
                "set AIOPS_SLURM_SPARE_PARTITION or AIOPS_SLURM_SPARE_RESERVATION, not both: "
                "the Slurm spare pool is one or the other"
            )
        if self.slurm_conf is not None and not self.slurm_conf.is_file():
            raise ValueError(f"AIOPS_SLURM_CONF={self.slurm_conf} is not a file")
        return self

    @field_validator("dcgm_exporters")
    @classmethod
    def _exporter_urls(cls, urls: str | None) -> str | None:
        if urls is None or not urls.strip():
            return None
        for url in (u.strip() for u in urls.split(",")):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"AIOPS_DCGM_EXPORTERS holds http(s) URLs, comma-separated; not {url!r}")
        return urls

    @model_validator(mode="after")
    def _dcgm_needs_a_real_backend(self) -> Settings:
        if self.backend == "twin" and (self.dcgm_source or self.dcgm_exporters):
            raise ValueError(
                "AIOPS_DCGM_SOURCE and AIOPS_DCGM_EXPORTERS are for a real backend: the fleet twin's own "
                "exporter feeds the embedded platform's DCGM detector"
            )
        return self

    @property
    def dcgm_exporter_urls(self) -> list[str]:
        """``dcgm_exporters`` as a list (empty when unset)."""
        return [u.strip() for u in (self.dcgm_exporters or "").split(",") if u.strip()]

    @field_validator("fleet_nodes")
    @classmethod
    def _fleet_size(cls, nodes: int | None, info: ValidationInfo) -> int | None:
        if nodes is None:
            return None
        backend = info.data.get("backend", "twin")
        if backend != "twin":
            raise ValueError(
                f"AIOPS_FLEET_NODES sizes the fleet twin; the {backend} backend has the nodes it has"
            )
        from fleet.spec import FleetSpec

        FleetSpec.sized(nodes)  # raises a readable ValueError
        return nodes

    @model_validator(mode="after")
    def _agents_or_no_agent(self) -> Settings:
        if self.agents is not None and "embedded_agent" in self.model_fields_set and not self.embedded_agent:
            raise ValueError(
                "--agents / AIOPS_AGENTS starts agent replicas; --no-agent / AIOPS_EMBEDDED_AGENT=false "
                "leaves every agent out: pick one"
            )
        return self

    @field_validator("min_spares")
    @classmethod
    def _min_spares(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"min_spares must be a count >= 0 or 'auto', got {value}")
        return value

    @field_validator("nats_url")
    @classmethod
    def _servers(cls, url: str | None) -> str | None:
        if url is not None and url.strip():
            nats_servers(url)  # raises a readable ValueError
            return url
        return None

    @model_validator(mode="after")
    def _replicas_need_a_cluster(self) -> Settings:
        if self.js_replicas > 1 and not self.nats_url:
            raise ValueError(
                f"AIOPS_JS_REPLICAS={self.js_replicas} needs a NATS cluster (set AIOPS_NATS_URL to its "
                "servers); the embedded nats-server is a single node"
            )
        return self

    @property
    def nats_server_list(self) -> list[str]:
        """``nats_url`` as the list nats-py takes (empty when the embedded server runs)."""
        return nats_servers(self.nats_url) if self.nats_url else []
