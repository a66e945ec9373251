//! Demo data that looks like a facility, loaded by `daas dev` into an empty database:
//! alice (PI of 20180101 on BL11), bob (another proposal only), sam (BL11 scientist),
//! admin; the three images; flavours small / medium / gpu; quotas per role. Dataset files
//! are written in each experiment's storage folder below the data root, so that sizes are
//! real and sessions can mount them.

use std::path::Path;

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use sqlx::PgPool;

use crate::auth::password;
use crate::datasets::storage::StorageTemplate;
use crate::proposals::import::{self, Format};

const PROPOSALS: &str = r#"{"proposals": [
  {"identifier": "20180101", "title": "test 1_D", "beamline": "BL11",
   "abstract": "In-situ tomography of crack growth in additively manufactured titanium.",
   "members": [{"username": "alice", "role": "pi", "name": "Alice Martin",
                "email": "alice.martin@uni-example.edu", "affiliation": "University of Example"},
               {"username": "carol", "role": "member", "name": "Carol Okafor",
                "email": "carol.okafor@uni-example.edu", "affiliation": "University of Example"}],
   "experiments": [{"code": "S0011", "start": "2018-03-12T08:00:00Z", "end": "2018-03-14T08:00:00Z"},
                   {"code": "S0012", "start": "2018-06-04T08:00:00Z", "end": "2018-06-05T20:00:00Z"},
                   {"code": "S0013", "start": "2018-10-22T08:00:00Z", "end": "2018-10-24T08:00:00Z"},
                   {"code": "S0014", "start": "2019-02-18T08:00:00Z", "end": "2019-02-19T08:00:00Z"}]},
  {"identifier": "20190315", "title": "Phase contrast imaging of hydrated soft tissue", "beamline": "BL02",
   "abstract": "Propagation-based phase contrast on fixed and hydrated samples.",
   "members": [{"username": "dave", "role": "pi", "name": "Dave Lindqvist",
                "email": "dave.lindqvist@med-example.org", "affiliation": "Example Medical School"},
               {"username": "alice", "role": "member"}],
   "experiments": [{"code": "S0101", "start": "2019-03-15T08:00:00Z", "end": "2019-03-16T08:00:00Z"}]},
  {"identifier": "I-20191502", "title": "Operando XRD of battery cathodes", "beamline": "BL04",
   "abstract": "Structural evolution of Ni-rich cathodes during fast charging.",
   "members": [{"username": "bob", "role": "pi", "name": "Bob Schneider",
                "email": "bob.schneider@inst-example.de", "affiliation": "Example Institute for Energy"}],
   "experiments": [{"code": "S0201", "start": "2019-11-04T08:00:00Z", "end": "2019-11-06T08:00:00Z"}]},
  {"identifier": "20200420", "title": "Fatigue of bone implants under cyclic load", "beamline": "BL11",
   "members": [{"username": "dave", "role": "pi"}],
   "experiments": [{"code": "S0301", "start": "2020-04-20T08:00:00Z", "end": "2020-04-22T08:00:00Z"}]}
]}"#;

/// (experiment, dataset name, metadata); the files go in the experiment's storage folder.
fn datasets() -> Vec<(&'static str, &'static str, serde_json::Value)> {
    vec![
        (
            "S0011",
            "tomo_scan_0001",
            json!({"sample": "Ti-6Al-4V coupon A", "energy_kev": 30.0, "detector": "PCO.edge 5.5", "projections": 1800}),
        ),
        (
            "S0011",
            "tomo_scan_0002",
            json!({"sample": "Ti-6Al-4V coupon A", "energy_kev": 30.0, "detector": "PCO.edge 5.5", "projections": 1800, "load_n": 250}),
        ),
        ("S0012", "flat_and_dark", json!({"kind": "calibration", "detector": "PCO.edge 5.5"})),
        ("S0012", "tomo_scan_0010", json!({"sample": "Ti-6Al-4V coupon B", "energy_kev": 35.0, "projections": 3600})),
        ("S0013", "tomo_scan_0020", json!({"sample": "coupon B, 10k cycles", "energy_kev": 35.0})),
        ("S0014", "tomo_scan_0031", json!({"sample": "coupon C", "energy_kev": 40.0, "binning": 2})),
        ("S0201", "xrd_operando_01", json!({"sample": "NMC811 pouch cell", "energy_kev": 60.0})),
    ]
}

