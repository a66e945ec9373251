-- The whole data model of daas (DESIGN.md, "The model").
-- Constraints do real work: states, roles and kinds are checked here, so a bug in the
-- application cannot write a row that the rest of daas would misread.

create table users (
    id            uuid primary key default gen_random_uuid(),
    username      text not null unique
                  check (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    -- OpenID Connect subject; null for local accounts.
    subject       text unique check (subject <> ''),
    display_name  text not null check (display_name <> ''),
    email         text check (email is null or email ~ '^[^@\s]+@[^@\s]+$'),
    affiliation   text,
    role          text not null default 'user' check (role in ('user', 'scientist', 'admin')),
    enabled       boolean not null default true,
    -- argon2id PHC string; null where the account can only log in through OIDC.
    password_hash text check (password_hash is null or password_hash like '$argon2id$%'),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

-- Beamlines a scientist looks after: they see those beamlines' proposals.
create table beamline_staff (
    user_id  uuid not null references users on delete cascade,
    beamline text not null check (beamline ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$'),
    primary key (user_id, beamline)
);
create index beamline_staff_beamline on beamline_staff (beamline);

create table proposals (
    id          uuid primary key default gen_random_uuid(),
    -- The user office's identifier, e.g. 20180101 or I-20191502.
    identifier  text not null unique
                check (identifier ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$'),
    title       text not null check (length(title) between 1 and 1000),
    abstract    text not null default '',
    beamline    text not null check (beamline ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$'),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index proposals_beamline on proposals (beamline);

create table proposal_members (
    proposal_id uuid not null references proposals on delete cascade,
    user_id     uuid not null references users on delete cascade,
    role        text not null check (role in ('pi', 'member')),
    primary key (proposal_id, user_id)
);
create index proposal_members_user on proposal_members (user_id);

-- A beamtime of a proposal.
create table experiments (
    id          uuid primary key default gen_random_uuid(),
    proposal_id uuid not null references proposals on delete cascade,
    code        text not null check (code ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    beamline    text not null check (beamline ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$'),
    starts_at   timestamptz not null,
    ends_at     timestamptz not null,
    created_at  timestamptz not null default now(),
    check (ends_at >= starts_at),
    unique (proposal_id, code)
);

create table datasets (
    id            uuid primary key default gen_random_uuid(),
    experiment_id uuid not null references experiments on delete cascade,
    name          text not null check (name <> ''),
    -- A path relative to the configured data root, or a URI.
    location      text not null check (location <> '' and location not like '%..%'),
    size_bytes    bigint not null default 0 check (size_bytes >= 0),
    metadata      jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
    created_by    uuid references users on delete set null,
    created_at    timestamptz not null default now(),
    unique (experiment_id, location)
);
create index datasets_metadata on datasets using gin (metadata jsonb_path_ops);

-- The catalogue of what users can launch.
create table images (
    id                 uuid primary key default gen_random_uuid(),
    name               text not null unique check (length(name) between 1 and 100),
    kind               text not null check (kind in ('desktop', 'notebook', 'job')),
    -- OCI image reference, for the Kubernetes runtime.
    reference          text not null check (reference <> ''),
    protocol           text not null check (protocol in ('vnc', 'http', 'none')),
    default_cpu_millis integer not null check (default_cpu_millis > 0),
    default_memory_mib integer not null check (default_memory_mib > 0),
    default_gpus       integer not null default 0 check (default_gpus >= 0),
    default_disk_gib   integer not null default 0 check (default_disk_gib >= 0),
    enabled            boolean not null default true,
    description        text not null default '',
    icon               text,
    allowed_roles      text[] not null default '{user,scientist,admin}'
                       check (allowed_roles <@ array['user', 'scientist', 'admin']),
    -- JSON Schema of a job's parameters (job images only).
    parameter_schema   jsonb check (parameter_schema is null or jsonb_typeof(parameter_schema) = 'object'),
    -- What the local runtime runs for this image, e.g. {"argv": ["python3", "recon.py"]}.
    local_command      jsonb check (local_command is null or jsonb_typeof(local_command) = 'object'),
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    check ((kind = 'desktop' and protocol = 'vnc')
        or (kind = 'notebook' and protocol = 'http')
        or (kind = 'job' and protocol = 'none')),
    check (kind = 'job' or parameter_schema is null)
);

create table flavours (
    id            uuid primary key default gen_random_uuid(),
    name          text not null unique check (length(name) between 1 and 100),
    cpu_millis    integer not null check (cpu_millis > 0),
    memory_mib    integer not null check (memory_mib > 0),
    gpus          integer not null default 0 check (gpus >= 0),
    gpu_type      text,
    disk_gib      integer not null default 0 check (disk_gib >= 0),
    node_selector jsonb not null default '{}' check (jsonb_typeof(node_selector) = 'object'),
    tolerations   jsonb not null default '[]' check (jsonb_typeof(tolerations) = 'array'),
    allowed_roles text[] not null default '{user,scientist,admin}'
                  check (allowed_roles <@ array['user', 'scientist', 'admin']),
    enabled       boolean not null default true,
    created_at    timestamptz not null default now(),
    check (gpus > 0 or gpu_type is null)
);

-- Which flavours an image may run on; an image with no rows here may use any flavour.
create table image_flavours (
    image_id   uuid not null references images on delete cascade,
    flavour_id uuid not null references flavours on delete cascade,
    primary key (image_id, flavour_id)
);

-- Limits. A `role` row holds the defaults of a role (null: unlimited); a `user` row
-- overrides them field by field (null: inherit); a `proposal` row limits what all members
-- of a proposal use together (null: unlimited).
create table quotas (
    id                   uuid primary key default gen_random_uuid(),
    scope                text not null check (scope in ('role', 'user', 'proposal')),
    role                 text check (role in ('user', 'scientist', 'admin')),
    user_id              uuid references users on delete cascade,
    proposal_id          uuid references proposals on delete cascade,
    max_sessions         integer check (max_sessions >= 0),
    max_cpu_millis       integer check (max_cpu_millis >= 0),
    max_memory_mib       integer check (max_memory_mib >= 0),
    max_gpus             integer check (max_gpus >= 0),
    max_gpu_hours_month  integer check (max_gpu_hours_month >= 0),
    updated_at           timestamptz not null default now(),
    check ((scope = 'role' and role is not null and user_id is null and proposal_id is null)
        or (scope = 'user' and user_id is not null and role is null and proposal_id is null)
        or (scope = 'proposal' and proposal_id is not null and role is null and user_id is null))
);
create unique index quotas_role on quotas (role) where scope = 'role';
create unique index quotas_user on quotas (user_id) where scope = 'user';
create unique index quotas_proposal on quotas (proposal_id) where scope = 'proposal';

-- A running (or once running) desktop, notebook or job. VISA calls it "instance".
create table sessions (
    id               uuid primary key default gen_random_uuid(),
    owner_id         uuid not null references users,
    experiment_id    uuid not null references experiments,
    image_id         uuid not null references images,
    flavour_id       uuid not null references flavours,
    kind             text not null check (kind in ('desktop', 'notebook', 'job')),
    state            text not null default 'requested'
                     check (state in ('requested', 'starting', 'running', 'stopping', 'stopped', 'failed')),
    -- Resources granted at launch, the basis of quotas and usage.
    cpu_millis       integer not null check (cpu_millis > 0),
    memory_mib       integer not null check (memory_mib > 0),
    gpus             integer not null default 0 check (gpus >= 0),
    runtime          text not null check (runtime in ('local', 'kubernetes')),
    -- The runtime's resolved names and ids (pids, pod names), so a restart finds them.
    runtime_handle   jsonb,
    -- Where the proxy reaches the session, e.g. 127.0.0.1:5901.
    endpoint         text,
    -- VNC password or notebook token: daas must present it, so it cannot be hashed;
    -- it never leaves the server (not in the API, not in logs).
    secret           text,
    -- Who holds control of a shared desktop.
    controller_id    uuid references users,
    progress         text,
    failure_reason   text,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    stopped_at       timestamptz,
    last_activity_at timestamptz not null default now(),
    expires_at       timestamptz not null,
    check (state <> 'failed' or failure_reason is not null),
    check (state <> 'running' or started_at is not null),
    check (state not in ('stopped', 'failed') or stopped_at is not null),
    check (stopped_at is null or stopped_at >= created_at)
);
create index sessions_owner_active on sessions (owner_id)
    where state in ('requested', 'starting', 'running', 'stopping');
create index sessions_active on sessions (state)
    where state in ('requested', 'starting', 'running', 'stopping');
create index sessions_experiment on sessions (experiment_id);

create table session_members (
    session_id uuid not null references sessions on delete cascade,
    user_id    uuid not null references users on delete cascade,
    role       text not null check (role in ('owner', 'user', 'guest', 'support')),
    added_at   timestamptz not null default now(),
    primary key (session_id, user_id)
);
create unique index session_members_one_owner on session_members (session_id) where role = 'owner';
create index session_members_user on session_members (user_id);

-- State changes and progress messages of a session, in order: what the events stream
-- replays and what a user reads when a launch failed.
create table session_events (
    id         bigserial primary key,
    session_id uuid not null references sessions on delete cascade,
    at         timestamptz not null default now(),
    state      text not null
               check (state in ('requested', 'starting', 'running', 'stopping', 'stopped', 'failed')),
    message    text not null
);
create index session_events_session on session_events (session_id, id);

-- A batch run (e.g. a tomography reconstruction). A job is a session of kind `job`
-- (one lifecycle, one quota) plus what only jobs have.
create table jobs (
    session_id       uuid primary key references sessions on delete cascade,
    parameters       jsonb not null default '{}' check (jsonb_typeof(parameters) = 'object'),
    input_dataset_id uuid references datasets on delete set null,
    output_location  text,
    exit_code        integer,
    log_location     text,
    cpu_seconds      double precision check (cpu_seconds >= 0),
    max_memory_mib   integer check (max_memory_mib >= 0)
);

create table favourites (
    user_id     uuid not null references users on delete cascade,
    proposal_id uuid not null references proposals on delete cascade,
    created_at  timestamptz not null default now(),
    primary key (user_id, proposal_id)
);

-- Bearer tokens for scripts. Only the SHA-256 of the secret is kept.
create table api_tokens (
    id           uuid primary key default gen_random_uuid(),
    user_id      uuid not null references users on delete cascade,
    name         text not null check (length(name) between 1 and 100),
    token_hash   bytea not null unique check (length(token_hash) = 32),
    created_at   timestamptz not null default now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    check (expires_at is null or expires_at > created_at)
);
create index api_tokens_user on api_tokens (user_id);

-- Server-side browser sessions; the cookie carries a secret whose SHA-256 is kept here.
create table browser_sessions (
    id           uuid primary key default gen_random_uuid(),
    user_id      uuid not null references users on delete cascade,
    token_hash   bytea not null unique check (length(token_hash) = 32),
    csrf_token   text not null check (length(csrf_token) >= 32),
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at   timestamptz not null,
    remote_addr  text,
    user_agent   text,
    ended_at     timestamptz,
    check (expires_at > created_at)
);
create index browser_sessions_user on browser_sessions (user_id);

-- Who did what to which object, from where, when. Append-only: daas never edits it.
create table audit_events (
    id          bigserial primary key,
    at          timestamptz not null default now(),
    actor_id    uuid references users on delete set null,
    actor_name  text,
    action      text not null check (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    object_type text,
    object_id   text,
    details     jsonb not null default '{}' check (jsonb_typeof(details) = 'object'),
    remote_addr text,
    request_id  text
);
create index audit_events_at on audit_events (at);
create index audit_events_actor on audit_events (actor_id, at);
create index audit_events_object on audit_events (object_type, object_id);

create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only';
end $$;
create trigger audit_events_no_update before update or delete on audit_events
    for each row execute function audit_events_append_only();
