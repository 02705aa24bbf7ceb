//! The proxy's added latency: the same request (list pods in `default`) straight to the API
//! server and through the proxy, alternating, over kept-alive connections, in one run. Ignored by
//! default; run with
//!     cargo test --release -p hardlab-server --test proxy_bench -- --ignored --nocapture
#![allow(clippy::unwrap_used)]

mod proxy_common;

use std::time::{Duration, Instant};

const ROUNDS: usize = 2000;
const WARM_UP: usize = 100;

fn client(ca_pem: &str, cert_pem: &str, key_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(format!("{cert_pem}{key_pem}").as_bytes()).unwrap())
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

async fn timed(client: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap();
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[test]
#[ignore = "a benchmark: run it on purpose, in release mode"]
fn proxy_overhead_against_going_direct() {
    let Some(shared) = proxy_common::shared() else {
        return;
    };
    let h = &shared.harness;
    let path = "/api/v1/namespaces/default/pods";
    let admin = h
        .plane
        .issue_client_cert("bench-admin", &["system:masters"]);
    let direct = client(&h.plane.ca_pem, &admin.cert_pem, &admin.key_pem);
    let (issued, key_pem) = h.issue(
        &h.service.ca,
        "alice",
        &["kubernetes-admins"],
        time::Duration::hours(1),
    );
    let proxied = client(h.service.ca.cert_pem(), &issued.cert_pem, &key_pem);
    let direct_url = format!("{}{path}", h.plane.server);
    let proxy_url = format!("https://{}/k8s/dev{path}", h.service.listen);

    let (mut direct_times, mut proxy_times) = shared.block_on(async {
        for _ in 0..WARM_UP {
            timed(&direct, &direct_url).await;
            timed(&proxied, &proxy_url).await;
        }
        let mut direct_times = Vec::with_capacity(ROUNDS);
        let mut proxy_times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            direct_times.push(timed(&direct, &direct_url).await);
            proxy_times.push(timed(&proxied, &proxy_url).await);
        }
        (direct_times, proxy_times)
    });
    direct_times.sort();
    proxy_times.sort();
    let report = |name: &str, times: &[Duration]| {
        println!(
            "{name:>7}: median {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms",
            percentile(times, 0.5).as_secs_f64() * 1e3,
            percentile(times, 0.9).as_secs_f64() * 1e3,
            percentile(times, 0.99).as_secs_f64() * 1e3,
        );
    };
    println!("{ROUNDS} alternating GET {path}, keep-alive, after {WARM_UP} warm-up rounds each");
    report("direct", &direct_times);
    report("proxy", &proxy_times);
    let overhead =
        percentile(&proxy_times, 0.5).as_secs_f64() - percentile(&direct_times, 0.5).as_secs_f64();
    println!("median overhead: {:.3} ms", overhead * 1e3);
}
