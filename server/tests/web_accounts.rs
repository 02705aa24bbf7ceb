//! Accounts on the real app over HTTP: sign-up, sign-in, sessions, CSRF, throttling.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestApp, each_database};

#[tokio::test]
async fn health_and_readiness_answer_without_signing_in() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let agent = app.agent();
        assert_eq!(agent.get("/healthz").await.status, 200);
        assert_eq!(agent.get("/readyz").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn a_new_learner_signs_up_and_sees_the_lab_list() {
    each_database(|db| async move {
        let app = TestApp::start(db).await;
        let learner = app.learner("alice").await;
        let page = learner.get("/").await;
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("Demo, encrypt Secrets at rest"),
            "{}",
            page.body
        );
        assert!(page.body.contains("alice"));
    })
    .await;
}
