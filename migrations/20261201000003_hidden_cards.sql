-- A member may hide an ended session from their My sessions (it stays in the admin's
-- lists, the usage and the audit).
alter table session_members add column hidden_at timestamptz;
