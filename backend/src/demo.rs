//! Demo data that looks like a facility, loaded by `daas dev` into an empty database:
//! alice (PI of 20180101 on BL11), bob (another proposal only), sam (BL11 scientist),
//! admin; the three images; flavours small / medium / gpu; quotas per role. Each dataset
//! is a real Data Exchange HDF5 scan (`demo/`, built into the binary), written in its
//! experiment's storage folder below the data root, so that sessions mount them and the
//! reconstruction job reconstructs them: S0011's `tooth` was measured at the APS 2-BM
//! beamline (TomoPy's test data, BSD-3-Clause); the others are a simulated phantom with a
//! known centre of rotation (131.5 px).

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

/// The demo's scans (`demo/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// A tooth, APS 2-BM: 181 projections of 2 rows x 640 px; centre near 296.
    Tooth,
    /// algotom's simulated face phantom: 256 projections of 8 rows x 256 px; centre 131.5.
    Phantom,
}

impl Scan {
    /// The file's name in its dataset folder, and its bytes.
    fn file(self) -> (&'static str, &'static [u8]) {
        match self {
            Scan::Tooth => ("tooth.h5", include_bytes!("../../demo/tomography/tooth.h5")),
            Scan::Phantom => ("scan.h5", include_bytes!("../../demo/phantom/phantom.h5")),
        }
    }
}

/// (experiment, dataset name, metadata, scan); the files go in the experiment's storage folder.
fn datasets() -> Vec<(&'static str, &'static str, serde_json::Value, Scan)> {
    let phantom = |sample: &str| {
        json!({"sample": sample, "simulated": true, "projections": 256, "rows": 8, "columns": 256,
               "centre_px": 131.5, "format": "Data Exchange HDF5"})
    };
    vec![
        (
            "S0011",
            "tooth",
            json!({"sample": "tooth", "beamline": "APS 2-BM", "projections": 181, "rows": 2, "columns": 640,
                   "format": "Data Exchange HDF5", "licence": "BSD-3-Clause (TomoPy)"}),
            Scan::Tooth,
        ),
        ("S0011", "tomo_scan_0001", phantom("phantom (stands for coupon A)"), Scan::Phantom),
        ("S0011", "tomo_scan_0002", phantom("phantom (stands for coupon A under 250 N)"), Scan::Phantom),
        ("S0012", "flat_and_dark", phantom("phantom (stands for a calibration)"), Scan::Phantom),
        ("S0012", "tomo_scan_0010", phantom("phantom (stands for coupon B)"), Scan::Phantom),
        ("S0013", "tomo_scan_0020", phantom("phantom (stands for coupon B, 10k cycles)"), Scan::Phantom),
        ("S0014", "tomo_scan_0031", phantom("phantom (stands for coupon C)"), Scan::Phantom),
        ("S0201", "xrd_operando_01", phantom("phantom (stands for an NMC811 pouch cell)"), Scan::Phantom),
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

    for (experiment, name, metadata, scan) in datasets() {
        let (beamline, proposal): (String, String) = sqlx::query_as(
            "select e.beamline, p.identifier from experiments e join proposals p on p.id = e.proposal_id
             where e.code = $1",
        )
        .bind(experiment)
        .fetch_one(&mut *tx)
        .await?;
        let folder = storage.folder(&beamline, &proposal, experiment).map_err(anyhow::Error::msg)?;
        let location = folder.join(name).to_str().context("a UTF-8 path")?.to_owned();
        let size = write_dataset(&data_root.join(&location), scan)?;
        insert_dataset(&mut *tx, experiment, name, &location, size, metadata).await?;
    }

    for image in [
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
            RECON_DESCRIPTION,
            Some(recon_schema()),
            recon_command(),
        ),
        studio_image(),
    ] {
        insert_image(&mut *tx, image).await?;
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

/// Adds a demo image (unless one of its name is there).
const INSERT_IMAGE: &str =
    "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, default_gpus,
                         default_disk_gib, description, parameter_schema, local_command)
     values ($1, $2, $3, $4, $5, $6, $7, 10, $8, $9, $10) on conflict (name) do nothing";

/// `(name, kind, reference, protocol, CPU millicores, memory MiB, GPUs, description,
/// parameter schema, local command)`.
type DemoImage = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i32,
    i32,
    i32,
    &'static str,
    Option<serde_json::Value>,
    serde_json::Value,
);

async fn insert_image(db: impl sqlx::PgExecutor<'_>, image: DemoImage) -> sqlx::Result<()> {
    let (name, kind, reference, protocol, cpu, mem, gpus, description, schema, command) = image;
    sqlx::query(INSERT_IMAGE)
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
        .execute(db)
        .await?;
    Ok(())
}

