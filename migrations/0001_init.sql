-- Patterns in CHECKs avoid bounded repetition ({0,61}): PostgreSQL's
-- regex engine expands it into a large automaton, which made every insert
-- twice as slow; a length() test plus an unbounded pattern is the same rule.
--
-- Identifiers and names use the "C" collation: byte order, the same order
-- the controller's cache sorts in, so list pages agree whichever serves them,
-- and prefix lookups use the primary key index.
--
-- 0001: the objects of DESIGN.md "Objects": hosts, images (blobs and refs),
-- services, instances, config, events, tokens, the leader lease, and the
-- idempotency keys of POST requests. schema_migrations is created by the
-- migrator itself.

CREATE TABLE blobs (
    digest      text PRIMARY KEY CHECK (length(digest) = 71 AND digest ~ '^sha256:[0-9a-f]*$'),
    size        bigint NOT NULL CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE images (
    id             text COLLATE "C" PRIMARY KEY CHECK (length(id) = 16 AND id ~ '^[0-9a-f]*$'),
    name           text NOT NULL CHECK (length(name) <= 128 AND name ~ '^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$'),
    tag            text NOT NULL DEFAULT 'latest'
                   CHECK (length(tag) <= 128 AND tag ~ '^[A-Za-z0-9_][A-Za-z0-9._-]*$'),
    kind           text NOT NULL CHECK (kind IN ('kernel', 'disk')),
    kernel_digest  text REFERENCES blobs (digest),
    initrd_digest  text REFERENCES blobs (digest),
    disk_digest    text REFERENCES blobs (digest),
    cmdline        text NOT NULL DEFAULT '' CHECK (length(cmdline) <= 4096),
    size           bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, tag),
    CHECK ((kind = 'kernel' AND kernel_digest IS NOT NULL)
        OR (kind = 'disk' AND disk_digest IS NOT NULL))
);

CREATE TABLE hosts (
    id             text COLLATE "C" PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    name           text COLLATE "C" NOT NULL UNIQUE
                   CHECK (length(name) <= 253 AND name ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'),
    address        text NOT NULL DEFAULT '' CHECK (length(address) <= 255),
    state          text NOT NULL DEFAULT 'ready'
                   CHECK (state IN ('ready', 'cordoned', 'draining', 'drained', 'down')),
    labels         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    cap_vcpus      integer NOT NULL DEFAULT 0 CHECK (cap_vcpus >= 0),
    cap_memory_mib bigint NOT NULL DEFAULT 0 CHECK (cap_memory_mib >= 0),
    cap_disk_gib   bigint NOT NULL DEFAULT 0 CHECK (cap_disk_gib >= 0),
    hypervisor     text NOT NULL DEFAULT 'qemu'
                   CHECK (hypervisor IN ('kvm', 'qemu', 'xen', 'test')),
    arch           text NOT NULL DEFAULT 'x86_64',
    session_epoch  bigint NOT NULL DEFAULT 0,
    last_seen      timestamptz,
    version        bigint NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hosts_state ON hosts (state, name);

CREATE TABLE services (
    id               text COLLATE "C" PRIMARY KEY CHECK (length(id) = 16 AND id ~ '^[0-9a-f]*$'),
    name             text COLLATE "C" NOT NULL UNIQUE
                     CHECK (length(name) <= 63 AND name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    image            text NOT NULL CHECK (length(image) BETWEEN 1 AND 256),
    vcpus            integer NOT NULL CHECK (vcpus BETWEEN 1 AND 256),
    memory_mib       integer NOT NULL CHECK (memory_mib BETWEEN 16 AND 1048576),
    disk_gib         integer NOT NULL CHECK (disk_gib BETWEEN 0 AND 65536),
    args             jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(args) = 'array'),
    env              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(env) = 'object'),
    ports            jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(ports) = 'array'),
    restart          text NOT NULL DEFAULT 'always'
                     CHECK (length(restart) <= 15 AND restart ~ '^(never|always|on-failure(:[0-9]+)?)$'),
    constraints      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(constraints) = 'array'),
    strategy         text NOT NULL DEFAULT 'spread' CHECK (strategy IN ('spread', 'binpack')),
    max_per_host     integer NOT NULL DEFAULT 0 CHECK (max_per_host BETWEEN 0 AND 10000),
    partition_policy text NOT NULL DEFAULT 'keep' CHECK (partition_policy IN ('keep', 'stop')),
    links            jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(links) = 'array'),
    replicas         integer NOT NULL DEFAULT 1 CHECK (replicas BETWEEN 0 AND 10000),
    max_unavailable  integer NOT NULL DEFAULT 1 CHECK (max_unavailable BETWEEN 0 AND 10000),
    max_surge        integer NOT NULL DEFAULT 1 CHECK (max_surge BETWEEN 0 AND 10000),
    generation       bigint NOT NULL DEFAULT 1,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleting')),
    version          bigint NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX services_state ON services (state, name);

