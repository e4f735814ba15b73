-- 0020: the schema as migrations 0001-0020 left it (issue 12): tables,
-- sequences, keys, indexes, triggers and the rows the controller expects
-- to find. Those migrations also defined the SQL functions, in layers
-- (a function renamed to <name>_preNNNN or <name>_unlocked and wrapped);
-- every function now has one definition, in migrations/functions/, which
-- the migration runner (controller/migrate.c) applies after the numbered
-- migrations whenever its file changes. The functions this schema calls
-- (trigger functions, the labels CHECK) are in migrations/functions/bound/,
-- applied before the numbered migrations.
--
-- A database migrated by an earlier build through 0020 is carried forward
-- by the runner (its 0001-0020 rows are replaced by this one, its function
-- layers dropped); one migrated only part of the way is refused
-- (docs/decisions.md §18).
--
-- Generated once from pg_dump --schema-only of a database migrated by
-- 0001-0020 (the comments of those migrations are in git history); from
-- here on migrations change the schema only, and a function changes by
-- editing its file in migrations/functions/.

-- ---- Tables ----------------------------------------------------------------
CREATE TABLE services (
    id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL COLLATE pg_catalog."C",
    image text NOT NULL,
    vcpus integer NOT NULL,
    memory_mib integer NOT NULL,
    disk_gib integer NOT NULL,
    args jsonb DEFAULT '[]'::jsonb NOT NULL,
    env jsonb DEFAULT '{}'::jsonb NOT NULL,
    ports jsonb DEFAULT '[]'::jsonb NOT NULL,
    restart text DEFAULT 'always'::text NOT NULL,
    constraints jsonb DEFAULT '[]'::jsonb NOT NULL,
    strategy text DEFAULT 'spread'::text NOT NULL,
    max_per_host integer DEFAULT 0 NOT NULL,
    partition_policy text DEFAULT 'keep'::text NOT NULL,
    links jsonb DEFAULT '[]'::jsonb NOT NULL,
    replicas integer DEFAULT 1 NOT NULL,
    max_unavailable integer DEFAULT 1 NOT NULL,
    max_surge integer DEFAULT 1 NOT NULL,
    generation bigint DEFAULT 1 NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    version bigint DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    ready_when text DEFAULT 'running'::text NOT NULL,
    config_version bigint DEFAULT 0 NOT NULL,
    labels jsonb DEFAULT '{}'::jsonb NOT NULL,
    stop_grace_seconds integer DEFAULT 10 NOT NULL,
    CONSTRAINT services_args_check CHECK ((jsonb_typeof(args) = 'array'::text)),
    CONSTRAINT services_config_version_check CHECK ((config_version >= 0)),
    CONSTRAINT services_constraints_check CHECK ((jsonb_typeof(constraints) = 'array'::text)),
    CONSTRAINT services_disk_gib_check CHECK (((disk_gib >= 0) AND (disk_gib <= 65536))),
    CONSTRAINT services_env_check CHECK ((jsonb_typeof(env) = 'object'::text)),
    CONSTRAINT services_id_check CHECK (((length(id) = 16) AND (id ~ '^[0-9a-f]*$'::text))),
    CONSTRAINT services_image_check CHECK (((length(image) >= 1) AND (length(image) <= 256))),
    CONSTRAINT services_labels_check CHECK (((jsonb_typeof(labels) = 'object'::text) AND cloud_labels_ok(labels))),
    CONSTRAINT services_links_check CHECK ((jsonb_typeof(links) = 'array'::text)),
    CONSTRAINT services_max_per_host_check CHECK (((max_per_host >= 0) AND (max_per_host <= 10000))),
    CONSTRAINT services_max_surge_check CHECK (((max_surge >= 0) AND (max_surge <= 10000))),
    CONSTRAINT services_max_unavailable_check CHECK (((max_unavailable >= 0) AND (max_unavailable <= 10000))),
    CONSTRAINT services_memory_mib_check CHECK (((memory_mib >= 16) AND (memory_mib <= 1048576))),
    CONSTRAINT services_name_check CHECK (((length(name) <= 63) AND (name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'::text))),
    CONSTRAINT services_partition_policy_check CHECK ((partition_policy = ANY (ARRAY['keep'::text, 'stop'::text]))),
    CONSTRAINT services_ports_check CHECK ((jsonb_typeof(ports) = 'array'::text)),
    CONSTRAINT services_ready_when_check CHECK ((ready_when = ANY (ARRAY['running'::text, 'guest'::text]))),
    CONSTRAINT services_replicas_check CHECK (((replicas >= 0) AND (replicas <= 10000))),
    CONSTRAINT services_restart_check CHECK (((length(restart) <= 15) AND (restart ~ '^(never|always|on-failure(:[0-9]+)?)$'::text))),
    CONSTRAINT services_state_check CHECK ((state = ANY (ARRAY['active'::text, 'deleting'::text]))),
    CONSTRAINT services_stop_grace_seconds_check CHECK (((stop_grace_seconds >= 1) AND (stop_grace_seconds <= 3600))),
    CONSTRAINT services_strategy_check CHECK ((strategy = ANY (ARRAY['spread'::text, 'binpack'::text]))),
    CONSTRAINT services_vcpus_check CHECK (((vcpus >= 1) AND (vcpus <= 256)))
);
CREATE TABLE events (
    id bigint NOT NULL,
    "time" timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    type text NOT NULL,
    object text NOT NULL,
    object_id text,
    name text,
    message text NOT NULL,
    actor text DEFAULT 'api'::text NOT NULL,
    CONSTRAINT events_object_check CHECK ((object = ANY (ARRAY['service'::text, 'instance'::text, 'host'::text, 'image'::text, 'token'::text, 'config'::text, 'controller'::text, 'api'::text]))),
    CONSTRAINT events_type_check CHECK ((type ~ '^[a-z]+\.[a-z_]+$'::text))
);
CREATE TABLE hosts (
    id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL COLLATE pg_catalog."C",
    address text DEFAULT ''::text NOT NULL,
    state text DEFAULT 'ready'::text NOT NULL,
    labels jsonb DEFAULT '{}'::jsonb NOT NULL,
    cap_vcpus integer DEFAULT 0 NOT NULL,
    cap_memory_mib bigint DEFAULT 0 NOT NULL,
    cap_disk_gib bigint DEFAULT 0 NOT NULL,
    hypervisor text DEFAULT 'qemu'::text NOT NULL,
    arch text DEFAULT 'x86_64'::text NOT NULL,
    session_epoch bigint DEFAULT 0 NOT NULL,
    last_seen timestamp with time zone,
    version bigint DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT hosts_address_check CHECK ((length(address) <= 255)),
    CONSTRAINT hosts_cap_disk_gib_check CHECK ((cap_disk_gib >= 0)),
    CONSTRAINT hosts_cap_memory_mib_check CHECK ((cap_memory_mib >= 0)),
    CONSTRAINT hosts_cap_vcpus_check CHECK ((cap_vcpus >= 0)),
    CONSTRAINT hosts_hypervisor_check CHECK ((hypervisor = ANY (ARRAY['kvm'::text, 'qemu'::text, 'xen'::text, 'test'::text]))),
    CONSTRAINT hosts_id_check CHECK (((length(id) >= 1) AND (length(id) <= 64))),
    CONSTRAINT hosts_labels_check CHECK ((jsonb_typeof(labels) = 'object'::text)),
    CONSTRAINT hosts_name_check CHECK (((length(name) <= 253) AND (name ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'::text))),
    CONSTRAINT hosts_state_check CHECK ((state = ANY (ARRAY['ready'::text, 'cordoned'::text, 'draining'::text, 'drained'::text, 'down'::text])))
);
CREATE TABLE images (
    id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL,
    tag text DEFAULT 'latest'::text NOT NULL,
    kind text NOT NULL,
    kernel_digest text,
    initrd_digest text,
    disk_digest text,
    cmdline text DEFAULT ''::text NOT NULL,
    size bigint DEFAULT 0 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT images_check CHECK ((((kind = 'kernel'::text) AND (kernel_digest IS NOT NULL)) OR ((kind = 'disk'::text) AND (disk_digest IS NOT NULL)))),
    CONSTRAINT images_cmdline_check CHECK ((length(cmdline) <= 4096)),
    CONSTRAINT images_id_check CHECK (((length(id) = 16) AND (id ~ '^[0-9a-f]*$'::text))),
    CONSTRAINT images_kind_check CHECK ((kind = ANY (ARRAY['kernel'::text, 'disk'::text]))),
    CONSTRAINT images_name_check CHECK (((length(name) <= 128) AND (name ~ '^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$'::text))),
    CONSTRAINT images_size_check CHECK ((size >= 0)),
    CONSTRAINT images_tag_check CHECK (((length(tag) <= 128) AND (tag ~ '^[A-Za-z0-9_][A-Za-z0-9._-]*$'::text)))
);
CREATE TABLE instances (
    id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL COLLATE pg_catalog."C",
    service_id text COLLATE pg_catalog."C",
    ordinal integer,
    generation bigint DEFAULT 1 NOT NULL,
    image text NOT NULL,
    vcpus integer NOT NULL,
    memory_mib integer NOT NULL,
    disk_gib integer NOT NULL,
    args jsonb DEFAULT '[]'::jsonb NOT NULL,
    env jsonb DEFAULT '{}'::jsonb NOT NULL,
    restart text DEFAULT 'never'::text NOT NULL,
    constraints jsonb DEFAULT '[]'::jsonb NOT NULL,
    strategy text DEFAULT 'spread'::text NOT NULL,
    max_per_host integer DEFAULT 0 NOT NULL,
    desired_state text DEFAULT 'running'::text NOT NULL,
    state text DEFAULT 'pending'::text NOT NULL,
    stop_signal text,
    host_id text COLLATE pg_catalog."C",
    exit_code integer,
    reason text,
    pending_reason text,
    restart_count integer DEFAULT 0 NOT NULL,
    next_restart_at timestamp with time zone,
    addresses jsonb DEFAULT '[]'::jsonb NOT NULL,
    version bigint DEFAULT 1 NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    restart_requested boolean DEFAULT false NOT NULL,
    config_version bigint DEFAULT 0 NOT NULL,
    ready boolean DEFAULT false NOT NULL,
    labels jsonb DEFAULT '{}'::jsonb NOT NULL,
    stop_grace_seconds integer DEFAULT 10 NOT NULL,
    kill_grace_seconds integer,
    CONSTRAINT instances_addresses_check CHECK ((jsonb_typeof(addresses) = 'array'::text)),
    CONSTRAINT instances_args_check CHECK ((jsonb_typeof(args) = 'array'::text)),
    CONSTRAINT instances_check CHECK (((state <> ALL (ARRAY['scheduled'::text, 'starting'::text, 'running'::text, 'stopping'::text])) OR (host_id IS NOT NULL))),
    CONSTRAINT instances_config_version_check CHECK ((config_version >= 0)),
    CONSTRAINT instances_constraints_check CHECK ((jsonb_typeof(constraints) = 'array'::text)),
    CONSTRAINT instances_desired_state_check CHECK ((desired_state = ANY (ARRAY['running'::text, 'stopped'::text, 'deleted'::text]))),
    CONSTRAINT instances_disk_gib_check CHECK (((disk_gib >= 0) AND (disk_gib <= 65536))),
    CONSTRAINT instances_env_check CHECK ((jsonb_typeof(env) = 'object'::text)),
    CONSTRAINT instances_exit_code_check CHECK (((exit_code >= 0) AND (exit_code <= 255))),
    CONSTRAINT instances_id_check CHECK (((length(id) = 16) AND (id ~ '^[0-9a-f]*$'::text))),
    CONSTRAINT instances_image_check CHECK (((length(image) >= 1) AND (length(image) <= 256))),
    CONSTRAINT instances_kill_grace_seconds_check CHECK (((kill_grace_seconds >= 1) AND (kill_grace_seconds <= 3600))),
    CONSTRAINT instances_max_per_host_check CHECK (((max_per_host >= 0) AND (max_per_host <= 10000))),
    CONSTRAINT instances_memory_mib_check CHECK (((memory_mib >= 16) AND (memory_mib <= 1048576))),
    CONSTRAINT instances_name_check CHECK (((length(name) <= 63) AND (name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'::text))),
    CONSTRAINT instances_ordinal_check CHECK ((ordinal >= 1)),
    CONSTRAINT instances_pending_reason_check CHECK ((length(pending_reason) <= 4096)),
    CONSTRAINT instances_reason_check CHECK ((length(reason) <= 4096)),
    CONSTRAINT instances_restart_check CHECK (((length(restart) <= 15) AND (restart ~ '^(never|always|on-failure(:[0-9]+)?)$'::text))),
    CONSTRAINT instances_restart_count_check CHECK ((restart_count >= 0)),
    CONSTRAINT instances_state_check CHECK ((state = ANY (ARRAY['pending'::text, 'scheduled'::text, 'starting'::text, 'running'::text, 'stopping'::text, 'exited'::text, 'failed'::text, 'lost'::text]))),
    CONSTRAINT instances_stop_grace_seconds_check CHECK (((stop_grace_seconds >= 1) AND (stop_grace_seconds <= 3600))),
    CONSTRAINT instances_stop_signal_check CHECK ((stop_signal = ANY (ARRAY['TERM'::text, 'KILL'::text]))),
    CONSTRAINT instances_strategy_check CHECK ((strategy = ANY (ARRAY['spread'::text, 'binpack'::text]))),
    CONSTRAINT instances_vcpus_check CHECK (((vcpus >= 1) AND (vcpus <= 256)))
);
CREATE TABLE cluster_settings (
    id integer NOT NULL,
    down_after_seconds integer DEFAULT 30 NOT NULL,
    version bigint DEFAULT 1 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    events_max_age_seconds bigint DEFAULT 604800 NOT NULL,
    events_max_events bigint DEFAULT 1000000 NOT NULL,
    quota_services bigint DEFAULT 10000 NOT NULL,
    quota_instances bigint DEFAULT 100000 NOT NULL,
    quota_images bigint DEFAULT 10000 NOT NULL,
    quota_tokens bigint DEFAULT 10000 NOT NULL,
    quota_upload_sessions bigint DEFAULT 64 NOT NULL,
    quota_blob_bytes bigint DEFAULT '1099511627776'::bigint NOT NULL,
    blob_gc_grace_seconds bigint DEFAULT 86400 NOT NULL,
    blob_min_free_bytes bigint DEFAULT 1073741824 NOT NULL,
    CONSTRAINT cluster_settings_blob_gc_grace_seconds_check CHECK (((blob_gc_grace_seconds >= 1) AND (blob_gc_grace_seconds <= 315360000))),
    CONSTRAINT cluster_settings_blob_min_free_bytes_check CHECK (((blob_min_free_bytes >= 0) AND (blob_min_free_bytes <= '1152921504606846976'::bigint))),
    CONSTRAINT cluster_settings_down_after_seconds_check CHECK (((down_after_seconds >= 5) AND (down_after_seconds <= 3600))),
    CONSTRAINT cluster_settings_events_max_age_seconds_check CHECK (((events_max_age_seconds >= 60) AND (events_max_age_seconds <= 315360000))),
    CONSTRAINT cluster_settings_events_max_events_check CHECK (((events_max_events >= 1) AND (events_max_events <= 1000000000))),
    CONSTRAINT cluster_settings_id_check CHECK ((id = 1)),
    CONSTRAINT cluster_settings_quota_blob_bytes_check CHECK (((quota_blob_bytes >= 0) AND (quota_blob_bytes <= '1152921504606846976'::bigint))),
    CONSTRAINT cluster_settings_quota_images_check CHECK (((quota_images >= 0) AND (quota_images <= 1000000000))),
    CONSTRAINT cluster_settings_quota_instances_check CHECK (((quota_instances >= 0) AND (quota_instances <= 1000000000))),
    CONSTRAINT cluster_settings_quota_services_check CHECK (((quota_services >= 0) AND (quota_services <= 1000000000))),
    CONSTRAINT cluster_settings_quota_tokens_check CHECK (((quota_tokens >= 0) AND (quota_tokens <= 1000000000))),
    CONSTRAINT cluster_settings_quota_upload_sessions_check CHECK (((quota_upload_sessions >= 0) AND (quota_upload_sessions <= 4096)))
);
CREATE TABLE tokens (
    id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL COLLATE pg_catalog."C",
    secret_sha256 bytea NOT NULL,
    role text NOT NULL,
    expires_at timestamp with time zone,
    revoked_at timestamp with time zone,
    last_used_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT tokens_id_check CHECK (((length(id) = 16) AND (id ~ '^[0-9a-f]*$'::text))),
    CONSTRAINT tokens_name_check CHECK (((length(name) <= 63) AND (name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$'::text))),
    CONSTRAINT tokens_role_check CHECK ((role = ANY (ARRAY['admin'::text, 'operator'::text, 'viewer'::text, 'join'::text]))),
    CONSTRAINT tokens_secret_sha256_check CHECK ((length(secret_sha256) = 32))
);
CREATE TABLE agent_certs (
    serial text NOT NULL COLLATE pg_catalog."C",
    host_name text,
    token_id text,
    not_after timestamp with time zone,
    issued_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone,
    CONSTRAINT agent_certs_check CHECK (((host_name IS NULL) = (not_after IS NULL))),
    CONSTRAINT agent_certs_host_name_check CHECK (((length(host_name) <= 253) AND (host_name ~ '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'::text))),
    CONSTRAINT agent_certs_serial_check CHECK (((length(serial) <= 64) AND (serial ~ '^[1-9A-F][0-9A-F]*$'::text)))
);
CREATE TABLE blobs (
    digest text NOT NULL,
    size bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT blobs_digest_check CHECK (((length(digest) = 71) AND (digest ~ '^sha256:[0-9a-f]*$'::text))),
    CONSTRAINT blobs_size_check CHECK ((size >= 0))
);

-- ---- Sequences -------------------------------------------------------------
CREATE SEQUENCE events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE events_id_seq OWNED BY events.id;

-- ---- Tables ----------------------------------------------------------------
CREATE TABLE events_pruned (
    id integer NOT NULL,
    low_water bigint DEFAULT 0 NOT NULL,
    pruned_at timestamp with time zone,
    CONSTRAINT events_pruned_id_check CHECK ((id = 1)),
    CONSTRAINT events_pruned_low_water_check CHECK ((low_water >= 0))
);
CREATE TABLE idempotency_keys (
    key text NOT NULL,
    route text NOT NULL,
    object_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT idempotency_keys_key_check CHECK (((length(key) >= 1) AND (length(key) <= 128)))
);
CREATE TABLE join_tokens (
    id text NOT NULL COLLATE pg_catalog."C",
    secret_sha256 bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    used_at timestamp with time zone,
    used_by text,
    CONSTRAINT join_tokens_check CHECK ((expires_at > created_at)),
    CONSTRAINT join_tokens_check1 CHECK (((used_at IS NULL) = (used_by IS NULL))),
    CONSTRAINT join_tokens_id_check CHECK (((length(id) = 16) AND (id ~ '^[0-9a-f]*$'::text))),
    CONSTRAINT join_tokens_secret_sha256_check CHECK ((length(secret_sha256) = 32)),
    CONSTRAINT join_tokens_used_by_check CHECK ((length(used_by) <= 253))
);
CREATE TABLE leader_lease (
    id integer NOT NULL,
    holder text,
    epoch bigint DEFAULT 0 NOT NULL,
    expires_at timestamp with time zone,
    CONSTRAINT leader_lease_id_check CHECK ((id = 1))
);
CREATE TABLE quota_usage (
    kind text NOT NULL,
    used bigint NOT NULL,
    CONSTRAINT quota_usage_kind_check CHECK ((kind = ANY (ARRAY['services'::text, 'instances'::text, 'images'::text, 'tokens'::text, 'blob_bytes'::text])))
);
CREATE TABLE service_config (
    service_id text NOT NULL,
    version bigint NOT NULL,
    data jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT service_config_data_check CHECK ((jsonb_typeof(data) = 'object'::text)),
    CONSTRAINT service_config_version_check CHECK ((version >= 1))
);
CREATE TABLE service_runtime (
    name text NOT NULL COLLATE pg_catalog."C",
    epoch bigint DEFAULT 0 NOT NULL,
    endpoints_version bigint DEFAULT 0 NOT NULL,
    endpoints jsonb DEFAULT '[]'::jsonb NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT service_runtime_endpoints_check CHECK ((jsonb_typeof(endpoints) = 'array'::text)),
    CONSTRAINT service_runtime_endpoints_version_check CHECK ((endpoints_version >= 0)),
    CONSTRAINT service_runtime_epoch_check CHECK ((epoch >= 0)),
    CONSTRAINT service_runtime_name_check CHECK (((length(name) >= 1) AND (length(name) <= 63)))
);

-- ---- Column defaults -------------------------------------------------------
ALTER TABLE ONLY events ALTER COLUMN id SET DEFAULT nextval('events_id_seq'::regclass);

-- ---- Keys and unique constraints -------------------------------------------
ALTER TABLE ONLY agent_certs
    ADD CONSTRAINT agent_certs_pkey PRIMARY KEY (serial);
ALTER TABLE ONLY blobs
    ADD CONSTRAINT blobs_pkey PRIMARY KEY (digest);
ALTER TABLE ONLY cluster_settings
    ADD CONSTRAINT cluster_settings_pkey PRIMARY KEY (id);
ALTER TABLE ONLY events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY events_pruned
    ADD CONSTRAINT events_pruned_pkey PRIMARY KEY (id);
ALTER TABLE ONLY hosts
    ADD CONSTRAINT hosts_name_key UNIQUE (name);
ALTER TABLE ONLY hosts
    ADD CONSTRAINT hosts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (key);
ALTER TABLE ONLY images
    ADD CONSTRAINT images_name_tag_key UNIQUE (name, tag);
ALTER TABLE ONLY images
    ADD CONSTRAINT images_pkey PRIMARY KEY (id);
ALTER TABLE ONLY instances
    ADD CONSTRAINT instances_pkey PRIMARY KEY (id);
ALTER TABLE ONLY join_tokens
    ADD CONSTRAINT join_tokens_pkey PRIMARY KEY (id);
ALTER TABLE ONLY join_tokens
    ADD CONSTRAINT join_tokens_secret_sha256_key UNIQUE (secret_sha256);
ALTER TABLE ONLY leader_lease
    ADD CONSTRAINT leader_lease_pkey PRIMARY KEY (id);
ALTER TABLE ONLY quota_usage
    ADD CONSTRAINT quota_usage_pkey PRIMARY KEY (kind);
ALTER TABLE ONLY service_config
    ADD CONSTRAINT service_config_pkey PRIMARY KEY (service_id, version);
ALTER TABLE ONLY service_runtime
    ADD CONSTRAINT service_runtime_pkey PRIMARY KEY (name);
ALTER TABLE ONLY services
    ADD CONSTRAINT services_name_key UNIQUE (name);
ALTER TABLE ONLY services
    ADD CONSTRAINT services_pkey PRIMARY KEY (id);
ALTER TABLE ONLY tokens
    ADD CONSTRAINT tokens_name_key UNIQUE (name);
ALTER TABLE ONLY tokens
    ADD CONSTRAINT tokens_pkey PRIMARY KEY (id);
ALTER TABLE ONLY tokens
    ADD CONSTRAINT tokens_secret_sha256_key UNIQUE (secret_sha256);

-- ---- Indexes ---------------------------------------------------------------
CREATE INDEX agent_certs_host ON agent_certs USING btree (host_name);
CREATE INDEX agent_certs_revoked ON agent_certs USING btree (serial) WHERE (revoked_at IS NOT NULL);
CREATE INDEX events_object ON events USING btree (object, id);
CREATE INDEX events_type ON events USING btree (type, id);
CREATE INDEX hosts_state ON hosts USING btree (state, name);
CREATE INDEX idempotency_keys_created ON idempotency_keys USING btree (created_at);
CREATE INDEX instances_desired ON instances USING btree (desired_state, id);
CREATE INDEX instances_host ON instances USING btree (host_id, id);
CREATE UNIQUE INDEX instances_live_name ON instances USING btree (name) WHERE (desired_state <> 'deleted'::text);
CREATE INDEX instances_service ON instances USING btree (service_id, id);
CREATE UNIQUE INDEX instances_service_ordinal ON instances USING btree (service_id, ordinal) WHERE (desired_state <> 'deleted'::text);
CREATE INDEX instances_state ON instances USING btree (state, id);
CREATE INDEX services_links ON services USING gin (links);
CREATE INDEX services_state ON services USING btree (state, name);

-- ---- Triggers (their functions: migrations/functions/bound/) ---------------
CREATE TRIGGER blobs_quota AFTER INSERT OR DELETE OR UPDATE OF size ON blobs FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('blob_bytes');
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION cloud_events_notify();
CREATE TRIGGER images_quota AFTER INSERT OR DELETE ON images FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('images');
CREATE TRIGGER instances_endpoints_del AFTER DELETE ON instances FOR EACH ROW WHEN ((old.state = 'running'::text)) EXECUTE FUNCTION cloud_instances_endpoints_trigger();
CREATE TRIGGER instances_endpoints_upd AFTER UPDATE ON instances FOR EACH ROW WHEN ((((((old.state IS DISTINCT FROM new.state) OR (old.desired_state IS DISTINCT FROM new.desired_state)) OR (old.addresses IS DISTINCT FROM new.addresses)) OR (old.ready IS DISTINCT FROM new.ready)) OR (old.service_id IS DISTINCT FROM new.service_id))) EXECUTE FUNCTION cloud_instances_endpoints_trigger();
CREATE TRIGGER instances_inherit_labels BEFORE INSERT ON instances FOR EACH ROW WHEN ((new.service_id IS NOT NULL)) EXECUTE FUNCTION cloud_instance_inherit_labels();
CREATE TRIGGER instances_inherit_stop_grace BEFORE INSERT ON instances FOR EACH ROW WHEN ((new.service_id IS NOT NULL)) EXECUTE FUNCTION cloud_instance_inherit_stop_grace();
CREATE TRIGGER instances_labels_check BEFORE INSERT OR UPDATE OF labels ON instances FOR EACH ROW WHEN ((new.labels IS DISTINCT FROM '{}'::jsonb)) EXECUTE FUNCTION cloud_instances_labels_trigger();
CREATE TRIGGER instances_quota_del AFTER DELETE ON instances FOR EACH ROW WHEN (((old.service_id IS NULL) AND (old.desired_state <> 'deleted'::text))) EXECUTE FUNCTION cloud_quota_rows('instances');
CREATE TRIGGER instances_quota_ins AFTER INSERT ON instances REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION cloud_quota_instances_inserted();
CREATE TRIGGER instances_quota_upd AFTER UPDATE OF desired_state ON instances FOR EACH ROW WHEN (((new.service_id IS NULL) AND ((old.desired_state = 'deleted'::text) <> (new.desired_state = 'deleted'::text)))) EXECUTE FUNCTION cloud_quota_rows('instances');
CREATE TRIGGER instances_ready BEFORE UPDATE ON instances FOR EACH ROW WHEN ((new.ready AND (new.state <> 'running'::text))) EXECUTE FUNCTION cloud_instances_ready_trigger();
CREATE TRIGGER instances_restart BEFORE UPDATE ON instances FOR EACH ROW WHEN (new.restart_requested) EXECUTE FUNCTION cloud_instances_restart_trigger();
CREATE TRIGGER instances_stop_grace_reset BEFORE UPDATE ON instances FOR EACH ROW WHEN (((new.stop_signal IS NULL) AND (new.kill_grace_seconds IS NOT NULL))) EXECUTE FUNCTION cloud_instance_kill_grace_reset();
CREATE TRIGGER services_quota AFTER INSERT OR DELETE ON services FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('services');
CREATE TRIGGER tokens_quota_ins AFTER INSERT OR DELETE ON tokens FOR EACH ROW EXECUTE FUNCTION cloud_quota_rows('tokens');
CREATE TRIGGER tokens_quota_upd AFTER UPDATE OF revoked_at ON tokens FOR EACH ROW WHEN ((old.revoked_at IS DISTINCT FROM new.revoked_at)) EXECUTE FUNCTION cloud_quota_rows('tokens');

-- ---- Foreign keys ----------------------------------------------------------
ALTER TABLE ONLY agent_certs
    ADD CONSTRAINT agent_certs_token_id_fkey FOREIGN KEY (token_id) REFERENCES join_tokens(id) ON DELETE SET NULL;
ALTER TABLE ONLY images
    ADD CONSTRAINT images_disk_digest_fkey FOREIGN KEY (disk_digest) REFERENCES blobs(digest);
ALTER TABLE ONLY images
    ADD CONSTRAINT images_initrd_digest_fkey FOREIGN KEY (initrd_digest) REFERENCES blobs(digest);
ALTER TABLE ONLY images
    ADD CONSTRAINT images_kernel_digest_fkey FOREIGN KEY (kernel_digest) REFERENCES blobs(digest);
ALTER TABLE ONLY instances
    ADD CONSTRAINT instances_host_id_fkey FOREIGN KEY (host_id) REFERENCES hosts(id);
ALTER TABLE ONLY instances
    ADD CONSTRAINT instances_service_id_fkey FOREIGN KEY (service_id) REFERENCES services(id);
ALTER TABLE ONLY service_config
    ADD CONSTRAINT service_config_service_id_fkey FOREIGN KEY (service_id) REFERENCES services(id) ON DELETE CASCADE;

-- ---- Rows ------------------------------------------------------------------

INSERT INTO leader_lease (id, holder, epoch, expires_at) VALUES (1, NULL, 0, NULL);
INSERT INTO cluster_settings (id) VALUES (1);
INSERT INTO events_pruned (id) VALUES (1);
INSERT INTO quota_usage (kind, used) VALUES
    ('services', 0), ('instances', 0), ('images', 0), ('tokens', 0), ('blob_bytes', 0);
