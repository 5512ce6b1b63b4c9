-- The DDL inhouse.db.create_all ran on postgresql at commit 7a7d38b (captured from the
-- engine), the last schema made without migrations. Do not edit.
CREATE TABLE access_principals (
	name VARCHAR(128) NOT NULL,
	kind VARCHAR(16) NOT NULL,
	disabled BOOLEAN NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE audit_log (
	id SERIAL NOT NULL,
	ts TIMESTAMP WITH TIME ZONE NOT NULL,
	principal VARCHAR(128) NOT NULL,
	action VARCHAR(64) NOT NULL,
	resource VARCHAR(128) NOT NULL,
	outcome VARCHAR(8) NOT NULL,
	request_id VARCHAR(128),
	detail TEXT,
	prev_hash VARCHAR(64) NOT NULL,
	hash VARCHAR(64) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (prev_hash),
	UNIQUE (hash)
);

CREATE INDEX ix_audit_log_ts ON audit_log (ts);

CREATE TABLE audit_chain_head (
	id INTEGER NOT NULL,
	seq INTEGER NOT NULL,
	hash VARCHAR(64) NOT NULL,
	PRIMARY KEY (id)
);

INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE canary_traffic (
	id BIGSERIAL NOT NULL,
	model VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	at FLOAT NOT NULL,
	requests INTEGER NOT NULL,
	errors INTEGER NOT NULL,
	latency_ms_sum FLOAT NOT NULL,
	buckets JSON NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_canary_traffic_model ON canary_traffic (model);

CREATE INDEX ix_canary_traffic_at ON canary_traffic (at);

CREATE TABLE coordinator_canary (
	model VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	champion_version INTEGER NOT NULL,
	share FLOAT NOT NULL,
	started_at FLOAT NOT NULL,
	ends_at FLOAT NOT NULL,
	PRIMARY KEY (model)
);

CREATE TABLE model_versions (
	model VARCHAR(64) NOT NULL,
	version INTEGER NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	path VARCHAR(512) NOT NULL,
	format VARCHAR(32) NOT NULL,
	encrypted BOOLEAN NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	size_bytes INTEGER NOT NULL,
	spec JSON NOT NULL,
	metrics JSON NOT NULL,
	lineage JSON NOT NULL,
	PRIMARY KEY (model, version)
);

CREATE TABLE coordinator_state (
	model VARCHAR(64) NOT NULL,
	dataset VARCHAR(48) NOT NULL,
	settings JSON NOT NULL,
	status VARCHAR(16) NOT NULL,
	watermark BIGINT NOT NULL,
	last_run_at FLOAT NOT NULL,
	champion_version INTEGER,
	candidate_version INTEGER,
	job JSON,
	failures INTEGER NOT NULL,
	next_attempt_at FLOAT NOT NULL,
	manual_seen_id BIGINT NOT NULL,
	revision INTEGER NOT NULL,
	updated_at FLOAT NOT NULL,
	PRIMARY KEY (model)
);

CREATE TABLE coordinator_events (
	id BIGSERIAL NOT NULL,
	model VARCHAR(64) NOT NULL,
	at FLOAT NOT NULL,
	kind VARCHAR(32) NOT NULL,
	detail JSON NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_coordinator_events_model ON coordinator_events (model);

CREATE INDEX ix_coordinator_events_kind ON coordinator_events (kind);

CREATE TABLE datasets (
	name VARCHAR(48) NOT NULL,
	kind VARCHAR(16) NOT NULL,
	n_features INTEGER NOT NULL,
	feature_names JSON NOT NULL,
	class_names JSON NOT NULL,
	description TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE privacy_budgets (
	dataset VARCHAR(48) NOT NULL,
	epsilon FLOAT,
	delta FLOAT,
	accountant VARCHAR(16) NOT NULL,
	set_by VARCHAR(128),
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
	non_dp_allowed BOOLEAN NOT NULL,
	non_dp_reason TEXT,
	non_dp_by VARCHAR(128),
	non_dp_at TIMESTAMP WITH TIME ZONE,
	seq INTEGER NOT NULL,
	PRIMARY KEY (dataset)
);

CREATE TABLE privacy_charges (
	id SERIAL NOT NULL,
	dataset VARCHAR(48) NOT NULL,
	first_id BIGINT NOT NULL,
	up_to_id BIGINT NOT NULL,
	noise_multiplier FLOAT NOT NULL,
	sample_rate FLOAT NOT NULL,
	planned_steps INTEGER NOT NULL,
	steps INTEGER NOT NULL,
	clipping FLOAT NOT NULL,
	accountant VARCHAR(16) NOT NULL,
	delta FLOAT NOT NULL,
	epsilon FLOAT NOT NULL,
	model VARCHAR(64) NOT NULL,
	run VARCHAR(256) NOT NULL,
	version INTEGER,
	status VARCHAR(16) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	settled_at TIMESTAMP WITH TIME ZONE,
	refunded_by VARCHAR(128),
	refund_reason TEXT,
	PRIMARY KEY (id)
);

CREATE INDEX ix_privacy_charges_dataset ON privacy_charges (dataset);

CREATE INDEX ix_privacy_charges_status ON privacy_charges (status);

CREATE TABLE privacy_non_dp_runs (
	id SERIAL NOT NULL,
	dataset VARCHAR(48) NOT NULL,
	model VARCHAR(64) NOT NULL,
	run VARCHAR(256) NOT NULL,
	allowed_by VARCHAR(128),
	reason TEXT,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_privacy_non_dp_runs_dataset ON privacy_non_dp_runs (dataset);

CREATE TABLE access_role_bindings (
	id SERIAL NOT NULL,
	principal VARCHAR(128) NOT NULL,
	role VARCHAR(32) NOT NULL,
	resource VARCHAR(128) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (principal, role, resource),
	FOREIGN KEY(principal) REFERENCES access_principals (name)
);

CREATE INDEX ix_access_role_bindings_principal ON access_role_bindings (principal);

CREATE TABLE access_grants (
	id SERIAL NOT NULL,
	principal VARCHAR(128) NOT NULL,
	action VARCHAR(64) NOT NULL,
	resource VARCHAR(128) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (principal, action, resource),
	FOREIGN KEY(principal) REFERENCES access_principals (name)
);

CREATE INDEX ix_access_grants_principal ON access_grants (principal);

CREATE TABLE access_tokens (
	token_id VARCHAR(32) NOT NULL,
	principal VARCHAR(128) NOT NULL,
	secret_hash VARCHAR(128) NOT NULL,
	hash_scheme VARCHAR(32) NOT NULL,
	description VARCHAR(256) NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
	revoked_at TIMESTAMP WITH TIME ZONE,
	last_used_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (token_id),
	FOREIGN KEY(principal) REFERENCES access_principals (name)
);

CREATE INDEX ix_access_tokens_principal ON access_tokens (principal);

CREATE TABLE model_aliases (
	model VARCHAR(64) NOT NULL,
	alias VARCHAR(32) NOT NULL,
	version INTEGER NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
	PRIMARY KEY (model, alias),
	FOREIGN KEY(model, version) REFERENCES model_versions (model, version)
);