/// The demo accounts and their passwords, freshly generated.
pub struct DemoLogins(pub Vec<(String, String)>);

/// Loads the demo data if the database has no users yet, with the default storage
/// template; returns the new logins.
pub async fn load_if_empty(db: &PgPool, data_root: &Path) -> anyhow::Result<Option<DemoLogins>> {
    load_into(db, data_root, &StorageTemplate::default()).await
}

/// Loads the demo data if the database has no users yet, its dataset files in the folders
/// `storage` gives each experiment; returns the new logins.
pub async fn load_into(db: &PgPool, data_root: &Path, storage: &StorageTemplate) -> anyhow::Result<Option<DemoLogins>> {
    let mut tx = db.begin().await?;
    // Serialise concurrent `daas dev` starts on the same database.
    sqlx::query("lock table users in exclusive mode").execute(&mut *tx).await?;
    let users: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&mut *tx).await?;
    if users > 0 {
        return Ok(None);
    }
    let proposals = import::parse(PROPOSALS, Format::Json).context("demo proposals")?;
    import::apply(&mut tx, &proposals).await?;

    let mut logins = Vec::new();
    for (username, name, email, affiliation, role) in [
        ("sam", "Sam Keller", "sam.keller@facility.example", "Example Light Source", "scientist"),
        ("admin", "Facility Admin", "daas-admin@facility.example", "Example Light Source", "admin"),
    ] {
        sqlx::query("insert into users (username, display_name, email, affiliation, role) values ($1, $2, $3, $4, $5)")
            .bind(username)
            .bind(name)
            .bind(email)
            .bind(affiliation)
            .bind(role)
            .execute(&mut *tx)
            .await?;
    }
    for username in ["alice", "bob", "carol", "dave", "sam", "admin"] {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 12);
        sqlx::query("update users set password_hash = $2 where username = $1")
            .bind(username)
            .bind(password::hash(&secret)?)
            .execute(&mut *tx)
            .await?;
        logins.push((username.to_string(), secret));
    }
    sqlx::query("insert into beamline_staff (user_id, beamline) select id, 'BL11' from users where username = 'sam'")
        .execute(&mut *tx)
        .await?;

    for (experiment, name, metadata) in datasets() {
        let (beamline, proposal): (String, String) = sqlx::query_as(
            "select e.beamline, p.identifier from experiments e join proposals p on p.id = e.proposal_id
             where e.code = $1",
        )
        .bind(experiment)
        .fetch_one(&mut *tx)
        .await?;
        let folder = storage.folder(&beamline, &proposal, experiment).map_err(anyhow::Error::msg)?;
        let location = folder.join(name).to_str().context("a UTF-8 path")?.to_owned();
        let size = write_dataset(&data_root.join(&location))?;
        sqlx::query(
            "insert into datasets (experiment_id, name, location, size_bytes, metadata, created_by)
             select e.id, $2, $3, $4, $5, (select id from users where username = 'sam')
             from experiments e where e.code = $1",
        )
        .bind(experiment)
        .bind(name)
        .bind(&location)
        .bind(size)
        .bind(metadata)
        .execute(&mut *tx)
        .await?;
    }

    let schema = json!({
        "type": "object",
        "required": ["dataset", "algorithm"],
        "properties": {
            "dataset": {"type": "string", "description": "Dataset to reconstruct"},
            "algorithm": {"type": "string", "enum": ["fbp", "gridrec", "sirt"], "default": "fbp"},
            "center": {"type": "number", "description": "Rotation centre in pixels; estimated when absent"},
            "iterations": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
        },
        // Iterations apply to the iterative algorithm only (the form hides them otherwise).
        "if": {"properties": {"algorithm": {"const": "sirt"}}},
        "then": {"properties": {"iterations": {"minimum": 1}}},
        "additionalProperties": false
    });
    for (name, kind, reference, protocol, cpu, mem, gpus, description, schema, command) in [
        (
            "Xfce desktop",
            "desktop",
            "registry.facility.example/daas/desktop-xfce:1.0",
            "vnc",
            2000,
            4096,
            0,
            "A Linux desktop (Xfce) with the facility's analysis tools, your data mounted read-only.",
            None,
            desktop_command(),
        ),
        (
            "JupyterLab",
            "notebook",
            "registry.facility.example/daas/jupyterlab:4",
            "http",
            2000,
            4096,
            0,
            "JupyterLab with NumPy, SciPy, h5py, scikit-image and matplotlib.",
            None,
            notebook_command(),
        ),
        (
            "Tomography reconstruction",
            "job",
            "registry.facility.example/daas/tomo-recon:1.0",
            "none",
            8000,
            32768,
            1,
            "GPU reconstruction of a tomography scan (filtered back-projection or iterative).",
            Some(schema.clone()),
            recon_command(),
        ),
    ] {
        sqlx::query(
            "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, default_gpus,
                                 default_disk_gib, description, parameter_schema, local_command)
             values ($1, $2, $3, $4, $5, $6, $7, 10, $8, $9, $10)",
        )
        .bind(name)
        .bind(kind)
        .bind(reference)
        .bind(protocol)
        .bind(cpu)
        .bind(mem)
        .bind(gpus)
        .bind(description)
        .bind(schema)
        .bind(command)
        .execute(&mut *tx)
        .await?;
    }
    for (name, cpu, mem, gpus, gpu_type, roles) in [
        ("small", 2000, 4096, 0, None, vec!["user", "scientist", "admin"]),
        ("medium", 4000, 16384, 0, None, vec!["user", "scientist", "admin"]),
        ("gpu", 8000, 32768, 1, Some("nvidia-a100"), vec!["user", "scientist", "admin"]),
    ] {
        sqlx::query(
            "insert into flavours (name, cpu_millis, memory_mib, gpus, gpu_type, disk_gib, allowed_roles, node_selector, tolerations)
             values ($1, $2, $3, $4, $5, 20, $6, $7, $8)",
        )
        .bind(name)
        .bind(cpu)
        .bind(mem)
        .bind(gpus)
        .bind(gpu_type)
        .bind(&roles)
        .bind(if gpus > 0 { json!({"nvidia.com/gpu.present": "true"}) } else { json!({}) })
        .bind(if gpus > 0 { json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]) } else { json!([]) })
        .execute(&mut *tx)
        .await?;
    }
    for (role, sessions, cpu, mem, gpus, gpu_hours) in [
        ("user", Some(2), Some(8000), Some(32768), Some(1), Some(50)),
        ("scientist", Some(4), Some(32000), Some(131072), Some(2), Some(200)),
        ("admin", None, None, None, None, None),
    ] {
        sqlx::query(
            "insert into quotas (scope, role, max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month)
             values ('role', $1, $2, $3, $4, $5, $6)",
        )
        .bind(role)
        .bind(sessions)
        .bind(cpu)
        .bind(mem)
        .bind(gpus)
        .bind(gpu_hours)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "insert into quotas (scope, proposal_id, max_sessions, max_gpus)
         select 'proposal', id, 6, 2 from proposals where identifier = '20180101'",
    )
    .execute(&mut *tx)
    .await?;
    crate::audit::record_cli(&mut *tx, "demo.load", "database", "demo", json!({})).await?;
    tx.commit().await?;
    Ok(Some(DemoLogins(logins)))
}

