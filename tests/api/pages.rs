//! The pages, rendered for real and snapshot-tested with ids, secrets and times redacted;
//! the same visibility rules as the API.

use axum::http::Method;
use sqlx::PgPool;

use crate::common::TestApp;

/// Snapshots a page with what changes from run to run redacted.
macro_rules! assert_page_snapshot {
    ($name:expr, $html:expr) => {
        insta::with_settings!({filters => vec![
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]"),
            (r"daas_[A-Za-z0-9_-]{43}", "[token]"),
            (r#"(value="|"X-CSRF-Token": ")[A-Za-z0-9_-]{43}"#, "$1[csrf]"),
            (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", "[time]"),
        ]}, {
            insta::assert_snapshot!($name, $html);
        });
    };
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn page_snapshots(db: PgPool) {
    let app = TestApp::new(db).await;
    let login = app.browse(Method::GET, "/login?next=/proposals", None, None, &[]).await;
    assert_page_snapshot!("login", login.text);

    let alice = app.browser("alice").await;
    sqlx::query("insert into favourites (user_id, proposal_id) select u.id, p.id from users u, proposals p where u.username = 'alice' and p.identifier = '20180101'")
        .execute(&app.db)
        .await
        .unwrap();
    let proposals = app.browse(Method::GET, "/proposals", Some(&alice.cookie), None, &[]).await;
    assert_eq!(proposals.status, 200);
    assert_page_snapshot!("proposals", proposals.text);

    let proposal = app.browse(Method::GET, "/proposals/20180101", Some(&alice.cookie), None, &[]).await;
    assert_eq!(proposal.status, 200);
    assert_page_snapshot!("proposal", proposal.text);

    app.token("alice").await;
    let tokens = app.browse(Method::GET, "/tokens", Some(&alice.cookie), None, &[]).await;
    assert_page_snapshot!("tokens", tokens.text);

    let missing = app.browse(Method::GET, "/proposals/I-20191502", Some(&alice.cookie), None, &[]).await;
    assert_eq!(missing.status, 404);
    assert_page_snapshot!("not_found", missing.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn another_users_proposal_page_is_404_like_a_missing_one(db: PgPool) {
    let app = TestApp::new(db).await;
    let bob = app.browser("bob").await;
    let theirs = app.browse(Method::GET, "/proposals/20180101", Some(&bob.cookie), None, &[]).await;
    let missing = app.browse(Method::GET, "/proposals/29990101", Some(&bob.cookie), None, &[]).await;
    assert_eq!((theirs.status.as_u16(), missing.status.as_u16()), (404, 404));
    assert_eq!(theirs.text, missing.text);
    assert!(!theirs.text.contains("test 1_D"));
    // Nor can bob star it.
    let form = [("_csrf", bob.csrf.as_str()), ("favourite", "true")];
    assert_eq!(
        app.browse(Method::POST, "/proposals/20180101/favourite", Some(&bob.cookie), Some(&form), &[]).await.status,
        404
    );
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn pages_send_strangers_to_the_login_page(db: PgPool) {
    let app = TestApp::new(db).await;
    let response = app.browse(Method::GET, "/proposals/20180101?x=1", None, None, &[]).await;
    assert_eq!(response.status, 303);
    assert_eq!(response.headers["location"], "/login?next=%2Fproposals%2F20180101%3Fx%3D1");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_empty_list_says_why(db: PgPool) {
    let app = TestApp::new(db).await;
    sqlx::query("insert into users (username, display_name) values ('newcomer', 'New Comer')")
        .execute(&app.db)
        .await
        .unwrap();
    let newcomer = app.browser("newcomer").await;
    let page = app.browse(Method::GET, "/proposals", Some(&newcomer.cookie), None, &[]).await;
    assert!(page.text.contains("You are not a member of any proposal yet"), "{}", page.text);
    let alice = app.browser("alice").await;
    let none = app.browse(Method::GET, "/proposals?q=zzz", Some(&alice.cookie), None, &[]).await;
    assert!(none.text.contains("No proposal matches your search."));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn search_and_favourites_on_the_page(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.browser("alice").await;
    let first_row = |html: &str| html.split("<tbody>").nth(1).unwrap().split("</tr>").next().unwrap().to_string();
    let before = app.browse(Method::GET, "/proposals", Some(&alice.cookie), None, &[]).await;
    assert!(first_row(&before.text).contains("20190315"));
    let form = [("_csrf", alice.csrf.as_str()), ("favourite", "true")];
    app.browse(Method::POST, "/proposals/20180101/favourite", Some(&alice.cookie), Some(&form), &[]).await;
    let after = app.browse(Method::GET, "/proposals", Some(&alice.cookie), None, &[]).await;
    assert!(first_row(&after.text).contains("20180101") && first_row(&after.text).contains("aria-pressed=\"true\""));
    let search = app.browse(Method::GET, "/proposals?q=phase&beamline=", Some(&alice.cookie), None, &[]).await;
    assert!(search.text.contains("20190315") && !search.text.contains(">20180101<"));
}
