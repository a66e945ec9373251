-- Where a flavour's sessions run on a Slurm cluster, as an admin sets it: partition,
-- account, QOS (Slurm names) and a constraint on node features in Slurm's syntax
-- (`v100&ib`, `[rack1|rack2]`, `gpu*2`). Null: the cluster's default. They reach `sbatch`
-- as arguments, so each is held to characters no shell or option parser reads specially.
alter table flavours
    add column slurm_partition  text check (slurm_partition ~ '^[A-Za-z0-9_.-]{1,100}$'),
    add column slurm_account    text check (slurm_account ~ '^[A-Za-z0-9_.-]{1,100}$'),
    add column slurm_qos        text check (slurm_qos ~ '^[A-Za-z0-9_.-]{1,100}$'),
    add column slurm_constraint text check (slurm_constraint ~ '^[][A-Za-z0-9_.&|:*()-]{1,100}$');
