//! Issue 14, item 9: identifiers that come from outside (proposal identifiers, experiment
//! codes, beamlines, usernames, dataset and image names) holding URL-reserved characters
//! round-trip through every link, form action, redirect and API path. The model allows
//! fewer characters today (`QA/2024/001` is the sharpest an import accepts); the test
//! lifts those checks in its own database so the links are proven for any identifier.

use std::collections::{HashSet, VecDeque};

use axum::http::Method;
use serde_json::json;

use crate::admin::insert_session;
use crate::common::{add_shell_image, Browser, TestApp};

const PROPOSAL: &str = "QA/2024/001 #1?x&y+50%é";
const EXPERIMENT: &str = "E 1/#?&+%ü";
const BEAMLINE: &str = "BL 9/#?&";
/// Usernames stay `[a-z0-9._-]`: the model's check, kept.
const USER: &str = "q.a-user_1";
const DATASET: &str = "scan #1/50% ?&+é";
const IMAGE: &str = "Fiji & Co #1/ü?";

/// `value` as a path segment, spelled independently of the code under test.
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What askama writes for each character it escapes.
const ESCAPES: [(&str, &str); 5] = [("&", "&#38;"), ("\"", "&#34;"), ("'", "&#39;"), ("<", "&#60;"), (">", "&#62;")];

/// `value` as askama writes it into a page.
fn html(value: &str) -> String {
    ESCAPES.iter().fold(value.to_owned(), |s, (plain, escaped)| s.replace(plain, escaped))
}

fn unescape(value: &str) -> String {
    ESCAPES.iter().rev().fold(value.to_owned(), |s, (plain, escaped)| s.replace(escaped, plain))
}

