//! The audit log's hash chain on real databases (SQLite always, PostgreSQL when
//! `HARDLAB_TEST_POSTGRES_URL` is set): appends chain, and a changed, deleted or reordered row is
//! found by verification.
#![allow(clippy::unwrap_used)]

mod proxy_common;

use hardlab_server::proxy::audit::{self, AuditEvent, AuditFilter, Decision};
use hardlab_server::proxy::service::verify_report;
use sqlx::AnyPool;

fn event(user: &str, verb: &str, kind: &str, code: u16) -> AuditEvent {
    AuditEvent {
        seq: 0,
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

async fn three_events(pool: &AnyPool) {
    for (verb, kind, code) in [
        ("list", "pods", 200),
        ("list", "services", 403),
        ("get", "pods", 200),
    ] {
        audit::append(pool, event("bob", verb, kind, code))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn appended_events_form_an_intact_chain_and_export_as_json_lines() {
    for (db, pool, leftover) in pools().await {
        three_events(&pool).await;
        let (intact, report) = verify_report(&pool).await.unwrap();
        assert!(intact, "{db}: {report}");
        assert!(report.contains("3 events"), "{db}: {report}");
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
        three_events(&pool).await;
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
        let (intact, report) = verify_report(&pool).await.unwrap();
        assert!(!intact, "{db}: {report}");
        assert!(report.contains("event 2"), "{db}: {report}");
        assert!(report.contains("do not match its hash"), "{db}: {report}");
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn a_changed_filter_column_or_a_deleted_row_is_found() {
    for (db, pool, leftover) in pools().await {
        three_events(&pool).await;
        sqlx::query("UPDATE proxy_audit SET user_name = 'alice' WHERE seq = 1")
            .execute(&pool)
            .await
            .unwrap();
        let (intact, report) = verify_report(&pool).await.unwrap();
        assert!(!intact && report.contains("event 1"), "{db}: {report}");
        sqlx::query("UPDATE proxy_audit SET user_name = 'bob' WHERE seq = 1")
            .execute(&pool)
            .await
            .unwrap();
        assert!(verify_report(&pool).await.unwrap().0, "{db}: restored");
        sqlx::query("DELETE FROM proxy_audit WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        let (intact, report) = verify_report(&pool).await.unwrap();
        assert!(!intact, "{db}: {report}");
        assert!(report.contains("event 3"), "{db}: {report}");
        leftover.remove(pool).await;
    }
}

#[tokio::test]
async fn writers_racing_on_one_database_still_build_one_chain() {
    for (db, pool, leftover) in pools().await {
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..10 {
                    audit::append(&pool, event(&format!("w{writer}"), "get", "pods", 200 + n))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let (intact, report) = verify_report(&pool).await.unwrap();
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
async fn hardlab_audit_verify_exits_1_naming_the_tampered_row() {
    let (pool, dir) = proxy_common::test_db().await;
    three_events(&pool).await;
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let intact = hardlab(&["audit", "--database-url", &url, "verify"]);
    let out = String::from_utf8_lossy(&intact.stdout).into_owned();
    assert!(intact.status.success(), "{out}");
    assert!(out.contains("audit chain intact: 3 events"), "{out}");

    sqlx::query("UPDATE proxy_audit SET verb = 'get' WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let broken = hardlab(&["audit", "--database-url", &url, "verify"]);
    let out = String::from_utf8_lossy(&broken.stdout).into_owned();
    assert_eq!(broken.status.code(), Some(1), "{out}");
    assert!(out.contains("BROKEN at event 2"), "{out}");

    let export = hardlab(&[
        "audit",
        "--database-url",
        &url,
        "export",
        "--user",
        "bob",
        "--code",
        "403",
    ]);
    assert!(export.status.success());
    let lines = String::from_utf8_lossy(&export.stdout).into_owned();
    assert_eq!(lines.lines().count(), 1, "{lines}");
}
