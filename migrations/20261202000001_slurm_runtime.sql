-- Sessions may run on the Slurm runtime (`--runtime slurm`).
alter table sessions drop constraint sessions_runtime_check;
alter table sessions add constraint sessions_runtime_check check (runtime in ('local', 'kubernetes', 'fake', 'slurm'));