async fn load(app: &TestApp) {
    // Lift the model's character checks on these columns (this database only).
    sqlx::query(
        r"do $$ declare c record; begin
            for c in select conrelid::regclass as t, conname from pg_constraint
                     where contype = 'c' and conrelid::regclass::text in ('proposals', 'experiments', 'beamline_staff')
                       and pg_get_constraintdef(oid) like '%~%'
            loop execute format('alter table %s drop constraint %I', c.t, c.conname); end loop;
          end $$",
    )
    .execute(&app.db)
    .await
    .unwrap();
    add_shell_image(&app.db, IMAGE, "notebook", "true").await;
    for sql in [
        "insert into users (username, display_name) values ($1, 'Q. A. User')",
        "insert into proposals (identifier, title, beamline) values ($2, 'Reserved characters', $4)",
        "insert into proposal_members (proposal_id, user_id, role)
         select p.id, u.id, 'pi' from proposals p, users u where p.identifier = $2 and u.username = $1",
        "insert into experiments (proposal_id, code, beamline, starts_at, ends_at)
         select id, $3, $4, now() - interval '1 day', now() + interval '1 day' from proposals where identifier = $2",
        "insert into datasets (experiment_id, name, location) select id, $5, 'x/y' from experiments where code = $3",
        "insert into beamline_staff (user_id, beamline) select id, $4 from users where username = 'sam'",
        "insert into favourites (user_id, proposal_id)
         select u.id, p.id from users u, proposals p where u.username = $1 and p.identifier = $2",
    ] {
        sqlx::query(sql)
            .bind(USER)
            .bind(PROPOSAL)
            .bind(EXPERIMENT)
            .bind(BEAMLINE)
            .bind(DATASET)
            .execute(&app.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    insert_session(&app.db, USER, EXPERIMENT, IMAGE, "running", (100, 0), (Some("2026-11-01T00:00:00Z"), None)).await;
}

/// Whether a URL carries one of the odd identifiers.
fn odd(url: &str) -> bool {
    [PROPOSAL, EXPERIMENT, BEAMLINE, USER].iter().any(|v| url.contains(&segment(v)))
}

/// Every page `who` reaches from `starts` by following links (href, hx-get, src, GET
/// forms and redirects): none answers 404. Then every POST form whose action carries an
/// odd identifier is sent with its hidden fields (and selected options): none answers 404,
/// nor does where it redirects. Returns the URLs seen that carry an odd identifier.
async fn crawl(app: &TestApp, who: &Browser, starts: &[&str]) -> HashSet<String> {
    let attribute = regex::Regex::new(r#"\s(?:href|hx-get|src)="([^"]*)""#).unwrap();
    let form = regex::Regex::new(r#"(?s)<form\b([^>]*)>(.*?)</form>"#).unwrap();
    let field = regex::Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)""#).unwrap();
    let select =
        regex::Regex::new(r#"(?s)<select[^>]*name="([^"]+)"[^>]*>.*?<option value="([^"]*)" selected"#).unwrap();
    let action = regex::Regex::new(r#"action="([^"]*)""#).unwrap();
    let mut queue: VecDeque<String> = starts.iter().map(|s| s.to_string()).collect();
    let mut seen: HashSet<String> = queue.iter().cloned().collect();
    let mut posts: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut odd_urls = HashSet::new();
    fn follow(url: String, seen: &mut HashSet<String>, queue: &mut VecDeque<String>) {
        let url = url.split('#').next().unwrap().to_owned();
        let skip = !url.starts_with('/')
            || url.starts_with("//")
            || url.starts_with("/static/")
            || url.ends_with("/events")
            || url.contains("/open");
        if !skip && seen.insert(url.clone()) {
            queue.push_back(url);
        }
    }
    while let Some(url) = queue.pop_front() {
        assert!(seen.len() < 500, "the crawl does not end");
        if odd(&url) {
            odd_urls.insert(url.clone());
        }
        let page = app.browse(Method::GET, &url, Some(&who.cookie), None, &[]).await;
        assert_ne!(page.status, 404, "GET {url}: {}", page.text);
        if page.status == 303 {
            follow(page.headers["location"].to_str().unwrap().to_owned(), &mut seen, &mut queue);
            continue;
        }
        for found in attribute.captures_iter(&page.text) {
            follow(unescape(&found[1]), &mut seen, &mut queue);
        }
        for found in form.captures_iter(&page.text) {
            let Some(target) = action.captures(&found[1]).map(|a| unescape(&a[1])) else { continue };
            if !found[1].contains(r#"method="post""#) {
                follow(target, &mut seen, &mut queue);
            } else if odd(&target) && !posts.iter().any(|(t, _)| *t == target) {
                let mut fields: Vec<(String, String)> =
                    field.captures_iter(&found[2]).map(|f| (unescape(&f[1]), unescape(&f[2]))).collect();
                fields.extend(select.captures_iter(&found[2]).map(|f| (unescape(&f[1]), unescape(&f[2]))));
                posts.push((target, fields));
            }
        }
    }
    for (target, fields) in posts {
        odd_urls.insert(target.clone());
        let form: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let response = app.browse(Method::POST, &target, Some(&who.cookie), Some(&form), &[]).await;
        assert!(
            ![404, 405].contains(&response.status.as_u16()),
            "POST {target}: {} {}",
            response.status,
            response.text
        );
        if let Some(location) = response.headers.get("location") {
            let location = location.to_str().unwrap();
            let next = app.browse(Method::GET, location, Some(&who.cookie), None, &[]).await;
            assert_ne!(next.status, 404, "POST {target} sent to {location}");
        }
    }
    odd_urls
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_9_reserved_characters_in_identifiers_round_trip_through_every_link(db: sqlx::PgPool) {
    let app = TestApp::new(db).await;
    load(&app).await;
    let (p, e, b) = (segment(PROPOSAL), segment(EXPERIMENT), segment(BEAMLINE));

    // The member: proposals, the proposal, its star, Launch…, My sessions, tokens.
    let user = app.browser(USER).await;
    let seen = crawl(&app, &user, &["/"]).await;
    for expected in [format!("/proposals/{p}"), format!("/proposals/{p}/launch"), format!("/proposals/{p}/favourite")] {
        assert!(seen.contains(&expected), "{expected} not linked; seen {seen:?}");
    }
    let page = app.browse(Method::GET, &format!("/proposals/{p}"), Some(&user.cookie), None, &[]).await;
    for shown in [PROPOSAL, EXPERIMENT, DATASET] {
        assert!(page.text.contains(&html(shown)), "{shown} not shown: {}", page.text);
    }
    let launch = app.browse(Method::GET, &format!("/proposals/{p}/launch"), Some(&user.cookie), None, &[]).await;
    assert!(launch.text.contains(&html(IMAGE)), "{}", launch.text);

    // The beamline's scientist: the beamline's sessions, the link-a-dataset form and where
    // linking one leads.
    let sam = app.browser("sam").await;
    let seen = crawl(&app, &sam, &["/"]).await;
    let link = format!("/proposals/{p}/experiments/{e}/datasets/new");
    for expected in [format!("/beamlines/{b}/sessions"), format!("/beamlines/{b}/sessions/stop"), link.clone()] {
        assert!(seen.contains(&expected), "{expected} not linked; seen {seen:?}");
    }
    let folder = app.data_path().join(BEAMLINE).join(PROPOSAL).join(EXPERIMENT).join("scan 1");
    std::fs::create_dir_all(&folder).unwrap();
    let location = format!("{BEAMLINE}/{PROPOSAL}/{EXPERIMENT}/scan 1");
    let form = [("_csrf", sam.csrf.as_str()), ("location", location.as_str()), ("name", "linked")];
    let linked = app.browse(Method::POST, &link, Some(&sam.cookie), Some(&form), &[]).await;
    assert_eq!(linked.status, 303, "{}", linked.text);
    assert_eq!(linked.headers["location"], format!("/proposals/{p}").as_str());

    // The API, with the same spelling of each identifier in its paths.
    let token = app.token(USER).await;
    let proposal = app.get(&format!("/api/v1/proposals/{p}"), Some(&token)).await;
    assert_eq!((proposal.status.as_u16(), proposal.body["identifier"].as_str()), (200, Some(PROPOSAL)));
    assert_eq!(proposal.body["experiments"][0]["code"], EXPERIMENT);
    for method in [Method::PUT, Method::DELETE] {
        let r = app.request(method, &format!("/api/v1/proposals/{p}/favourite"), Some(&token), None).await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    let sam_token = app.token("sam").await;
    let sessions = app.get(&format!("/api/v1/beamlines/{b}/sessions"), Some(&sam_token)).await;
    assert_eq!(sessions.status, 200, "{}", sessions.text);
    assert!(sessions.text.contains(USER), "{}", sessions.text);
    std::fs::create_dir_all(folder.with_file_name("scan 2")).unwrap();
    let location = format!("{BEAMLINE}/{PROPOSAL}/{EXPERIMENT}/scan 2");
    let uri = format!("/api/v1/proposals/{p}/experiments/{e}/datasets");
    let r = app.request(Method::POST, &uri, Some(&sam_token), Some(json!({"location": location}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let admin_token = app.token("admin").await;
    let r = app.get(&format!("/api/v1/admin/users/{USER}"), Some(&admin_token)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let limits = json!({"max_sessions": 3});
    let r = app
        .request(Method::PUT, &format!("/api/v1/admin/quotas/proposals/{p}"), Some(&admin_token), Some(limits))
        .await;
    assert!(r.status.is_success(), "{}", r.text);

    // The admin: every console page, the user's forms (last: they disable the user), the
    // sessions filtered by user.
    let admin = app.browser("admin").await;
    let seen = crawl(&app, &admin, &["/", "/admin/users", "/admin/quotas", "/admin/sessions"]).await;
    for expected in [format!("/admin/users/{USER}/role"), format!("/admin/sessions?user={USER}")] {
        assert!(seen.contains(&expected), "{expected} not linked; seen {seen:?}");
    }
}
