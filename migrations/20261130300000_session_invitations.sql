-- Being added to someone's session needs the invitee's acceptance: a member the owner (or
-- an admin) adds is invited (`accepted_at` null) and, until they accept, the session does
-- not exist for them beyond the invitation (no desktop, notebook, ticket or control). A
-- row inserted without it is accepted: the owner's from the launch, and members added
-- before this rule keep their place.
alter table session_members add column accepted_at timestamptz;
update session_members set accepted_at = added_at;
alter table session_members alter column accepted_at set default now();
alter table session_members
    add constraint session_members_owner_accepted check (role <> 'owner' or accepted_at is not null);
-- An invitee's list of invitations.
create index session_members_invited on session_members (user_id) where accepted_at is null;
