-- System notices: a banner an admin posts (maintenance, an outage) that every logged-in
-- user sees until it expires.
create table notices (
    id         uuid primary key default gen_random_uuid(),
    message    text not null check (length(message) between 1 and 2000),
    level      text not null default 'info' check (level in ('info', 'warning', 'outage')),
    starts_at  timestamptz not null default now(),
    expires_at timestamptz not null,
    created_by uuid references users on delete set null,
    created_at timestamptz not null default now(),
    check (expires_at > starts_at)
);
create index notices_expires on notices (expires_at);
