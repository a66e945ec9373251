-- Entering a notebook on its own origin: the portal issues a one-time ticket (kept only
-- as a SHA-256 hash, valid for seconds), which the session's origin exchanges for a
-- cookie valid on that origin alone. Both die with the session or the user.
create table session_tickets (
    token_hash bytea primary key,
    session_id uuid not null references sessions on delete cascade,
    user_id    uuid not null references users on delete cascade,
    expires_at timestamptz not null
);
create index session_tickets_expires on session_tickets (expires_at);

create table session_cookies (
    token_hash bytea primary key,
    session_id uuid not null references sessions on delete cascade,
    user_id    uuid not null references users on delete cascade,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null
);
create index session_cookies_session on session_cookies (session_id);
