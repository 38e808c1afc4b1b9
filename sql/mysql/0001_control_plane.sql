-- The control plane's schema for MySQL / MariaDB.
-- Times are milliseconds since the Unix epoch (BIGINT): one representation
-- for both databases, no time-zone surprises. Calls and segments carry no
-- foreign keys on purpose: events may be replayed from the spool in any
-- order across calls, and every row has its own idempotent key instead.

CREATE TABLE tenants (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    name        VARCHAR(200) NOT NULL,
    created_ms  BIGINT       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE api_tokens (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id   VARCHAR(64)  NOT NULL,
    role        VARCHAR(16)  NOT NULL,
    -- SHA-256 of the token, hex: the token itself is never stored.
    token_hash  CHAR(64)     NOT NULL,
    label       VARCHAR(200) NOT NULL,
    created_ms  BIGINT       NOT NULL,
    revoked_ms  BIGINT       NULL,
    UNIQUE KEY api_tokens_hash (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE calls (
    id              CHAR(36)     NOT NULL PRIMARY KEY,
    tenant_id       VARCHAR(64)  NOT NULL,
    agent           VARCHAR(100) NOT NULL,
    caller_id       VARCHAR(64)  NULL,
    dnis            VARCHAR(64)  NULL,
    direction       VARCHAR(16)  NOT NULL,
    metadata        TEXT         NULL,
    -- Set once, when the row is first written: the pagination key.
    created_ms      BIGINT       NOT NULL,
    registered_ms   BIGINT       NULL,
    start_ms        BIGINT       NULL,
    answer_ms       BIGINT       NULL,
    end_ms          BIGINT       NULL,
    duration_ms     BIGINT       NULL,
    outcome         VARCHAR(16)  NULL,
    handoff_target  VARCHAR(200) NULL,
    KEY calls_tenant_created (tenant_id, created_ms, id),
    -- Cover GET /stats (outcomes and handle time of a period): the first
    -- for short periods, the second groups in index order for long ones.
    KEY calls_tenant_stats (tenant_id, created_ms, outcome, duration_ms),
    KEY calls_tenant_outcome (tenant_id, outcome, created_ms, duration_ms),
    KEY calls_tenant_agent (tenant_id, agent, created_ms),
    KEY calls_tenant_caller (tenant_id, caller_id, created_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE segments (
    call_id      CHAR(36)     NOT NULL,
    seq          BIGINT         NOT NULL,
    speaker      VARCHAR(16)  NOT NULL,
    text         TEXT         NOT NULL,
    start_ms     BIGINT       NOT NULL,
    end_ms       BIGINT       NOT NULL,
    confidence   DOUBLE       NULL,
    interrupted  BIGINT       NOT NULL,
    PRIMARY KEY (call_id, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE turns (
    call_id         CHAR(36)    NOT NULL,
    seq             BIGINT      NOT NULL,
    tenant_id       VARCHAR(64) NOT NULL,
    at_ms           BIGINT      NOT NULL,
    v2v_ms          BIGINT      NOT NULL,
    endpoint_ms     BIGINT      NOT NULL,
    stt_ms          BIGINT      NOT NULL,
    first_token_ms  BIGINT      NOT NULL,
    first_audio_ms  BIGINT      NOT NULL,
    playout_ms      BIGINT      NOT NULL,
    PRIMARY KEY (call_id, seq),
    KEY turns_tenant_at (tenant_id, at_ms, v2v_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE ai_requests (
    id              CHAR(36)     NOT NULL PRIMARY KEY,
    tenant_id       VARCHAR(64)  NOT NULL,
    call_id         CHAR(36)     NULL,
    provider        VARCHAR(100) NOT NULL,
    model           VARCHAR(200) NOT NULL,
    tokens_in       BIGINT       NOT NULL,
    tokens_out      BIGINT       NOT NULL,
    cost            DOUBLE       NOT NULL,
    first_token_ms  BIGINT       NULL,
    total_ms        BIGINT       NOT NULL,
    outcome         VARCHAR(32)  NOT NULL,
    at_ms           BIGINT       NOT NULL,
    KEY ai_requests_call (call_id),
    -- Covers GET /stats (cost by provider) without reading the rows.
    KEY ai_requests_tenant_at (tenant_id, at_ms, provider, tokens_in, tokens_out, cost)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE leads (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id   VARCHAR(64)  NOT NULL,
    -- One lead per call: the idempotent key of a replayed lead event.
    call_id     CHAR(36)     NOT NULL,
    name        VARCHAR(200) NULL,
    phone       VARCHAR(64)  NULL,
    email       VARCHAR(200) NULL,
    intent      TEXT         NULL,
    score       BIGINT       NOT NULL,
    status      VARCHAR(16)  NOT NULL,
    notes       TEXT         NULL,
    created_ms  BIGINT       NOT NULL,
    updated_ms  BIGINT       NOT NULL,
    UNIQUE KEY leads_call (call_id),
    KEY leads_tenant_created (tenant_id, created_ms, id),
    KEY leads_tenant_status (tenant_id, status, created_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE audit_log (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    tenant_id   VARCHAR(64)  NOT NULL,
    token_id    BIGINT       NULL,
    action      VARCHAR(64)  NOT NULL,
    target      VARCHAR(100) NOT NULL,
    detail      TEXT         NOT NULL,
    at_ms       BIGINT       NOT NULL,
    KEY audit_tenant_at (tenant_id, at_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
