-- The fake runtime (nothing runs: tests and benchmarks of daas's control plane) records
-- its sessions like any other.
alter table sessions drop constraint sessions_runtime_check;
alter table sessions add constraint sessions_runtime_check check (runtime in ('local', 'kubernetes', 'fake'));
