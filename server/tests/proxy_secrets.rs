//! Secrets at rest, on a database an older version left behind: the user CA key, a TOTP secret
//! and an upstream kubeconfig stored in plaintext are sealed when the proxy starts as `serve`
//! starts it, and keep working (same CA, same authenticator, same kubeconfig).
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::sync::Arc;

use hardlab_server::db::seal::Sealer;
use hardlab_server::proxy::ca::UserCa;
use hardlab_server::proxy::service::{ProxyService, ProxySettings};
use hardlab_server::proxy::tenant::Tenant;
use hardlab_server::proxy::{store, totp};

const OLD_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {client-key-data: c2VjcmV0}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";

#[tokio::test]
async fn plaintext_secrets_of_an_older_version_are_sealed_at_start_and_still_work() {
    let (pool, dir) = proxy_common::test_db().await;
    let old_ca = UserCa::generate("hardlab user CA").unwrap();
    let secret = totp::new_secret();
    sqlx::query("INSERT INTO proxy_ca (id, cert_pem, key_pem, created_at) VALUES (1, $1, $2, 0)")
        .bind(old_ca.cert_pem())
        .bind(old_ca.key_pem())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO proxy_totp (tenant, user_name, secret, confirmed, last_step) VALUES ('', 'bob', $1, 1, NULL)",
    )
    .bind(&secret)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO proxy_clusters (tenant, name, labels_json, kubeconfig, updated_at) VALUES ('', 'old', '{}', $1, 0)",
    )
    .bind(OLD_KUBECONFIG)
    .execute(&pool)
    .await
    .unwrap();

    let sealer = Arc::new(Sealer::new(dir.path().join("secret.key")));
    let service = ProxyService::start(
        pool.clone(),
        Arc::clone(&sealer),
        ProxySettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ProxySettings::default()
        },
    )
    .await
    .unwrap();

    let (key_pem,): (String,) = sqlx::query_as("SELECT key_pem FROM proxy_ca")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (stored_secret,): (String,) = sqlx::query_as("SELECT secret FROM proxy_totp")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (kubeconfig,): (String,) = sqlx::query_as("SELECT kubeconfig FROM proxy_clusters")
        .fetch_one(&pool)
        .await
        .unwrap();
    for stored in [&key_pem, &stored_secret, &kubeconfig] {
        assert!(Sealer::is_sealed_for(stored), "{stored}");
    }
    assert!(!key_pem.contains("PRIVATE KEY") && !stored_secret.contains(&secret));
    assert!(!kubeconfig.contains("client-key-data"));

    // The same CA, the same authenticator, the same kubeconfig.
    assert_eq!(service.ca.cert_pem(), old_ca.cert_pem());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let code = totp::code_for_step(&secret, totp::step_at(now)).unwrap();
    store::check_totp(&pool, &sealer, &Tenant::site(), "bob", &code, false)
        .await
        .unwrap();
    let clusters = store::list_clusters(&pool, &sealer, &Tenant::site())
        .await
        .unwrap();
    assert_eq!(clusters[0].kubeconfig_yaml, OLD_KUBECONFIG);
    // Sealing twice changes nothing.
    assert_eq!(store::seal_plaintext_rows(&pool, &sealer).await.unwrap(), 0);
    // Another server key opens none of it.
    let other = Sealer::new(dir.path().join("other.key"));
    assert!(
        store::list_clusters(&pool, &other, &Tenant::site())
            .await
            .is_err()
    );
}
