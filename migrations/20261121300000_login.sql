-- Logging in: pending OpenID Connect logins and failed-login accounting.

-- An authorization-code login in flight: created when daas redirects to the provider,
-- consumed (deleted) by the callback, so a state value works once.
create table oidc_logins (
    state         text primary key check (length(state) >= 32),
    nonce         text not null check (length(nonce) >= 32),
    pkce_verifier text not null check (length(pkce_verifier) >= 43),
    -- Where to go after logging in: a local path only.
    return_to     text not null default '/' check (return_to like '/%' and return_to not like '//%'),
    created_at    timestamptz not null default now()
);

-- Every local-password login attempt, for rate limiting per account and per address.
create table login_attempts (
    id          bigserial primary key,
    username    text not null,
    remote_addr text not null,
    succeeded   boolean not null,
    at          timestamptz not null default now()
);
create index login_attempts_username on login_attempts (username, at) where not succeeded;
create index login_attempts_addr on login_attempts (remote_addr, at) where not succeeded;