/// Gives the demo images their local runtime commands where they have none (a development
/// database loaded before the local runtime existed), so `daas dev` can launch them.
pub async fn fill_local_commands(db: &PgPool) -> anyhow::Result<()> {
    for (name, command) in [
        ("Xfce desktop", desktop_command()),
        ("JupyterLab", notebook_command()),
        ("Tomography reconstruction", recon_command()),
    ] {
        sqlx::query("update images set local_command = $2 where name = $1 and local_command is null")
            .bind(name)
            .bind(command)
            .execute(db)
            .await?;
    }
    Ok(())
}

/// The local runtime's desktop: TigerVNC's Xvnc on the session's socket (no TCP) with
/// daas's password and an X cookie of its own, then an Xfce desktop; the session lasts as
/// long as Xvnc. Xfce waits up to 60 s for the X server (a loaded machine is slow to start
/// it; started too early, its programs die and the desktop stays black). No blacklist:
/// every connection comes from daas's relay (the socket is reachable by nothing else), so
/// Xvnc's blacklist, which counts failures per address, would shut every viewer out after
/// a burst.
pub fn desktop_command() -> serde_json::Value {
    json!({"argv": ["sh", "-c", concat!(
        // Xvnc creates its socket folder only as root; in the sandbox daas creates it.
        "mkdir -p -m 1777 /tmp/.X11-unix; ",
        "export XAUTHORITY=/tmp/.Xauthority DISPLAY=:{display}; xauth -q add :{display} . \"$(mcookie)\"; ",
        "Xvnc :{display} -auth \"$XAUTHORITY\" -rfbunixpath {socket} -rfbport -1 -nolisten tcp ",
        "-UseBlacklist=0 -SecurityTypes VncAuth -PasswordFile /session/vncpasswd -geometry 1600x900 -depth 24 -desktop daas & xvnc=$!; ",
        "i=0; while [ ! -e /tmp/.X11-unix/X{display} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; ",
        // Xfce's parts one by one rather than `xfce4-session`, which would also start power,
        // screen-lock and session-saving daemons a sandboxed session has no use for, and draw
        // seconds later. They share a D-Bus session bus (xfconf, which keeps their settings in
        // the home, starts on it). The panel takes daas's layout (`tools/desktop`: a dock of
        // the analysis tools) at its first start rather than asking. The file manager opens
        // on the datasets; the terminal at the top left, small enough that the file manager
        // fits beside it: whichever of the two maps first, the terminal is on top where users
        // and tests click (300, 200). No double quotes or backslashes: a migration puts this
        // into JSON text as it is.
        "XDG_CONFIG_DIRS={tools}/desktop:/etc/xdg XFCE_PANEL_MIGRATE_DEFAULT=1 dbus-run-session -- sh -c ",
        "'xfwm4 & xfce4-panel & xfdesktop & thunar /data & xfce4-terminal --geometry 80x24+40+40 & wait' & ",
        "wait $xvnc")]})
}

