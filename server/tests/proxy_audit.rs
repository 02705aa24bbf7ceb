//! The audit log's keyed chain on real databases (SQLite always, PostgreSQL when
//! `HARDLAB_TEST_POSTGRES_URL` is set): appends chain under the server key and checkpoint the head
//! in a file next to it, and a changed, deleted or reordered row, events deleted from the end, and
//! a whole chain rewritten with hashes that would have verified before the key are all found, by
//! the library and by `hardlab audit verify`.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use hardlab_server::db::seal::Sealer;
use hardlab_server::proxy::audit::{self, AuditEvent, AuditFilter, AuditKeys, Decision};
use hardlab_server::proxy::service::verify_report;
use sha2::Digest;
use sqlx::AnyPool;

fn event(user: &str, verb: &str, kind: &str, code: u16) -> AuditEvent {
    AuditEvent {
        seq: 0,
        tenant: String::new(),
        event: "kube.request".into(),
        time: audit::now_rfc3339(),
        user: user.into(),
        user_roles: vec!["developer-read".into()],
        cert_serial: "01".into(),
        addr_remote: "127.0.0.1:5000".into(),
        kubernetes_cluster: "dev".into(),
        kubernetes_users: vec![user.into()],
        kubernetes_groups: vec!["developer-read".into()],
        http_method: "GET".into(),
        request_path: format!("/api/v1/namespaces/default/{kind}"),
        verb: verb.into(),
        resource_api_group: "core/v1".into(),
        resource_namespace: "default".into(),
        resource_kind: kind.into(),
        resource_name: String::new(),
        response_code: code,
        decision: Decision::Upstream,
        reason: String::new(),
        session_id: String::new(),
    }
}

/// What to remove once a database leg is done.
enum Leftover {
    /// Held so the directory lives as long as the pool; removed on drop.
    SqliteDir(#[allow(dead_code)] tempfile::TempDir),
    PostgresDatabase {
        admin: AnyPool,
        name: String,
    },
}

impl Leftover {
    async fn remove(self, pool: AnyPool) {
        pool.close().await;
        if let Leftover::PostgresDatabase { admin, name } = self {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
    }
}

/// The audit keys of a server whose key file is in `dir` (checkpoints next to it).
fn keys_in(dir: &std::path::Path) -> AuditKeys {
    AuditKeys::from_sealer(&Sealer::new(dir.join("secret.key")), None).unwrap()
}

async fn pools() -> Vec<(&'static str, AnyPool, Leftover)> {
    let (sqlite, dir) = proxy_common::test_db().await;
    let mut pools = vec![("sqlite", sqlite, Leftover::SqliteDir(dir))];
    match std::env::var("HARDLAB_TEST_POSTGRES_URL") {
        Ok(url) => {
            let admin = AnyPool::connect(&url).await.unwrap();
            let name = format!("hardlab_proxy_audit_{}", rand::random::<u32>());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await
                .unwrap();
            let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
            let pool = AnyPool::connect(&format!("{base}/{name}")).await.unwrap();
            sqlx::migrate!("../migrations").run(&pool).await.unwrap();
            pools.push(("postgres", pool, Leftover::PostgresDatabase { admin, name }));
        }
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true needs HARDLAB_TEST_POSTGRES_URL"
            );
            eprintln!("PostgreSQL leg skipped: HARDLAB_TEST_POSTGRES_URL is not set");
        }
    }
    pools
}

async fn three_events(pool: &AnyPool, keys: &AuditKeys) {
    for (verb, kind, code) in [
        ("list", "pods", 200),
        ("list", "services", 403),
        ("get", "pods", 200),
    ] {
        audit::append(pool, keys, event("bob", verb, kind, code))
            .await
            .unwrap();
    }
}

