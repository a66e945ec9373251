-- A facility's worth of rows, for the load run at facility scale (issue: "The database at
-- facility scale"): `select * from daas_bench_fill(10000, 100000, 1000000, 100000)` fills a
-- migrated database that is empty or holds only the demo data (`daas::demo`) with
--
--   users          n_users people (97 % users, 2 % scientists with 1 or 2 beamlines,
--                  a few admins), names drawn from lists, created over 3.5 years;
--   proposals      n_proposals on 12 beamlines, created over 3 years, each with 2 to 8
--                  members (one PI; research groups overlap, some people are in many) and
--                  1 to 3 experiments (beamtimes) with 0 to 3 datasets each; favourites;
--   sessions       n_sessions owned by a member of their experiment's proposal, after the
--                  beamtime, over 3 years: ~94.5 % stopped (2 % of them cancelled before
--                  they started), ~5 % failed, ~0.05 % running; an owner row in
--                  session_members (10 % with a second member), their events (requested,
--                  queued, running, stopped / failed), a jobs row for each job, remote
--                  access rows for a fifth of the desktops, notebooks and web apps;
--   audit_events   n_audit_events actions (logins, launches, stops, extensions, members,
--                  tokens, datasets, admin changes) over 3 years, in time order;
--   quotas         per-user overrides for 1 % of the users, per-proposal limits for 1 %.
--
-- Where the demo's alice exists she becomes a member of 18 more proposals (20 in all) and
-- owns 300 more sessions in them (one running, two ended in the last day), so that her
-- My sessions and proposals look like a busy user's. Images and flavours are the ones
-- the database has (the demo's); an empty database gets a minimal catalogue. Sessions
-- record the `kubernetes` runtime, so the reconciler of a daas on the `fake` or `local`
-- runtime leaves the running ones alone.
--
-- Every constraint holds (foreign keys, checks, unique keys); random() is seeded, so two
-- fills of the same sizes have the same shape (not the same uuids). Rows go in in time
-- order (sessions, events and audit events as they happened). For speed, indexes that no
-- constraint holds are dropped during the load and built again after it, and a superuser
-- skips the per-row foreign key triggers and checks every foreign key set-wise at the
-- end. Ends with ANALYZE of the tables it filled; run VACUUM (ANALYZE) afterwards, outside
-- the fill's transaction, for the visibility map (index-only scans) and hint bits. Returns
-- the number of rows per table; NOTICEs give the time of each step.
--
-- psql -f tools/bench/facility.sql, then: select * from daas_bench_fill(10000, 100000, 1000000, 100000);
-- (about 3 minutes and 1.7 GB on a 2-core machine).

create or replace function daas_bench_fill(
    n_users int default 10000,
    n_proposals int default 100000,
    n_sessions int default 1000000,
    n_audit_events int default 100000
) returns table (table_name text, row_count bigint)
language plpgsql as $fill$
declare
    beamlines constant text[] := array['BL01', 'BL02', 'BL03', 'BL04', 'BL05', 'BL06',
                                       'BL07', 'BL08', 'BL09', 'BL10', 'BL11', 'BL12'];
    firsts constant text[] := array['Anna', 'Ben', 'Chiara', 'David', 'Elena', 'Felix', 'Grace', 'Hiro',
        'Ines', 'Jonas', 'Kasia', 'Luca', 'Maria', 'Noah', 'Olga', 'Pierre', 'Qiang', 'Rosa', 'Sven',
        'Tomas', 'Ute', 'Viktor', 'Wen', 'Xavier', 'Yara', 'Zoltan', 'Amir', 'Bea', 'Carlos', 'Dina',
        'Emil', 'Fatima', 'Gustav', 'Hanna', 'Ivan', 'Julia', 'Kenji', 'Lena', 'Marco', 'Nadia'];
    lasts constant text[] := array['Schmidt', 'Rossi', 'Garcia', 'Nowak', 'Jensen', 'Dubois', 'Kowalski',
        'Tanaka', 'Silva', 'Muller', 'Novak', 'Petrov', 'Larsen', 'Bianchi', 'Moreau', 'Fischer', 'Wang',
        'Lopez', 'Berg', 'Costa', 'Horvath', 'Ivanova', 'Keller', 'Lindgren', 'Martin', 'Nielsen', 'Ortiz',
        'Popescu', 'Quinn', 'Richter', 'Santos', 'Takahashi', 'Urban', 'Vogel', 'Weber', 'Yilmaz', 'Zhang',
        'Andersson', 'Brown', 'Chen', 'Dvorak', 'Eriksen', 'Ferrari', 'Gruber', 'Hoffmann', 'Ito',
        'Jovanovic', 'Kim', 'Lehmann', 'Meyer'];
    affiliations constant text[] := array['University of Example', 'Example Institute of Technology',
        'Example Medical School', 'Example Institute for Energy', 'National Lab of Example',
        'Example Light Source', 'University of Elsewhere', 'Polytechnic of Example'];
    techniques constant text[] := array['In-situ tomography', 'Phase contrast imaging', 'Operando XRD',
        'Micro-CT', 'Small-angle scattering', 'X-ray fluorescence mapping', 'Ptychography',
        'Diffraction tomography', 'XANES mapping', 'Laminography', 'Coherent diffraction imaging',
        'Time-resolved radiography', 'Nano-tomography', 'Powder diffraction', 'Dark-field imaging'];
    -- Drawn with a skew: the first are common, the last rare (searches that match many or few).
    materials constant text[] := array['bone', 'battery cathodes', 'concrete', 'titanium alloys',
        'soft tissue', 'polymer foams', 'catalyst pellets', 'sandstone', 'wood', 'fibre composites',
        'lithium anodes', 'steel welds', 'teeth', 'plant roots', 'fuel cells', 'ice cores',
        'meteorites', 'fossil insects', 'perovskite films', 'zeolites', 'cartilage', 'solder joints',
        'nickel superalloys', 'coral skeletons', 'graphene aerogels', 'ancient papyri', 'kidney stones',
        'snow crystals', 'spider silk', 'volcanic ash'];
    contexts constant text[] := array['under cyclic load', 'during fast charging', 'at high temperature',
        'during hydration', 'under compression', 'during drying', 'in operando conditions',
        'after ageing', 'during crack growth', 'at cryogenic temperature'];
    failures constant text[] := array[
        'could not start: the image could not be pulled',
        'could not start: no node has the resources (0/12 nodes available)',
        'the session''s processes exited (code 137: out of memory)',
        'could not start: timed out after 300 s waiting for the session to answer',
        'the node running the session was lost'];
    actions constant text[] := array[
        'user.login', 'user.login', 'user.login', 'user.login', 'user.login', 'user.login', 'user.login',
        'user.login', 'session.launch', 'session.launch', 'session.launch', 'session.launch',
        'session.launch', 'session.stop', 'session.stop', 'session.stop', 'job.submit', 'session.extend',
        'session.member.add', 'session.member.accept', 'token.create', 'token.revoke', 'dataset.link',
        'proposal.import', 'quota.set', 'user.set_role', 'image.update', 'flavour.update', 'notice.create'];
    t0 timestamptz := clock_timestamp();
    alice uuid;
    n_ex int;
    n_alice_ex int;
    n_alice_sessions int := 0;
    fk record;
    ix record;
    missing bigint;
begin
    if n_users < 10 or n_proposals < 20 or n_sessions < 0 or n_audit_events < 0 then
        raise exception 'daas_bench_fill: at least 10 users and 20 proposals';
    end if;
    if (select count(*) from proposals) > 10 or (select count(*) from sessions) > 0 then
        raise exception 'daas_bench_fill: the database holds more than the demo data';
    end if;
    perform setseed(0.2026);
    -- Sorts and hashes of a million rows stay in memory.
    perform set_config('work_mem', '256MB', true);
    -- A superuser (the development cluster's) skips the per-row foreign key triggers: every
    -- reference is made from rows just inserted, and is checked set-wise at the end.
    if (select rolsuper from pg_roles where rolname = current_user) then
        perform set_config('session_replication_role', 'replica', true);
    end if;
    perform set_config('maintenance_work_mem', '512MB', true);
    select id into alice from users where username = 'alice';

    -- Indexes that no constraint holds are dropped for the load and built again at the end
    -- (a build is much faster than a million inserts into each); the unique ones among
    -- them check their rows then.
    create temp table bidx on commit drop as
    select i.indexrelid::regclass::text as name, pg_get_indexdef(i.indexrelid) as def
    from pg_index i join pg_class t on t.oid = i.indrelid
    where t.relnamespace = 'public'::regnamespace
      and t.relname in ('users', 'beamline_staff', 'proposals', 'proposal_members', 'experiments', 'datasets',
                        'favourites', 'sessions', 'session_members', 'session_events', 'jobs', 'remote_access',
                        'audit_events')
      and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid);
    for ix in select name from bidx loop
        execute format('drop index %s', ix.name);
    end loop;

    -- A catalogue, where the database has none (the demo brings its own).
    if not exists (select 1 from images) then
        insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, default_gpus,
                            parameter_schema)
        values ('Xfce desktop', 'desktop', 'registry.facility.example/daas/desktop-xfce:1.0', 'vnc', 2000, 4096, 0, null),
               ('JupyterLab', 'notebook', 'registry.facility.example/daas/jupyterlab:4', 'http', 2000, 4096, 0, null),
               ('Tomography reconstruction', 'job', 'registry.facility.example/daas/tomo-recon:1.0', 'none', 8000,
                32768, 1, '{}');
    end if;
    if not exists (select 1 from flavours) then
        insert into flavours (name, cpu_millis, memory_mib, gpus, gpu_type, disk_gib)
        values ('small', 2000, 4096, 0, null, 20), ('medium', 4000, 16384, 0, null, 20),
               ('gpu', 8000, 32768, 1, 'nvidia-a100', 20);
    end if;
    if not exists (select 1 from quotas where scope = 'role') then
        insert into quotas (scope, role, max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month)
        values ('role', 'user', 2, 8000, 32768, 1, 50), ('role', 'scientist', 4, 32000, 131072, 2, 200),
               ('role', 'admin', null, null, null, null, null);
    end if;

    -- Users: bu.n numbers them 0..n-1.
    create temp table bu on commit drop as
    select g - 1 as n, gen_random_uuid() as id,
           firsts[1 + (g * 7) % cardinality(firsts)] as first,
           lasts[1 + (g * 13 + g / 40) % cardinality(lasts)] as last,
           case when g % 50 = 0 then 'scientist' when g % 500 = 7 then 'admin' else 'user' end as role,
           now() - interval '3 years 6 months' * random() as created_at
    from generate_series(1, n_users) g;
    insert into users (id, username, display_name, email, affiliation, role, created_at, updated_at)
    select id, lower(first || '.' || last) || n, first || ' ' || last,
           lower(first || '.' || last) || n || '@' || (array['uni-example.edu', 'inst-example.de', 'lab-example.org'])[1 + n % 3],
           affiliations[1 + n % cardinality(affiliations)], role, created_at, created_at
    from bu;
    insert into beamline_staff (user_id, beamline)
    select id, beamlines[1 + (n / 50) % 12] from bu where role = 'scientist'
    union
    select id, beamlines[1 + (n / 50 + 5) % 12] from bu where role = 'scientist' and n % 100 = 49;

    -- Proposals: bp.n numbers them 1..n, oldest first; members come from a run of users
    -- (base, base + step, ...), a research group; bases are skewed to the first users.
    raise notice 'daas_bench_fill: % s users', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    create temp table bp on commit drop as
    select g as n, gen_random_uuid() as id,
           now() - interval '3 years' * (1 - (g - 0.5) / n_proposals) as created_at,
           beamlines[1 + floor(random() * 12)::int] as beamline,
           techniques[1 + floor(random() * cardinality(techniques))::int] as technique,
           materials[1 + floor(cardinality(materials) * power(random(), 2.5))::int] as material,
           contexts[1 + floor(random() * cardinality(contexts))::int] as context,
           2 + floor(random() * 7)::int as members,
           1 + floor(random() * 3)::int as experiments,
           floor(n_users * power(random(), 1.6))::int as base,
           1 + floor(random() * least(97, (n_users - 1) / 8))::int as step
    from generate_series(1, n_proposals) g;
    insert into proposals (id, identifier, title, abstract, beamline, created_at, updated_at)
    select id,
           case when n % 20 = 0 then 'I-' else '' end || to_char(created_at, 'YYYY') || lpad(n::text, 6, '0'),
           technique || ' of ' || material || ' ' || context,
           technique || ' of ' || material || ' ' || context || ', to follow how the microstructure evolves; '
               || 'beamtime on ' || beamline || '.',
           beamline, created_at, created_at
    from bp;
    insert into proposal_members (proposal_id, user_id, role)
    select p.id, u.id, case when k = 0 then 'pi' else 'member' end
    from bp p cross join lateral generate_series(0, p.members - 1) k
    join bu u on u.n = (p.base + k * p.step) % n_users;
    if alice is not null then
        insert into proposal_members (proposal_id, user_id, role)
        select id, alice, case when n % 3 = 0 then 'pi' else 'member' end
        from bp where n % (n_proposals / 18) = 0 order by n limit 18
        on conflict do nothing;
    end if;

    -- Experiments (beamtimes) after the proposal's start, and their datasets.
    raise notice 'daas_bench_fill: % s proposals and members', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    create temp table be on commit drop as
    select gen_random_uuid() as id, p.id as proposal_id, p.n as pn, k,
           'S' || (100000 + row_number() over ())::text as code,
           case when random() < 0.1 then beamlines[1 + floor(random() * 12)::int] else p.beamline end as beamline,
           date_trunc('hour', p.created_at + interval '30 days' + interval '120 days' * k
                              + interval '60 days' * random()) as starts_at,
           1 + floor(random() * 3)::int as days
    from bp p cross join lateral generate_series(0, p.experiments - 1) k;
    insert into experiments (id, proposal_id, code, beamline, starts_at, ends_at, created_at)
    select e.id, e.proposal_id, e.code, e.beamline, e.starts_at, e.starts_at + interval '1 day' * e.days,
           least(p.created_at, e.starts_at)
    from be e join bp p on p.id = e.proposal_id;
    insert into datasets (experiment_id, name, location, size_bytes, metadata, created_at)
    select e.id, 'scan_' || lpad(d::text, 4, '0'),
           e.beamline || '/' || pr.identifier || '/' || e.code || '/scan_' || lpad(d::text, 4, '0'),
           (random() * 2e11)::bigint,
           jsonb_build_object('sample', 'sample ' || d, 'energy_kev', 10 + (d * 7) % 40, 'projections', 1800),
           e.starts_at + interval '1 hour' * d
    from be e join proposals pr on pr.id = e.proposal_id
    cross join lateral generate_series(1, floor(random() * 4)::int) d;

    -- Favourites: a tenth of the memberships; alice stars three of hers.
    raise notice 'daas_bench_fill: % s experiments and datasets', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    insert into favourites (user_id, proposal_id, created_at)
    select m.user_id, m.proposal_id, p.created_at + interval '10 days'
    from proposal_members m join bp p on p.id = m.proposal_id
    where random() < 0.1;
    if alice is not null then
        insert into favourites (user_id, proposal_id)
        select alice, m.proposal_id from proposal_members m join proposals p on p.id = m.proposal_id
        where m.user_id = alice order by p.identifier limit 3
        on conflict do nothing;
    end if;

    -- Quotas: overrides for 1 % of the users and limits for 1 % of the proposals.
    insert into quotas (scope, user_id, max_sessions, max_gpus, max_gpu_hours_month)
    select 'user', id, 4, 2, 200 from bu where n % 100 = 3;
    insert into quotas (scope, proposal_id, max_sessions, max_gpus)
    select 'proposal', id, 6, 2 from bp where n % 100 = 5;

    -- What a session picks: weighted images (desktop 10, notebook 6, job 3, web app 1)
    -- and flavours (a GPU flavour 1, others 4), and the experiments whose beamtime began
    -- at least a day ago, with their proposal's members.
    raise notice 'daas_bench_fill: % s favourites and quotas', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    create temp table bimg on commit drop as
    select row_number() over () as rn, id, kind from (
        select i.id, i.kind from images i
        cross join lateral generate_series(1, case i.kind when 'desktop' then 10 when 'notebook' then 6
                                                          when 'job' then 3 else 1 end)
        where i.enabled order by i.name) x;
    create temp table bfl on commit drop as
    select row_number() over () as rn, id, cpu_millis, memory_mib, gpus, name from (
        select f.id, f.cpu_millis, f.memory_mib, f.gpus, f.name from flavours f
        cross join lateral generate_series(1, case when f.gpus > 0 then 1 else 4 end)
        where f.enabled order by f.name) x;
    create temp table bex on commit drop as
    select row_number() over () as rn, e.id, e.starts_at, e.ends_at,
           array_agg(m.user_id order by m.user_id) as members,
           bool_or(m.user_id = alice) as alices
    from experiments e join proposal_members m on m.proposal_id = e.proposal_id
    where e.starts_at < now() - interval '1 day'
    group by e.id, e.starts_at, e.ends_at;
    create unique index on bex (rn);
    n_ex := (select count(*) from bex);
    if n_ex = 0 then
        raise exception 'daas_bench_fill: no experiment began before yesterday';
    end if;

    -- Who launches on which experiment: a random member; alice's own 300 (where she is).
    create temp table bpick on commit drop as
    select x.id as experiment_id, x.starts_at, x.ends_at,
           x.members[1 + floor(random() * cardinality(x.members))::int] as owner_id, false as alices
    from (select 1 + floor(random() * n_ex)::int as r from generate_series(1, n_sessions)) g
    join bex x on x.rn = g.r;
    if alice is not null and n_sessions >= 1000 then
        create temp table balice on commit drop as
        select row_number() over (order by id) as rn, id, starts_at, ends_at from bex where alices;
        n_alice_ex := (select count(*) from balice);
        n_alice_sessions := 300;
        insert into bpick
        select x.id, x.starts_at, x.ends_at, alice, true
        from (select 1 + floor(random() * n_alice_ex)::int as r from generate_series(1, n_alice_sessions)) g
        join balice x on x.rn = g.r;
    end if;

    -- The sessions. Durations: jobs 2 min to 2 h, the rest 10 min to 10 h (most short);
    -- each begins after its beamtime began, skewed to just after it, and has ended by now.
    -- A 24 h lifetime (25 h for the 3 % that were extended) covers every run.
    raise notice 'daas_bench_fill: % s picks', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    create temp table bsn on commit drop as
    select gen_random_uuid() as id, p.experiment_id, p.owner_id, i.id as image_id, i.kind, f.id as flavour_id,
           f.cpu_millis, f.memory_mib, f.gpus, p.starts_at, p.alices,
           random() as r_state, random() as r_time, random() as r_hide, random() as r_share, random() as r_access,
           case when i.kind = 'job' then interval '2 minutes' + interval '118 minutes' * power(random(), 2)
                else interval '10 minutes' + interval '590 minutes' * power(random(), 2) end as dur,
           random() < 0.03 as extended
    from (select *, 1 + floor(random() * (select count(*) from bimg))::int as ri,
                 1 + floor(random() * (select count(*) from bfl))::int as rf from bpick) p
    join bimg i on i.rn = p.ri join bfl f on f.rn = p.rf;
    insert into sessions (id, owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib, gpus,
                          runtime, endpoint, secret, progress, failure_reason, created_at, started_at, stopped_at,
                          last_activity_at, expires_at, extended_minutes, start_began_at)
    select id, owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib, gpus,
           'kubernetes',
           case when state = 'running' then '10.42.' || (r_time * 250)::int || '.' || (r_state * 1e6)::int % 250 || ':5901' end,
           case when state = 'running' then md5(id::text) end,
           null, failure_reason, created_at, started_at, stopped_at,
           coalesce(stopped_at, now() - interval '2 minutes'),
           case when state = 'running' then now() + interval '20 hours'
                else created_at + interval '24 hours' + case when extended then interval '1 hour' else interval '0' end end,
           case when extended then 60 else 0 end,
           created_at + interval '2 seconds'
    from (
        select s.*, t.created_at,
               case when t.state = 'stopped' and r_state > 0.9995 - 0.0195 then null  -- cancelled before it started
                    when t.state = 'failed' and r_state < 0.01 then null               -- failed to start
                    else t.created_at + interval '20 seconds' + interval '100 seconds' * r_state end as started_at,
               case when t.state = 'running' then null
                    when t.state = 'failed' and r_state < 0.01 then t.created_at + interval '5 minutes'
                    when t.state = 'stopped' and r_state > 0.9995 - 0.0195 then t.created_at + interval '1 minute'
                    else t.created_at + interval '2 minutes' + dur end as stopped_at,
               t.state,
               case when t.state = 'failed' then failures[1 + floor(r_state * 100)::int % cardinality(failures)] end
                   as failure_reason
        from bsn s
        cross join lateral (
            select case when r_state < 0.05 then 'failed'
                        when r_state > 0.9995 or (s.alices and r_time < 1.0 / 300) then 'running'
                        else 'stopped' end as state) st
        cross join lateral (
            select st.state,
                   case when st.state = 'running' then now() - interval '8 hours' * r_time
                        when s.alices and r_time > 1 - 2.0 / 300
                             then now() - dur - interval '10 minutes' - interval '12 hours' * (1 - r_time) * 150
                        else least(greatest(s.starts_at, now() - interval '3 years')
                                   + (now() - greatest(s.starts_at, now() - interval '3 years')) * power(r_time, 3),
                                   now() - dur - interval '10 minutes') end as created_at) t
    ) x
    order by created_at;  -- as they were launched: the table's order is the time's

    -- Members: the owner (a fifth of the ended sessions hidden from their My sessions);
    -- a tenth get another member of the proposal as a user or guest.
    raise notice 'daas_bench_fill: % s sessions', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    insert into session_members (session_id, user_id, role, added_at, accepted_at, hidden_at)
    select s.id, s.owner_id, 'owner', s.created_at, s.created_at,
           case when s.state in ('stopped', 'failed') and b.r_hide < 0.2 and s.created_at < now() - interval '7 days'
                then s.stopped_at + interval '1 day' end
    from sessions s join bsn b on b.id = s.id
    order by s.created_at;
    insert into session_members (session_id, user_id, role, added_at, accepted_at)
    select s.id, x.members[1 + floor(random() * cardinality(x.members))::int],
           case when random() < 0.7 then 'user' else 'guest' end,
           s.created_at + interval '5 minutes', s.created_at + interval '6 minutes'
    from sessions s join bsn b on b.id = s.id join bex x on x.id = s.experiment_id
    where b.r_share < 0.1 and cardinality(x.members) > 1
    on conflict do nothing;

    -- Events, as a launch and its end write them.
    raise notice 'daas_bench_fill: % s session members', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    insert into session_events (session_id, at, state, message)
    select s.id, ev.at, ev.state, ev.message
    from sessions s join bsn b on b.id = s.id
    join images i on i.id = s.image_id join flavours f on f.id = s.flavour_id
    join experiments e on e.id = s.experiment_id join proposals p on p.id = e.proposal_id
    cross join lateral (values
        (1, s.created_at, 'requested',
         'Launch requested: ' || i.name || ' on ' || f.name || ' (' || (s.cpu_millis / 1000) || ' CPUs, '
             || (s.memory_mib / 1024) || ' GiB) for ' || p.identifier || '/' || e.code),
        (2, s.created_at + interval '1 second', 'starting', 'queued'),
        (3, s.started_at, 'running', 'Running'),
        (4, s.stopped_at, s.state, coalesce(s.failure_reason,
             case when s.started_at is null then 'Stopped before it started' else 'Stopped' end))
    ) ev(step, at, state, message)
    where ev.at is not null and (ev.step < 4 or s.state in ('stopped', 'failed'))
    order by ev.at, ev.step;

    raise notice 'daas_bench_fill: % s session events', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    insert into jobs (session_id, parameters, output_location, exit_code, log_location, cpu_seconds, max_memory_mib)
    select s.id, jsonb_build_object('dataset', 'scan_0001', 'algorithm', 'gridrec', 'centre', 1024 + (b.r_time * 40)::int),
           '~' || u.username || '/jobs/' || s.id,
           case when s.state = 'stopped' and s.started_at is not null then 0 when s.state = 'failed' then 137 end,
           '~' || u.username || '/jobs/' || s.id || '/log.txt',
           case when s.stopped_at is not null and s.started_at is not null
                then extract(epoch from s.stopped_at - s.started_at) * s.cpu_millis / 1000 * 0.7 end,
           case when s.started_at is not null then (s.memory_mib * 0.6)::int end
    from sessions s join bsn b on b.id = s.id join users u on u.id = s.owner_id
    where s.kind = 'job';

    insert into remote_access (session_id, user_id, role, kind, remote_addr, connected_at, disconnected_at,
                               bytes_in, bytes_out)
    select s.id, s.owner_id, 'owner', s.kind, '192.0.2.' || (b.r_state * 250)::int,
           s.started_at + interval '30 seconds',
           case when s.stopped_at is not null then s.stopped_at - interval '5 seconds' end,
           (b.r_time * 5e6)::bigint, (b.r_time * 5e8)::bigint
    from sessions s join bsn b on b.id = s.id
    where s.kind in ('desktop', 'notebook', 'webapp') and s.started_at is not null
      and b.r_access < 0.2
      and (s.stopped_at is null or s.stopped_at - interval '5 seconds' >= s.started_at + interval '30 seconds');

    -- Audit events, in time order: launches and stops of real sessions by their owners,
    -- the rest by random users.
    raise notice 'daas_bench_fill: % s jobs and remote access', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    insert into audit_events (at, actor_id, actor_name, action, object_type, object_id, details, remote_addr, request_id)
    select at, actor_id, actor_name, action, object_type, object_id, details, remote_addr, request_id
    from (
        select a.action,
               case when a.action in ('session.launch', 'job.submit', 'session.stop', 'session.extend',
                                      'session.member.add', 'session.member.accept')
                    then s.created_at + case when a.action = 'session.stop' then interval '1 hour' else interval '0' end
                    else now() - interval '3 years' * random() end as at,
               case when a.action like 'session.%' or a.action = 'job.submit' then s.owner_id else u.id end as actor_id,
               case when a.action like 'session.%' or a.action = 'job.submit' then so.username else u.username end
                   as actor_name,
               case when a.action like 'session.%' or a.action = 'job.submit' then 'session'
                    when a.action like 'user.%' then 'user'
                    else split_part(a.action, '.', 1) end as object_type,
               case when a.action like 'session.%' or a.action = 'job.submit' then s.id::text
                    when a.action like 'user.%' then u.username
                    else gen_random_uuid()::text end as object_id,
               case when a.action = 'session.extend' then '{"minutes": 60}'::jsonb else '{}'::jsonb end as details,
               '198.51.100.' || floor(random() * 250)::int as remote_addr,
               md5(random()::text) as request_id
        from (select g, actions[1 + floor(random() * cardinality(actions))::int] as action,
                     floor(random() * n_users)::int as un, 1 + floor(random() * greatest(n_sessions, 1))::int as sn
              from generate_series(1, n_audit_events) g) a
        join bu ub on ub.n = a.un join users u on u.id = ub.id
        left join (select row_number() over () as sn, ss.id, ss.owner_id, ss.created_at
                   from bsn b join sessions ss on ss.id = b.id) s on s.sn = a.sn
        left join users so on so.id = s.owner_id
    ) x
    where x.at is not null
    order by x.at;

    raise notice 'daas_bench_fill: % s audit events', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    for ix in select def from bidx loop
        execute ix.def;
    end loop;
    raise notice 'daas_bench_fill: % s indexes', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);

    -- The foreign keys the triggers did not check (a superuser's fill), checked set-wise.
    if current_setting('session_replication_role') = 'replica' then
        perform set_config('session_replication_role', 'origin', true);
        for fk in
            select c.conrelid::regclass as child, c.confrelid::regclass as parent, c.conname,
                   (select string_agg(format('c.%I = p.%I', a.attname, af.attname), ' and ')
                    from unnest(c.conkey, c.confkey) k(ck, pk)
                    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.ck
                    join pg_attribute af on af.attrelid = c.confrelid and af.attnum = k.pk) as cond,
                   (select string_agg(format('c.%I is not null', a.attname), ' and ')
                    from unnest(c.conkey) k(ck) join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.ck) as present
            from pg_constraint c
            where c.contype = 'f' and c.connamespace = 'public'::regnamespace
        loop
            execute format('select count(*) from %s c where %s and not exists (select 1 from %s p where %s)',
                           fk.child, fk.present, fk.parent, fk.cond) into missing;
            if missing > 0 then
                raise exception 'daas_bench_fill: % rows of % break %', missing, fk.child, fk.conname;
            end if;
        end loop;
    end if;
    raise notice 'daas_bench_fill: % s foreign keys', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);

    analyze users; analyze beamline_staff; analyze proposals; analyze proposal_members; analyze experiments;
    analyze datasets; analyze favourites; analyze quotas; analyze sessions; analyze session_members;
    analyze session_events; analyze jobs; analyze remote_access; analyze audit_events;

    raise notice 'daas_bench_fill: % s', round(extract(epoch from clock_timestamp() - t0)::numeric, 1);
    return query
    select t.name, t.rows from (
        select 1 as k, 'users' as name, (select count(*) from users) as rows union all
        select 2 as k, 'beamline_staff' as name, (select count(*) from beamline_staff) as rows union all
        select 3 as k, 'proposals' as name, (select count(*) from proposals) as rows union all
        select 4 as k, 'proposal_members' as name, (select count(*) from proposal_members) as rows union all
        select 5 as k, 'experiments' as name, (select count(*) from experiments) as rows union all
        select 6 as k, 'datasets' as name, (select count(*) from datasets) as rows union all
        select 7 as k, 'favourites' as name, (select count(*) from favourites) as rows union all
        select 8 as k, 'quotas' as name, (select count(*) from quotas) as rows union all
        select 9 as k, 'sessions' as name, (select count(*) from sessions) as rows union all
        select 10 as k, 'session_members' as name, (select count(*) from session_members) as rows union all
        select 11 as k, 'session_events' as name, (select count(*) from session_events) as rows union all
        select 12 as k, 'jobs' as name, (select count(*) from jobs) as rows union all
        select 13 as k, 'remote_access' as name, (select count(*) from remote_access) as rows union all
        select 14 as k, 'audit_events' as name, (select count(*) from audit_events) as rows
    ) t order by t.k;
end
$fill$;