/// The local runtime's notebook: JupyterLab from daas's venv, on the session's socket and
/// base URL, in the user's home; the token comes in `JUPYTER_TOKEN`.
pub fn notebook_command() -> serde_json::Value {
    json!({"argv": ["{venv}/bin/jupyter", "lab", "--no-browser", "--ServerApp.sock={socket}",
                    "--ServerApp.sock_mode=0600", "--ServerApp.base_url={base_url}", "--ServerApp.root_dir={home}",
                    "--ServerApp.allow_remote_access=true"]})
}

/// The local runtime's reconstruction job: `tools/recon/recon.py` on the parameters.
pub fn recon_command() -> serde_json::Value {
    json!({"argv": ["{venv}/bin/python", "{tools}/recon/recon.py", "--parameters", "/session/parameters.json",
                    "--data", "/data", "--output", "{output}"]})
}

/// Writes a small dataset folder (a few HDF5-named files with stand-in content) and
/// returns its size in bytes. Existing files are kept.
fn write_dataset(dir: &Path) -> anyhow::Result<i64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut size = 0;
    for (file, kib) in [("projections.h5", 192), ("flats.h5", 32), ("darks.h5", 16)] {
        let path = dir.join(file);
        if !path.exists() {
            let bytes: Vec<u8> = (0..kib * 1024).map(|i| (i * 31 % 251) as u8).collect();
            std::fs::write(&path, bytes)?;
        }
        size += std::fs::metadata(&path)?.len() as i64;
    }
    Ok(size)
}
