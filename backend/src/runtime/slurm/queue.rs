//! What Slurm says of daas's jobs: `squeue`'s lines parsed, and a job's state and reason
//! turned into what a user reads. No I/O here: the tests run in microseconds.

use uuid::Uuid;

/// The comment every daas job carries (`sbatch --comment`), followed by its session's id:
/// how daas finds its jobs again after a restart, and its orphans.
pub const COMMENT: &str = "daas.io/session-id=";

/// `squeue --format` for [`parse`]: job id, state, reason, nodes, time used, time limit,
/// comment (last: a comment may hold the separator).
pub const FORMAT: &str = "%A|%T|%r|%N|%M|%l|%k";

/// One of daas's jobs, as `squeue` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: u64,
    pub session: Uuid,
    /// `PENDING`, `RUNNING`, `COMPLETED`... (squeue's `%T`).
    pub state: String,
    /// Why it waits or ended (`Resources`, `Priority`, `QOSMaxCpuPerUserLimit`, `None`).
    pub reason: String,
    /// The node(s) it runs on; empty while pending.
    pub nodes: String,
    /// Time used and time limit, in Slurm's notation (`1-02:03:04`, `UNLIMITED`).
    pub elapsed: String,
    pub time_limit: String,
}

/// The jobs of `squeue --noheader --format=FORMAT` that carry daas's comment; other lines
/// (other users' jobs, anything malformed) are left out.
pub fn parse(text: &str) -> Vec<Job> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.trim().splitn(7, '|').collect();
            let [id, state, reason, nodes, elapsed, time_limit, comment] = fields[..] else { return None };
            Some(Job {
                id: id.parse().ok()?,
                session: comment.strip_prefix(COMMENT)?.trim().parse().ok()?,
                state: state.to_owned(),
                reason: reason.to_owned(),
                nodes: nodes.to_owned(),
                elapsed: elapsed.to_owned(),
                time_limit: time_limit.to_owned(),
            })
        })
        .collect()
}

/// The states in which a job has ended for good (squeue(1), "JOB STATE CODES").
const ENDED: &[&str] = &[
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
];

/// Whether a job in `state` still holds (or waits for) resources: anything not ended.
pub fn active(state: &str) -> bool {
    !ENDED.contains(&state)
}

/// Where a job is in its life, for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// In the queue; why, in words.
    Queued(String),
    /// Allocated, not yet running its script (`CONFIGURING`), or held up while it runs.
    Preparing(String),
    Running,
    /// Its processes are being ended (`COMPLETING`).
    Ending,
    Ended(Ended),
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// `COMPLETED` (exit code 0) or `FAILED` (another): the exit code tells.
    Exited,
    /// Killed at its time limit.
    TimeLimit,
    /// Cannot go on, for this reason (a user reads it).
    Failed(String),
}

/// The phase of a job in `state`, pending for `reason`, on `nodes`.
pub fn phase(state: &str, reason: &str, nodes: &str) -> Phase {
    let on = if nodes.is_empty() { String::new() } else { format!(" on {nodes}") };
    match state {
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => Phase::Queued(waiting(reason)),
        "CONFIGURING" => Phase::Preparing(format!("Slurm is preparing its node{on}")),
        "SUSPENDED" | "STOPPED" => Phase::Preparing(format!("suspended by Slurm{on}")),
        "RUNNING" | "RESIZING" | "SIGNALING" => Phase::Running,
        "COMPLETING" | "STAGE_OUT" => Phase::Ending,
        "COMPLETED" | "FAILED" => Phase::Ended(Ended::Exited),
        "TIMEOUT" => Phase::Ended(Ended::TimeLimit),
        "CANCELLED" => Phase::Ended(Ended::Failed("was cancelled in Slurm outside daas (scancel)".into())),
        "NODE_FAIL" => Phase::Ended(Ended::Failed(format!("ended because its node failed{on}"))),
        "BOOT_FAIL" => Phase::Ended(Ended::Failed(format!("could not start: its node failed to boot{on}"))),
        "OUT_OF_MEMORY" => {
            Phase::Ended(Ended::Failed("was killed for using more memory than its flavour allows".into()))
        }
        "PREEMPTED" => Phase::Ended(Ended::Failed("was preempted by Slurm for a job of higher priority".into())),
        "DEADLINE" => Phase::Ended(Ended::Failed("was ended by Slurm: it missed its deadline".into())),
        other => Phase::Ended(Ended::Failed(format!("ended in Slurm as {other} ({reason})"))),
    }
}

