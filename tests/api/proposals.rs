//! `GET /api/v1/proposals` and `GET /api/v1/proposals/{id}`: visibility, search, pages.

use sqlx::PgPool;

use crate::common::{identifiers, TestApp};

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn each_role_sees_what_it_should(db: PgPool) {
    let app = TestApp::new(db).await;
    let seen = |user: &'static str| {
        let app = &app;
        async move {
            let response = app.get_as(user, "/api/v1/proposals").await;
            assert_eq!(response.status, 200, "{}", response.text);
            let mut ids: Vec<String> = identifiers(&response.body).into_iter().map(String::from).collect();
            ids.sort();
            assert_eq!(response.body["total"], ids.len());
            ids
        }
    };
    // alice: PI of 20180101, member of 20190315.
    assert_eq!(seen("alice").await, ["20180101", "20190315"]);
    // bob: only his own.
    assert_eq!(seen("bob").await, ["I-20191502"]);
    // sam, scientist of BL11: both BL11 proposals, though a member of none.
    assert_eq!(seen("sam").await, ["20180101", "20200420"]);
    // admin: everything.
    assert_eq!(seen("admin").await, ["20180101", "20190315", "20200420", "I-20191502"]);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_user_with_no_membership_sees_an_empty_list(db: PgPool) {
    let app = TestApp::new(db).await;
    daas::auth::users::add(
        &app.db,
        daas::auth::users::NewUser {
            username: "newcomer",
            display_name: "New Comer",
            email: None,
            affiliation: None,
            role: daas::auth::identity::Role::User,
            password: None,
        },
    )
    .await
    .unwrap();
    let response = app.get_as("newcomer", "/api/v1/proposals").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["items"], serde_json::json!([]));
    assert_eq!(response.body["total"], 0);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn another_users_proposal_is_404_not_403(db: PgPool) {
    let app = TestApp::new(db).await;
    let response = app.get_as("bob", "/api/v1/proposals/20180101").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.error_code(), "not_found");
    // Exactly what a proposal that does not exist gives.
    let missing = app.get_as("bob", "/api/v1/proposals/29990101").await;
    assert_eq!(missing.text, response.text);
    // A scientist of another beamline does not see it either.
    sqlx::query("update beamline_staff set beamline = 'BL04'").execute(&app.db).await.unwrap();
    assert_eq!(app.get_as("sam", "/api/v1/proposals/20180101").await.status, 404);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn proposal_detail_has_experiments_and_datasets(db: PgPool) {
    let app = TestApp::new(db).await;
    let response = app.get_as("alice", "/api/v1/proposals/20180101").await;
    assert_eq!(response.status, 200);
    let codes: Vec<&str> =
        response.body["experiments"].as_array().unwrap().iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["S0011", "S0012", "S0013", "S0014"]);
    insta::assert_json_snapshot!(response.body, {
        ".experiments[].id" => "[id]",
        ".experiments[].datasets[].id" => "[id]",
    });
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn search_matches_identifier_title_and_beamline(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let ids = |q: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let response = app.get(&format!("/api/v1/proposals?{q}"), Some(admin)).await;
            assert_eq!(response.status, 200, "{}", response.text);
            identifiers(&response.body).into_iter().map(String::from).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids("q=BATTERY").await, ["I-20191502"]);
    assert_eq!(ids("q=2018").await, ["20180101"]);
    assert_eq!(ids("q=bl11").await, ["20200420", "20180101"]);
    assert_eq!(ids("beamline=BL02").await, ["20190315"]);
    // Wildcards are literal characters.
    assert_eq!(ids("q=%25").await, Vec::<String>::new());
    assert_eq!(ids("q=1_D").await, ["20180101"]);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn pages_and_their_bounds(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let first = app.get("/api/v1/proposals?per_page=3", Some(&admin)).await;
    let second = app.get("/api/v1/proposals?per_page=3&page=2", Some(&admin)).await;
    assert_eq!(identifiers(&first.body).len(), 3);
    assert_eq!(identifiers(&second.body).len(), 1);
    assert_eq!(second.body["total"], 4);
    for bad in ["per_page=0", "per_page=101", "page=0", "page=abc", "page=99999999999999999999"] {
        let response = app.get(&format!("/api/v1/proposals?{bad}"), Some(&admin)).await;
        assert_eq!(response.status, 400, "{bad}: {}", response.text);
        assert_eq!(response.error_code(), "invalid");
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn favourites_come_first(db: PgPool) {
    let app = TestApp::new(db).await;
    let before = app.get_as("alice", "/api/v1/proposals").await;
    assert_eq!(identifiers(&before.body), ["20190315", "20180101"]);
    sqlx::query(
        "insert into favourites (user_id, proposal_id)
         select u.id, p.id from users u, proposals p where u.username = 'alice' and p.identifier = '20180101'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let after = app.get_as("alice", "/api/v1/proposals").await;
    assert_eq!(identifiers(&after.body), ["20180101", "20190315"]);
    assert_eq!(after.body["items"][0]["favourite"], true);
}