/// Rewrites every row's hashes as the chain was before it was keyed (plain SHA-256): what
/// someone with write access to the database alone could compute.
async fn rewrite_with_plain_hashes(pool: &AnyPool) {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, event_json FROM proxy_audit ORDER BY seq")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut prev = audit::GENESIS_HASH.to_owned();
    for (seq, json) in rows {
        let mut hasher = sha2::Sha256::new();
        hasher.update(prev.as_bytes());
        hasher.update(b"\n");
        hasher.update(json.as_bytes());
        let hash = hex::encode(hasher.finalize());
        sqlx::query("UPDATE proxy_audit SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(pool)
            .await
            .unwrap();
        prev = hash;
    }
}

#[tokio::test]
async fn appended_events_form_an_intact_chain_and_export_as_json_lines() {
    for (db, pool, leftover) in pools().await {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        three_events(&pool, &keys).await;
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(intact, "{db}: {report}");
        assert!(report.contains("3 events"), "{db}: {report}");
        let checkpoints = std::fs::read_to_string(keys.checkpoint_file()).unwrap();
        assert_eq!(checkpoints.lines().count(), 3, "{db}: one per event");
        let lines = audit::export_json_lines(&pool, &AuditFilter::default())
            .await
            .unwrap();
        let parsed: Vec<serde_json::Value> = lines
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3, "{db}");
        assert_eq!(parsed[1]["verb"], "list");
        assert_eq!(parsed[1]["resource_kind"], "services");
        assert_eq!(parsed[1]["response_code"], 403);
        assert_eq!(parsed[1]["seq"], 2);
        let forbidden = audit::list(
            &pool,
            &AuditFilter {
                code: Some(403),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(forbidden.len(), 1, "{db}");
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn a_row_whose_response_code_was_changed_is_found() {
    for (db, pool, leftover) in pools().await {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        three_events(&pool, &keys).await;
        // Someone hides bob's 403: the column and the JSON both say 200 now.
        let row: (String,) = sqlx::query_as("SELECT event_json FROM proxy_audit WHERE seq = 2")
            .fetch_one(&pool)
            .await
            .unwrap();
        let forged = row
            .0
            .replace("\"response_code\":403", "\"response_code\":200");
        sqlx::query("UPDATE proxy_audit SET response_code = 200, event_json = $1 WHERE seq = 2")
            .bind(forged)
            .execute(&pool)
            .await
            .unwrap();
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(!intact, "{db}: {report}");
        assert!(report.contains("event 2"), "{db}: {report}");
        assert!(
            report.contains("do not match its keyed hash"),
            "{db}: {report}"
        );
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn a_changed_filter_column_or_a_deleted_row_is_found() {
    for (db, pool, leftover) in pools().await {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        three_events(&pool, &keys).await;
        sqlx::query("UPDATE proxy_audit SET user_name = 'alice' WHERE seq = 1")
            .execute(&pool)
            .await
            .unwrap();
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(!intact && report.contains("event 1"), "{db}: {report}");
        sqlx::query("UPDATE proxy_audit SET user_name = 'bob' WHERE seq = 1")
            .execute(&pool)
            .await
            .unwrap();
        assert!(
            verify_report(&pool, &keys).await.unwrap().0,
            "{db}: restored"
        );
        sqlx::query("DELETE FROM proxy_audit WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(!intact, "{db}: {report}");
        assert!(report.contains("event 3"), "{db}: {report}");
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn deleting_the_newest_events_is_found_by_the_checkpoints() {
    for (db, pool, leftover) in pools().await {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        three_events(&pool, &keys).await;
        // What remains is a perfectly linked chain of two: only the checkpoint knows of a third.
        sqlx::query("DELETE FROM proxy_audit WHERE seq = 3")
            .execute(&pool)
            .await
            .unwrap();
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(!intact, "{db}: {report}");
        assert!(report.contains("deleted from the end"), "{db}: {report}");
        assert!(report.contains("event 3"), "{db}: {report}");
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn a_whole_chain_rewritten_with_hashes_that_link_is_found() {
    for (db, pool, leftover) in pools().await {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        three_events(&pool, &keys).await;
        // Hide the 403 and recompute every hash the way anyone could without the key.
        sqlx::query(
            "UPDATE proxy_audit SET response_code = 200, \
             event_json = REPLACE(event_json, '\"response_code\":403', '\"response_code\":200')",
        )
        .execute(&pool)
        .await
        .unwrap();
        rewrite_with_plain_hashes(&pool).await;
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(!intact, "{db}: {report}");
        assert!(report.contains("event 1"), "{db}: {report}");

        // Rewritten under some other key (another installation's): still found.
        let (other_pool, _other_dir) = proxy_common::test_db().await;
        let other_key_dir = tempfile::tempdir().unwrap();
        let other_keys = keys_in(other_key_dir.path());
        three_events(&other_pool, &other_keys).await;
        let forged: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT seq, event_json, prev_hash, hash FROM proxy_audit ORDER BY seq")
                .fetch_all(&other_pool)
                .await
                .unwrap();
        for (seq, json, prev, hash) in forged {
            sqlx::query(
                "UPDATE proxy_audit SET event_json = $1, prev_hash = $2, hash = $3, \
                 response_code = (CASE WHEN seq = 2 THEN 403 ELSE 200 END) WHERE seq = $4",
            )
            .bind(json)
            .bind(prev)
            .bind(hash)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        }
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(!intact, "{db}: {report}");
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn an_unkeyed_chain_from_before_the_key_is_adopted_once_and_then_guarded() {
    let (pool, _db_dir) = proxy_common::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_in(dir.path());
    three_events(&pool, &keys).await;
    // As an older server left it: plain SHA-256 hashes and no checkpoint file.
    rewrite_with_plain_hashes(&pool).await;
    std::fs::remove_file(keys.checkpoint_file()).unwrap();
    assert!(!verify_report(&pool, &keys).await.unwrap().0);
    assert_eq!(audit::adopt_unkeyed_chain(&pool, &keys).await.unwrap(), 3);
    let (intact, report) = verify_report(&pool, &keys).await.unwrap();
    assert!(intact, "{report}");
    // Once the folder has checkpoints, an unkeyed rewrite is never adopted again.
    rewrite_with_plain_hashes(&pool).await;
    assert_eq!(audit::adopt_unkeyed_chain(&pool, &keys).await.unwrap(), 0);
    assert!(!verify_report(&pool, &keys).await.unwrap().0);
}

#[tokio::test]
async fn writers_racing_on_one_database_still_build_one_chain() {
    for (db, pool, leftover) in pools().await {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let pool = pool.clone();
            let keys = keys.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..10 {
                    audit::append(
                        &pool,
                        &keys,
                        event(&format!("w{writer}"), "get", "pods", 200 + n),
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (intact, report) = verify_report(&pool, &keys).await.unwrap();
        assert!(intact, "{db}: {report}");
        assert!(report.contains("40 events"), "{db}: {report}");
        leftover.remove(pool).await;
    }
}

/// Runs the real `hardlab` binary.
fn hardlab(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hardlab"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn hardlab_audit_verify_fails_after_an_edit_a_deletion_at_the_end_and_a_rewrite() {
    let verify = |url: &str, key: &str| {
        let output = hardlab(&[
            "audit",
            "--database-url",
            url,
            "--secret-key-file",
            key,
            "verify",
        ]);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), out)
    };
    let fresh = || async {
        let (pool, dir) = proxy_common::test_db().await;
        let keys = keys_in(dir.path());
        three_events(&pool, &keys).await;
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let key = dir.path().join("secret.key").display().to_string();
        (pool, dir, url, key)
    };

    let (pool, _dir, url, key) = fresh().await;
    let (code, out) = verify(&url, &key);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("audit chain intact: 3 events"), "{out}");
    sqlx::query("UPDATE proxy_audit SET verb = 'get' WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let (code, out) = verify(&url, &key);
    assert_eq!(code, Some(1), "edited: {out}");
    assert!(out.contains("BROKEN at event 2"), "{out}");

    let (pool, _dir, url, key) = fresh().await;
    sqlx::query("DELETE FROM proxy_audit WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    let (code, out) = verify(&url, &key);
    assert_eq!(code, Some(1), "newest deleted: {out}");
    assert!(out.contains("deleted from the end"), "{out}");

    let (pool, _dir, url, key) = fresh().await;
    sqlx::query("UPDATE proxy_audit SET user_name = 'alice', event_json = REPLACE(event_json, '\"user\":\"bob\"', '\"user\":\"alice\"')")
        .execute(&pool)
        .await
        .unwrap();
    rewrite_with_plain_hashes(&pool).await;
    let (code, out) = verify(&url, &key);
    assert_eq!(code, Some(1), "rewritten: {out}");

    let export = hardlab(&[
        "audit",
        "--database-url",
        &url,
        "export",
        "--user",
        "alice",
        "--code",
        "403",
    ]);
    assert!(export.status.success());
    let lines = String::from_utf8_lossy(&export.stdout).into_owned();
    assert_eq!(lines.lines().count(), 1, "{lines}");
}

#[tokio::test]
async fn hardlab_proxy_revoke_and_reset_second_factor_are_recorded_in_a_chain_that_verifies() {
    let (pool, dir) = proxy_common::test_db().await;
    let sealer = Sealer::new(dir.path().join("secret.key"));
    let ca = hardlab_server::proxy::store::load_or_create_ca(&pool, &sealer)
        .await
        .unwrap();
    let (_key, csr) = hardlab_server::proxy::ca::new_key_and_csr("bob").unwrap();
    let (issued, _token) = hardlab_server::proxy::store::issue_certificate(
        &pool,
        &ca,
        &hardlab_server::proxy::tenant::Tenant::site(),
        "bob",
        &csr,
        None,
        time::Duration::hours(12),
    )
    .await
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let key = dir.path().join("secret.key").display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["proxy", "--database-url", &url, "--secret-key-file", &key];
        all.extend_from_slice(args);
        let output = hardlab(&all);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = run(&["revoke", "--serial", &issued.serial_hex]);
    assert!(out.contains("of bob revoked"), "{out}");
    let refusal =
        hardlab_server::proxy::store::certificate_refusal(&pool, &issued.serial_hex, "bob")
            .await
            .unwrap();
    assert!(refusal.unwrap().contains("revoked"));
    run(&["revoke", "--user", "bob"]);
    run(&["reset-second-factor", "bob"]);
    let events = audit::list(&pool, &AuditFilter::default()).await.unwrap();
    let kinds: Vec<&str> = events.iter().rev().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        ["cert.revoke", "cert.revoke_all", "auth.second_factor_reset"]
    );
    assert!(events.iter().all(|e| e.resource_name == "bob"));
    let (intact, report) = verify_report(&pool, &keys_in(dir.path())).await.unwrap();
    assert!(intact, "{report}");
    // A serial nobody issued is a clear error, not a silent success.
    let missing = hardlab(&[
        "proxy",
        "--database-url",
        &url,
        "--secret-key-file",
        &key,
        "revoke",
        "--serial",
        "00",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("serial 00"));
}