/// Why a pending job waits, for the person who launched it (squeue(1), "JOB REASON CODES").
pub fn waiting(reason: &str) -> String {
    let why = match reason {
        "Resources" => "waiting for resources: the nodes that fit its flavour are busy".to_string(),
        "Priority" => "waiting for its turn: jobs of higher priority are ahead of it".to_string(),
        "None" | "" => "queued in Slurm".to_string(),
        "BeginTime" => "waiting for its start time".to_string(),
        "Dependency" => "waiting for the jobs it depends on".to_string(),
        r if r.starts_with("QOS") => format!("waiting: a limit of its quality of service (QOS) is reached ({r})"),
        r if r.starts_with("Assoc") => format!("waiting: a limit of its Slurm account is reached ({r})"),
        r if r.starts_with("JobHeld") => format!("held in Slurm's queue ({r})"),
        r if r.starts_with("Partition") || r.starts_with("ReqNodeNotAvail") || r == "NodeDown" => {
            format!("waiting: the partition's nodes are not available ({r})")
        }
        r => format!("queued in Slurm ({r})"),
    };
    format!("Slurm: {why}")
}

/// Seconds of a Slurm duration (`[days-]hours:minutes:seconds`, `minutes:seconds`,
/// `minutes`); `None` for `UNLIMITED`, `INVALID`, `N/A` and anything else.
pub fn seconds(duration: &str) -> Option<u64> {
    let (days, rest) = match duration.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
        None => (0, duration),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let hms = match parts[..] {
        [m] if days == 0 => m * 60,
        [h] => h * 3600,
        [m, s] if days == 0 => m * 60 + s,
        [h, m] => h * 3600 + m * 60,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(days * 86_400 + hms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_of_daas_jobs_are_read_and_the_others_left() {
        let id = Uuid::new_v4();
        let text = format!(
            "12|RUNNING|None|node7|1:02|1:00:00|{COMMENT}{id}\n\
             13|PENDING|Resources||0:00|2-00:00:00|{COMMENT}{id}\n\
             14|RUNNING|None|node7|5:00|UNLIMITED|someone's job | with a bar\n\
             not a line\n\
             15|PENDING|Priority||0:00|1:00|{COMMENT}not-a-uuid\n"
        );
        let jobs = parse(&text);
        assert_eq!(jobs.len(), 2);
        assert_eq!((jobs[0].id, jobs[0].session, jobs[0].nodes.as_str()), (12, id, "node7"));
        assert_eq!((jobs[1].state.as_str(), jobs[1].reason.as_str()), ("PENDING", "Resources"));
    }

    #[test]
    fn every_state_is_a_phase_a_user_can_read() {
        assert_eq!(
            phase("PENDING", "Resources", ""),
            Phase::Queued("Slurm: waiting for resources: the nodes that fit its flavour are busy".into())
        );
        assert!(
            matches!(phase("PENDING", "QOSMaxCpuPerUserLimit", ""), Phase::Queued(m) if m.contains("quality of service"))
        );
        assert!(matches!(phase("PENDING", "Priority", ""), Phase::Queued(m) if m.contains("higher priority")));
        assert_eq!(phase("RUNNING", "None", "n1"), Phase::Running);
        assert_eq!(phase("COMPLETING", "None", "n1"), Phase::Ending);
        assert_eq!(phase("COMPLETED", "None", "n1"), Phase::Ended(Ended::Exited));
        assert_eq!(phase("FAILED", "NonZeroExitCode", "n1"), Phase::Ended(Ended::Exited));
        assert_eq!(phase("TIMEOUT", "TimeLimit", "n1"), Phase::Ended(Ended::TimeLimit));
        assert!(
            matches!(phase("NODE_FAIL", "None", "n1"), Phase::Ended(Ended::Failed(m)) if m.contains("node failed on n1"))
        );
        assert!(
            matches!(phase("OUT_OF_MEMORY", "None", "n1"), Phase::Ended(Ended::Failed(m)) if m.contains("more memory"))
        );
        assert!(matches!(phase("CANCELLED", "None", ""), Phase::Ended(Ended::Failed(m)) if m.contains("scancel")));
        for state in ENDED {
            assert!(!active(state) && matches!(phase(state, "None", ""), Phase::Ended(_)), "{state}");
        }
        assert!(active("PENDING") && active("RUNNING") && active("COMPLETING"));
    }

    #[test]
    fn slurm_durations_are_read_in_seconds() {
        assert_eq!(seconds("5"), Some(300));
        assert_eq!(seconds("1:02"), Some(62));
        assert_eq!(seconds("1:00:00"), Some(3600));
        assert_eq!(seconds("2-03:04:05"), Some(2 * 86_400 + 3 * 3600 + 4 * 60 + 5));
        assert_eq!(seconds("1-02"), Some(86_400 + 7200));
        assert_eq!(seconds("UNLIMITED"), None);
        assert_eq!(seconds("INVALID"), None);
        assert_eq!(seconds(""), None);
    }
}
