-- Working together in a session (issue 17).

-- Remote access, for the owner's "who watched" and the facility's statistics: one row per
-- connection of a person to a session's desktop (one relay WebSocket) or notebook (from
-- the first of the lab's WebSockets to the last closing). A row without `disconnected_at`
-- is a connection open now; daas closes those it finds at start (their relays ended with
-- the process that held them).
create table remote_access (
    id              bigserial primary key,
    session_id      uuid not null references sessions on delete cascade,
    user_id         uuid not null references users on delete cascade,
    -- The role they connected with; `admin` for an admin who is not a member.
    role            text not null check (role in ('owner', 'user', 'guest', 'support', 'admin')),
    kind            text not null check (kind in ('desktop', 'notebook')),
    -- The browser's address as daas saw it.
    remote_addr     text,
    connected_at    timestamptz not null default now(),
    disconnected_at timestamptz,
    -- From the browser to the session, and back (WebSocket payloads).
    bytes_in        bigint not null default 0 check (bytes_in >= 0),
    bytes_out       bigint not null default 0 check (bytes_out >= 0),
    check (disconnected_at is null or disconnected_at >= connected_at)
);
create index remote_access_session on remote_access (session_id, connected_at);
create index remote_access_open on remote_access (session_id) where disconnected_at is null;
create index remote_access_connected_at on remote_access (connected_at);

-- A member who may control the desktop asks for it; whoever controls it (or the owner)
-- answers. One request at a time: a newer one replaces it.
alter table sessions
    add column control_requested_by uuid references users,
    add column control_requested_at timestamptz,
    add constraint sessions_control_request check ((control_requested_by is null) = (control_requested_at is null));