/// The reconstruction studio (a web app: `tools/recon/studio.py`), which holds one scan in
/// memory and answers each centre, filter or ring-removal change with a new slice.
fn studio_image() -> DemoImage {
    let schema = serde_json::from_str(include_str!("../../tools/recon/studio_schema.json"))
        .expect("tools/recon/studio_schema.json is JSON");
    (
        "Reconstruction studio",
        "webapp",
        "registry.facility.example/daas/recon-studio:1.0",
        "http",
        2000,
        8192,
        0,
        "Tune a reconstruction interactively: the scan stays in memory, and each change of the centre of rotation, \
         filter or ring removal shows a new slice at once. Then launch the full reconstruction with what you chose.",
        Some(schema),
        studio_command(),
    )
}

/// The local runtime's reconstruction studio on its socket.
pub fn studio_command() -> serde_json::Value {
    json!({"argv": ["{venv}/bin/python", "{tools}/recon/studio.py", "--socket", "{socket}", "--base-url", "{base_url}",
                    "--parameters", "/session/parameters.json", "--data", "/data"]})
}

/// What the demo's reconstruction image says of itself.
const RECON_DESCRIPTION: &str = "Reconstructs a Data Exchange HDF5 scan with algotom: flat/dark correction, ring \
     removal, the centre of rotation (Vo's method, or a sweep of preview slices), FBP or DFI on the CPU; FBP and \
     SIRT on a GPU with the ASTRA Toolbox where the image has it.";

/// The reconstruction job's parameters (`tools/recon/schema.json`, which the program checks too).
fn recon_schema() -> serde_json::Value {
    serde_json::from_str(include_str!("../../tools/recon/schema.json")).expect("tools/recon/schema.json is JSON")
}

/// Brings a development database loaded by an older daas up to date (`daas dev` runs it at
/// each start): the demo images get their local runtime commands where they have none, the
/// demo reconstruction image this daas's parameters and description, and the demo datasets
/// their real scans (the fake files of old are removed; S0011 gains `tooth`).
pub async fn refresh(db: &PgPool, data_root: &Path) -> anyhow::Result<()> {
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
    sqlx::query(
        "update images set parameter_schema = $1, description = $2
         where name = 'Tomography reconstruction' and reference = 'registry.facility.example/daas/tomo-recon:1.0'
           and parameter_schema is distinct from $1",
    )
    .bind(recon_schema())
    .bind(RECON_DESCRIPTION)
    .execute(db)
    .await?;
    // The studio joins a demo catalogue made before it existed.
    let demo_catalogue: bool = sqlx::query_scalar(
        "select exists (select 1 from images where reference = 'registry.facility.example/daas/tomo-recon:1.0')",
    )
    .fetch_one(db)
    .await?;
    if demo_catalogue {
        insert_image(db, studio_image()).await?;
    }
    // Only in a database that has the demo's proposals (not a facility's own).
    let has_sam: bool =
        sqlx::query_scalar("select exists (select 1 from users where username = 'sam')").fetch_one(db).await?;
    for (experiment, name, metadata, scan) in datasets() {
        let folder: Option<String> = sqlx::query_scalar(
            "select d.location from datasets d join experiments e on e.id = d.experiment_id where e.code = $1 and d.name = $2",
        )
        .bind(experiment)
        .bind(name)
        .fetch_optional(db)
        .await?;
        match folder {
            Some(location) => {
                let dir = data_root.join(&location);
                for old in ["projections.h5", "flats.h5", "darks.h5"] {
                    let _ = std::fs::remove_file(dir.join(old));
                }
                let size = write_dataset(&dir, scan)?;
                sqlx::query("update datasets set size_bytes = $2, metadata = $3 where location = $1")
                    .bind(&location)
                    .bind(size)
                    .bind(metadata)
                    .execute(db)
                    .await?;
            }
            None if scan == Scan::Tooth && has_sam => {
                let sibling: Option<String> = sqlx::query_scalar(
                    "select d.location from datasets d join experiments e on e.id = d.experiment_id
                     where e.code = $1 order by d.name limit 1",
                )
                .bind(experiment)
                .fetch_optional(db)
                .await?;
                let Some(sibling) = sibling else { continue };
                let location = Path::new(&sibling).with_file_name(name).to_str().context("a UTF-8 path")?.to_owned();
                let size = write_dataset(&data_root.join(&location), scan)?;
                insert_dataset(db, experiment, name, &location, size, metadata).await?;
            }
            None => {}
        }
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

/// Records a demo dataset of `experiment`, linked by sam (BL11's scientist).
async fn insert_dataset(
    db: impl sqlx::PgExecutor<'_>,
    experiment: &str,
    name: &str,
    location: &str,
    size: i64,
    metadata: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into datasets (experiment_id, name, location, size_bytes, metadata, created_by)
         select e.id, $2, $3, $4, $5, (select id from users where username = 'sam')
         from experiments e where e.code = $1",
    )
    .bind(experiment)
    .bind(name)
    .bind(location)
    .bind(size)
    .bind(metadata)
    .execute(db)
    .await?;
    Ok(())
}

/// Writes a dataset folder holding `scan` (kept if it is there) and returns its size in bytes.
fn write_dataset(dir: &Path, scan: Scan) -> anyhow::Result<i64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (file, bytes) = scan.file();
    let path = dir.join(file);
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(bytes.len() as u64) {
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(bytes.len() as i64)
}
