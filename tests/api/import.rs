//! Proposal import: an idempotent upsert; a broken file writes nothing.

use daas::proposals::import::{self, Format};
use sqlx::PgPool;

use crate::common::TestApp;

const FILE: &str = r#"{"proposals": [
  {"identifier": "20240001", "title": "Strain in welded joints", "beamline": "BL11",
   "members": [{"username": "erin", "role": "pi", "name": "Erin Park", "email": "erin@uni.example"},
               {"username": "alice", "role": "member"}],
   "experiments": [{"code": "S1001", "start": "2024-02-01", "end": "2024-02-03"}]},
  {"identifier": "20180101", "title": "test 1_D", "beamline": "BL11",
   "abstract": "In-situ tomography of crack growth in additively manufactured titanium.",
   "experiments": [{"code": "S0015", "start": "2024-05-01T08:00:00Z", "end": "2024-05-02T08:00:00Z"}]}
]}"#;

/// Everything an import can touch, as text, to compare before and after.
async fn snapshot(db: &PgPool) -> String {
    sqlx::query_scalar(
        "select concat_ws('|',
            (select string_agg(concat_ws(',', identifier, title, abstract, beamline, updated_at), ';' order by identifier) from proposals),
            (select string_agg(concat_ws(',', username, display_name, email), ';' order by username) from users),
            (select string_agg(concat_ws(',', proposal_id, user_id, role), ';' order by proposal_id, user_id) from proposal_members),
            (select string_agg(concat_ws(',', proposal_id, code, beamline, starts_at, ends_at), ';' order by proposal_id, code) from experiments))",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

async fn run(db: &PgPool, text: &str, format: Format) -> import::Summary {
    let proposals = import::parse(text, format).unwrap();
    let mut tx = db.begin().await.unwrap();
    let summary = import::apply(&mut tx, &proposals).await.unwrap();
    tx.commit().await.unwrap();
    summary
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn importing_twice_changes_nothing_the_second_time(db: PgPool) {
    let app = TestApp::new(db).await;
    let first = run(&app.db, FILE, Format::Json).await;
    assert_eq!((first.proposals_created, first.proposals_unchanged), (1, 1));
    assert_eq!((first.users_created, first.members_added, first.experiments_created), (1, 2, 2));
    let after_first = snapshot(&app.db).await;

    let second = run(&app.db, FILE, Format::Json).await;
    assert_eq!(second, import::Summary { proposals_unchanged: 2, ..Default::default() });
    assert_eq!(snapshot(&app.db).await, after_first);

    // alice now sees the new proposal she was added to.
    let response = app.get_as("alice", "/api/v1/proposals/20240001").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["role"], "member");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_changed_title_or_role_is_updated(db: PgPool) {
    let app = TestApp::new(db).await;
    run(&app.db, FILE, Format::Json).await;
    let changed = FILE
        .replace("Strain in welded joints", "Residual strain in welded joints")
        .replace(r#""alice", "role": "member""#, r#""alice", "role": "pi""#);
    let summary = run(&app.db, &changed, Format::Json).await;
    assert_eq!((summary.proposals_updated, summary.members_changed), (1, 1));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn csv_and_json_give_the_same_rows(db: PgPool) {
    let app = TestApp::new(db).await;
    let csv = "proposal,title,abstract,beamline,member,member_role,member_name,member_email,member_affiliation,experiment,experiment_beamline,start,end\n\
               20240001,Strain in welded joints,,BL11,erin,pi,Erin Park,erin@uni.example,,S1001,,2024-02-01,2024-02-03\n\
               20240001,Strain in welded joints,,BL11,alice,member,,,,,,,\n\
               20180101,test 1_D,In-situ tomography of crack growth in additively manufactured titanium.,BL11,,,,,,S0015,,2024-05-01T08:00:00Z,2024-05-02T08:00:00Z\n";
    assert_eq!(import::parse(csv, Format::Csv).unwrap().len(), 2);
    run(&app.db, csv, Format::Csv).await;
    let after_csv = snapshot(&app.db).await;
    let json = run(&app.db, FILE, Format::Json).await;
    assert_eq!(
        json,
        import::Summary { proposals_unchanged: 2, ..Default::default() },
        "JSON adds nothing to what CSV wrote"
    );
    assert_eq!(snapshot(&app.db).await, after_csv);
}

#[test]
fn broken_files_name_the_line_and_field() {
    let cases = [
        (FILE.replace(r#""2024-02-03""#, r#""2024-13-03""#), 5, "end"),
        (FILE.replace(r#""BL11","#, r#""BL 11","#), 2, "beamline"),
        (FILE.replace(r#""erin", "role": "pi""#, r#""Erin!", "role": "pi""#), 3, "username"),
        (FILE.replace("S0015", "S1001").replace("20180101", "20240001"), 6, "identifier"),
        (FILE.replace(r#""title": "test 1_D","#, r#""title": "test 1_D", "colour": "red","#), 6, "json"),
        (FILE.replacen('}', "", 1), 4, "json"),
    ];
    for (text, line, field) in cases {
        let err = import::parse(&text, Format::Json).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (line, field), "{err}");
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_broken_file_writes_nothing(db: PgPool) {
    let app = TestApp::new(db).await;
    let before = snapshot(&app.db).await;
    // The first proposal is fine, the second is not: neither is written.
    let broken = FILE.replace(r#""2024-05-02T08:00:00Z""#, r#""yesterday""#);
    assert!(import::parse(&broken, Format::Json).is_err());
    assert_eq!(snapshot(&app.db).await, before);
}
