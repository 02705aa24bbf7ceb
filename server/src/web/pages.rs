//! The learner's pages: the lab list, a lab, a step with its Check.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use super::session::{Session, Visitor};
use super::{AppState, WebError};
use crate::labs::Lab;

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(lab_list))
}

#[derive(Template)]
#[template(path = "labs.html")]
struct LabListPage<'a> {
    visitor: &'a Visitor,
    labs: Vec<&'a Lab>,
}

async fn lab_list(
    State(state): State<AppState>,
    visitor: Visitor,
    _session: Session,
) -> Result<Html<String>, WebError> {
    let page = LabListPage {
        visitor: &visitor,
        labs: state.labs.all().iter().map(AsRef::as_ref).collect(),
    };
    Ok(Html(page.render()?))
}