CREATE TABLE instances (
    id              text COLLATE "C" PRIMARY KEY CHECK (length(id) = 16 AND id ~ '^[0-9a-f]*$'),
    name            text COLLATE "C" NOT NULL
                    CHECK (length(name) <= 63 AND name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    service_id      text COLLATE "C" REFERENCES services (id),
    ordinal         integer CHECK (ordinal >= 1),
    generation      bigint NOT NULL DEFAULT 1,
    image           text NOT NULL CHECK (length(image) BETWEEN 1 AND 256),
    vcpus           integer NOT NULL CHECK (vcpus BETWEEN 1 AND 256),
    memory_mib      integer NOT NULL CHECK (memory_mib BETWEEN 16 AND 1048576),
    disk_gib        integer NOT NULL CHECK (disk_gib BETWEEN 0 AND 65536),
    args            jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(args) = 'array'),
    env             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(env) = 'object'),
    restart         text NOT NULL DEFAULT 'never'
                    CHECK (length(restart) <= 15 AND restart ~ '^(never|always|on-failure(:[0-9]+)?)$'),
    constraints     jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(constraints) = 'array'),
    strategy        text NOT NULL DEFAULT 'spread' CHECK (strategy IN ('spread', 'binpack')),
    max_per_host    integer NOT NULL DEFAULT 0 CHECK (max_per_host BETWEEN 0 AND 10000),
    desired_state   text NOT NULL DEFAULT 'running'
                    CHECK (desired_state IN ('running', 'stopped', 'deleted')),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'scheduled', 'starting', 'running',
                                     'stopping', 'exited', 'failed', 'lost')),
    stop_signal     text CHECK (stop_signal IN ('TERM', 'KILL')),
    host_id         text COLLATE "C" REFERENCES hosts (id),
    exit_code       integer CHECK (exit_code BETWEEN 0 AND 255),
    reason          text CHECK (length(reason) <= 4096),
    pending_reason  text CHECK (length(pending_reason) <= 4096),
    restart_count   integer NOT NULL DEFAULT 0 CHECK (restart_count >= 0),
    next_restart_at timestamptz,
    addresses       jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(addresses) = 'array'),
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    -- exited/failed instances say why; a placed instance names its host.
    CHECK (state NOT IN ('scheduled', 'starting', 'running', 'stopping') OR host_id IS NOT NULL)
);
-- Names are unique among live instances; a deleted one may linger until its
-- agent confirms, while a replacement already carries the name.
CREATE UNIQUE INDEX instances_live_name ON instances (name) WHERE desired_state <> 'deleted';
CREATE UNIQUE INDEX instances_service_ordinal ON instances (service_id, ordinal)
    WHERE desired_state <> 'deleted';
CREATE INDEX instances_service ON instances (service_id, id);
CREATE INDEX instances_state ON instances (state, id);
CREATE INDEX instances_desired ON instances (desired_state, id);
CREATE INDEX instances_host ON instances (host_id, id);

CREATE TABLE service_config (
    service_id  text NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    version     bigint NOT NULL CHECK (version >= 1),
    data        jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, version)
);

CREATE TABLE events (
    id         bigserial PRIMARY KEY,
    time       timestamptz NOT NULL DEFAULT clock_timestamp(),
    type       text NOT NULL CHECK (type ~ '^[a-z]+\.[a-z_]+$'),
    object     text NOT NULL CHECK (object IN ('service', 'instance', 'host', 'image',
                                               'token', 'config', 'controller', 'api')),
    object_id  text,
    name       text,
    message    text NOT NULL,
    actor      text NOT NULL DEFAULT 'api'
);
CREATE INDEX events_object ON events (object, id);
CREATE INDEX events_type ON events (type, id);

CREATE TABLE tokens (
    id             text COLLATE "C" PRIMARY KEY CHECK (length(id) = 16 AND id ~ '^[0-9a-f]*$'),
    name           text COLLATE "C" NOT NULL UNIQUE
                   CHECK (length(name) <= 63 AND name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'),
    secret_sha256  bytea NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'join')),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One row: the leader lease. The epoch is the fencing token.
CREATE TABLE leader_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    holder      text,
    epoch       bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz
);
INSERT INTO leader_lease (id, holder, epoch, expires_at) VALUES (1, NULL, 0, NULL);

CREATE TABLE idempotency_keys (
    key         text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 128),
    route       text NOT NULL,
    object_id   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- NOTIFY is only a wake-up: the listeners re-read the events table. An empty
-- payload lets PostgreSQL fold every notification of one transaction into
-- one (DESIGN.md "Flows": at most one NOTIFY per transaction).
CREATE FUNCTION cloud_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cloud_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION cloud_events_notify();
