//! Workshop pages: `/join/<code>` for learners. A signed-in learner joins with one press; a
//! visitor without an account joins with a display name only when the sign-up mode lets the
//! workshop's code be their proof (`open`, or `code`: see [`super::signup::signup_allowed`]).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::session::{Session, Visitor};
use super::signup::{Claim, SignupProof, SignupRefusal};
use super::users::Role;
use super::{AppState, WebError};
use crate::db::now_ms;
use crate::workshops::{self, JoinRefusal, Workshop, WorkshopState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/join/{code}", get(join_page).post(join))
        .route("/workshops", get(list_page).post(create))
        .route("/workshops/{id}", get(board_page))
        .route("/workshops/{id}/board", get(board_fragment))
        .route("/workshops/{id}/events", get(board_events))
        .route("/workshops/{id}/extend", post(extend))
        .route("/workshops/{id}/broadcast", post(broadcast))
        .route("/workshops/{id}/end", post(end))
        .route("/workshops/{id}/learners/{user}/reset", post(reset_learner))
}

/// What the join page offers this visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinOffer {
    /// Signed in and in the workshop: links to its labs.
    Joined,
    /// Signed in, not in it yet: a Join button.
    Join,
    /// Not signed in, and the sign-up mode lets them join with a name only.
    JoinWithName,
    /// Not signed in, and only accounts may join.
    SignIn,
    Ended,
    Full,
}

struct LabLine {
    id: String,
    title: String,
    minutes: u32,
}

#[derive(Template)]
#[template(path = "workshop_join.html")]
struct JoinPage<'a> {
    visitor: &'a Visitor,
    title: &'a str,
    code: &'a str,
    labs: Vec<LabLine>,
    starts: String,
    ends: String,
    scheduled: bool,
    places_left: i64,
    offer: JoinOffer,
    name: &'a str,
    error: Option<String>,
    /// The instructor's latest message, for the workshop's learners.
    message: Option<String>,
}

async fn workshop_of(state: &AppState, code: &str) -> Result<Workshop, WebError> {
    workshops::by_code(&state.db, code)
        .await?
        .ok_or(WebError::NotFound)
}

async fn offer_for(
    state: &AppState,
    visitor: &Visitor,
    workshop: &Workshop,
    joined: i64,
) -> Result<JoinOffer, WebError> {
    if let Some(user) = visitor.user()
        && workshops::is_learner(&state.db, &workshop.id, &user.id).await?
    {
        return Ok(JoinOffer::Joined);
    }
    if workshop.state(now_ms()) == WorkshopState::Ended {
        return Ok(JoinOffer::Ended);
    }
    if joined >= workshop.capacity {
        return Ok(JoinOffer::Full);
    }
    if visitor.user().is_some() {
        return Ok(JoinOffer::Join);
    }
    Ok(if name_only_allowed(state).await? {
        JoinOffer::JoinWithName
    } else {
        JoinOffer::SignIn
    })
}

/// Whether the server's sign-up mode lets a workshop's code stand for an account's proof.
async fn name_only_allowed(state: &AppState) -> Result<bool, WebError> {
    let proof = SignupProof {
        workshop_code: true,
        ..SignupProof::default()
    };
    Ok(
        super::signup::signup_allowed(&state.db, &state.config, proof, Claim::Peek)
            .await?
            .is_ok(),
    )
}

async fn render(
    state: &AppState,
    visitor: &Visitor,
    workshop: &Workshop,
    name: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let joined = i64::try_from(workshops::learners(&state.db, &workshop.id).await?.len())
        .unwrap_or(i64::MAX);
    let offer = offer_for(state, visitor, workshop, joined).await?;
    let message = if offer == JoinOffer::Joined {
        workshops::latest_broadcast(&state.db, &workshop.id)
            .await?
            .map(|(_, text)| text)
    } else {
        None
    };
    let labs = workshop
        .labs
        .iter()
        .filter_map(|id| state.labs.get(id))
        .map(|lab| LabLine {
            id: lab.id.clone(),
            title: lab.title.clone(),
            minutes: lab.minutes,
        })
        .collect();
    let page = JoinPage {
        visitor,
        title: &workshop.title,
        code: &workshop.join_code,
        labs,
        starts: super::utc_minute(workshop.starts_at),
        ends: super::utc_minute(workshop.closes_at()),
        scheduled: workshop.state(now_ms()) == WorkshopState::Scheduled,
        places_left: (workshop.capacity - joined).max(0),
        offer,
        name,
        error,
        message,
    };
    Ok((status, Html(page.render()?)).into_response())
}

async fn join_page(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(code): Path<String>,
) -> Result<Response, WebError> {
    let workshop = workshop_of(&state, &code).await?;
    render(&state, &visitor, &workshop, "", None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct JoinForm {
    /// The display name of a visitor joining without an account.
    #[serde(default)]
    name: String,
}

async fn join(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(code): Path<String>,
    Form(form): Form<JoinForm>,
) -> Result<Response, WebError> {
    let workshop = workshop_of(&state, &code).await?;
    let here = format!("/join/{}", workshop.join_code);
    let refused = |refusal: JoinRefusal| {
        let status = match refusal {
            JoinRefusal::Ended => StatusCode::GONE,
            JoinRefusal::Full => StatusCode::CONFLICT,
        };
        (status, Some(refusal.message().to_owned()))
    };
    if let Some(user) = visitor.user() {
        return match workshops::join(&state.db, &workshop, &user.id).await? {
            Ok(()) => {
                let _ = state.progress_events.send(user.id.clone());
                tracing::info!(workshop = %workshop.id, user = %user.username, "joined a workshop");
                Ok(Redirect::to(&here).into_response())
            }
            Err(refusal) => {
                let (status, error) = refused(refusal);
                render(&state, &visitor, &workshop, "", error, status).await
            }
        };
    }
    // No account: a display name only, where the sign-up mode allows it.
    let proof = SignupProof {
        workshop_code: true,
        ..SignupProof::default()
    };
    if let Err(refusal) =
        super::signup::signup_allowed(&state.db, &state.config, proof, Claim::Take).await?
    {
        let message = match refusal {
            SignupRefusal::Closed | SignupRefusal::InviteRequired => {
                "Sign in to join: on this server only accounts can join a workshop.".to_owned()
            }
            other => other.message().to_owned(),
        };
        return render(
            &state,
            &visitor,
            &workshop,
            &form.name,
            Some(message),
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // Refused before an account is made for nothing.
    let joined = i64::try_from(workshops::learners(&state.db, &workshop.id).await?.len())
        .unwrap_or(i64::MAX);
    let early_refusal = if workshop.state(now_ms()) == WorkshopState::Ended {
        Some(JoinRefusal::Ended)
    } else if joined >= workshop.capacity {
        Some(JoinRefusal::Full)
    } else {
        None
    };
    if let Some(refusal) = early_refusal {
        let (status, error) = refused(refusal);
        return render(&state, &visitor, &workshop, &form.name, error, status).await;
    }
    // The account has no password anyone knows: it lives in this browser's session.
    let password = format!("{}{}", crate::db::random_id(), crate::db::random_id());
    let user =
        match super::accounts::create_user(&state.db, &form.name, &password, Role::Learner).await {
            Ok(user) => user,
            Err(crate::Error::InvalidInput(message)) => {
                let message = format!("Name: {message}");
                return render(
                    &state,
                    &visitor,
                    &workshop,
                    &form.name,
                    Some(message),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
            Err(error) => return Err(error.into()),
        };
    if let Err(refusal) = workshops::join(&state.db, &workshop, &user.id).await? {
        // The last place went to someone else meanwhile: no account is left behind.
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(&user.id)
            .execute(&state.db)
            .await?;
        let (status, error) = refused(refusal);
        return render(&state, &visitor, &workshop, &form.name, error, status).await;
    }
    let _ = state.progress_events.send(user.id.clone());
    tracing::info!(workshop = %workshop.id, user = %user.username, "joined a workshop with a name only");
    let cookie = super::session::start(&state, &user.id).await?;
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&here)).into_response())
}

// ---- instructors: their workshops, the live board, actions ----

/// The workshop, if this session runs it: its instructors, and site admins. Everyone else gets
/// 404, as for anything that is not theirs.
async fn run_by(state: &AppState, session: &Session, id: &str) -> Result<Workshop, WebError> {
    session.require(Role::Instructor)?;
    let workshop = workshops::get(&state.db, id)
        .await?
        .ok_or(WebError::NotFound)?;
    if session.user.role >= Role::Admin
        || workshops::is_instructor(&state.db, &workshop.id, &session.user.id).await?
    {
        Ok(workshop)
    } else {
        Err(WebError::NotFound)
    }
}

struct WorkshopLine {
    id: String,
    title: String,
    code: String,
    state: &'static str,
    ends: String,
}

#[derive(Template)]
#[template(path = "workshops.html")]
struct ListPage<'a> {
    visitor: &'a Visitor,
    workshops: Vec<WorkshopLine>,
    labs: Vec<LabLine>,
    error: Option<String>,
}

async fn list_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
) -> Result<Response, WebError> {
    render_list(&state, &visitor, &session, None, StatusCode::OK).await
}

async fn render_list(
    state: &AppState,
    visitor: &Visitor,
    session: &Session,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    session.require(Role::Instructor)?;
    let mine = if session.user.role >= Role::Admin {
        workshops::list(&state.db).await?
    } else {
        workshops::list_run_by(&state.db, &session.user.id).await?
    };
    let now = now_ms();
    let page = ListPage {
        visitor,
        workshops: mine
            .into_iter()
            .map(|w| WorkshopLine {
                state: w.state(now).as_str(),
                ends: super::utc_minute(w.closes_at()),
                id: w.id,
                title: w.title,
                code: w.join_code,
            })
            .collect(),
        labs: state
            .labs
            .all()
            .iter()
            .map(|lab| LabLine {
                id: lab.id.clone(),
                title: lab.title.clone(),
                minutes: lab.minutes,
            })
            .collect(),
        error,
    };
    Ok((status, Html(page.render()?)).into_response())
}

/// The create form: `labs` repeats, one per ticked box.
async fn create(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    body: axum::body::Bytes,
) -> Result<Response, WebError> {
    session.require(Role::Instructor)?;
    let mut title = String::new();
    let mut labs = Vec::new();
    let mut capacity = String::new();
    let mut minutes = String::new();
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "title" => title = value.into_owned(),
            "labs" => labs.push(value.into_owned()),
            "capacity" => capacity = value.into_owned(),
            "minutes" => minutes = value.into_owned(),
            _ => {}
        }
    }
    let refuse = |message: String| {
        render_list(
            &state,
            &visitor,
            &session,
            Some(message),
            StatusCode::BAD_REQUEST,
        )
    };
    let Ok(capacity) = capacity.trim().parse::<i64>() else {
        return refuse("capacity: a whole number of learners".into()).await;
    };
    let minutes = match minutes.trim() {
        "" => 240,
        text => match text.parse::<i64>() {
            Ok(minutes) if (1..=7 * 24 * 60).contains(&minutes) => minutes,
            _ => return refuse("minutes: from 1 to 10080".into()).await,
        },
    };
    let now = now_ms();
    let created = workshops::create(
        &state.db,
        &state.labs,
        workshops::NewWorkshop {
            title,
            labs,
            capacity,
            starts_at: now,
            ends_at: now + minutes * 60_000,
            created_by: Some(session.user.id.clone()),
            instructors: vec![session.user.id.clone()],
        },
    )
    .await;
    match created {
        Ok(workshop) => {
            tracing::info!(workshop = %workshop.id, by = %session.user.username, "workshop created");
            Ok(Redirect::to(&format!("/workshops/{}", workshop.id)).into_response())
        }
        Err(crate::Error::InvalidInput(message)) => refuse(message).await,
        Err(error) => Err(error.into()),
    }
}

struct BoardView {
    rows: Vec<RowView>,
    failures: Vec<workshops::board::FailureGroup>,
    stuck: usize,
    learners: usize,
    id: String,
    csrf: String,
    /// Ended: the board is a record; nothing is offered to change.
    ended: bool,
}

struct RowView {
    user_id: String,
    username: String,
    place: String,
    steps: String,
    checks: String,
    time_on_step: String,
    cluster: String,
    last_activity: String,
    stuck: Option<String>,
}

/// `12 min`, `1 h 05 min`, `40 s`.
fn duration(ms: i64) -> String {
    let seconds = ms.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        _ => format!("{} h {:02} min", seconds / 3600, seconds % 3600 / 60),
    }
}

async fn board_view(
    state: &AppState,
    workshop: &Workshop,
    csrf: &str,
) -> Result<BoardView, WebError> {
    let now = now_ms();
    let board = workshops::board::board(&state.db, &state.labs, workshop, now).await?;
    let until = now.min(workshop.closes_at());
    Ok(BoardView {
        stuck: board.stuck_count(),
        learners: board.rows.len(),
        failures: board.failures,
        id: workshop.id.clone(),
        csrf: csrf.to_owned(),
        ended: workshop.state(now) == WorkshopState::Ended,
        rows: board
            .rows
            .into_iter()
            .map(|row| RowView {
                place: match (&row.lab_title, &row.step_title) {
                    (Some(lab), Some(step)) => format!("{lab} · {step}"),
                    _ => "all steps passed".to_owned(),
                },
                steps: format!("{} of {} passed", row.passed_steps, row.total_steps),
                checks: format!(
                    "{} passed / {} attempted",
                    row.checks_passed, row.checks_attempted
                ),
                time_on_step: row.time_on_step_ms.map(duration).unwrap_or_default(),
                last_activity: format!("{} ago", duration(until - row.last_activity_ms)),
                user_id: row.user_id,
                username: row.username,
                cluster: row.cluster,
                stuck: row.stuck,
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "_workshop_board.html")]
struct BoardFragment<'a> {
    board: &'a BoardView,
}

#[derive(Template)]
#[template(path = "workshop_board.html")]
struct BoardPage<'a> {
    visitor: &'a Visitor,
    title: &'a str,
    code: &'a str,
    join_url: String,
    state: &'static str,
    /// "ends 2026-12-02 17:00 UTC" or "ended 2026-12-02 16:27 UTC".
    ends: String,
    board: &'a BoardView,
    audit: Vec<(String, String, String)>,
    notice: Option<String>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn board_page(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<NoticeQuery>,
) -> Result<Response, WebError> {
    let workshop = run_by(&state, &session, &id).await?;
    let board = board_view(&state, &workshop, &visitor.csrf).await?;
    let audit = workshops::audit_log(&state.db, &workshop.id)
        .await?
        .into_iter()
        .rev()
        .take(20)
        .map(|line| {
            let target = line.target.map(|t| format!(" ({t})")).unwrap_or_default();
            (
                super::utc_minute(line.at),
                line.actor,
                format!("{}{target}: {}", line.action, line.detail),
            )
        })
        .collect();
    // Only the notices this page itself redirects with, never text from the address bar.
    let notice = query.notice.as_deref().and_then(|notice| match notice {
        "extended" => Some("The workshop was extended."),
        "broadcast" => Some("Your message was sent to the workshop."),
        "ended" => Some("The workshop has ended; its learners' clusters were removed."),
        "reset" => Some("The learner's cluster is being replaced by a fresh one."),
        _ => None,
    });
    let page = BoardPage {
        visitor: &visitor,
        title: &workshop.title,
        code: &workshop.join_code,
        join_url: workshop.join_url(&state.config.link_base()),
        state: workshop.state(now_ms()).as_str(),
        ends: format!(
            "{} {}",
            if board.ended { "ended" } else { "ends" },
            super::utc_minute(workshop.closes_at())
        ),
        board: &board,
        audit,
        notice: notice.map(str::to_owned),
    };
    Ok(Html(page.render()?).into_response())
}

async fn board_fragment(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let workshop = run_by(&state, &session, &id).await?;
    let board = board_view(&state, &workshop, &visitor.csrf).await?;
    Ok(Html(BoardFragment { board: &board }.render()?).into_response())
}

/// How often an open board redraws with no event (time on step, clusters, attempts stored by
/// another server on the same database).
const BOARD_TICK: std::time::Duration = std::time::Duration::from_secs(10);

/// The board's rows as server-sent events (`event: board`, the rendered fragment as data): one
/// at once, then one after every stored attempt or join of this server and every cluster
/// change, at most one per quarter second, and every [`BOARD_TICK`].
async fn board_events(
    State(state): State<AppState>,
    visitor: Visitor,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let workshop = run_by(&state, &session, &id).await?;
    let progress = state.progress_events.subscribe();
    let clusters = state
        .clusters
        .as_ref()
        .map(|clusters| clusters.manager.subscribe());
    struct Feed {
        state: AppState,
        workshop_id: String,
        csrf: String,
        progress: tokio::sync::broadcast::Receiver<String>,
        clusters:
            Option<tokio::sync::broadcast::Receiver<crate::clusters::lifecycle::ClusterEvent>>,
        first: bool,
    }
    let feed = Feed {
        state,
        workshop_id: workshop.id,
        csrf: visitor.csrf,
        progress,
        clusters,
        first: true,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        if !feed.first {
            let cluster_change = async {
                match feed.clusters.as_mut() {
                    Some(receiver) => {
                        let _ = receiver.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                received = feed.progress.recv() => {
                    if matches!(received, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return None;
                    }
                }
                () = cluster_change => {}
                () = tokio::time::sleep(BOARD_TICK) => {}
            }
            // Several attempts at once make one redraw.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            while feed.progress.try_recv().is_ok() {}
            if let Some(receiver) = feed.clusters.as_mut() {
                while receiver.try_recv().is_ok() {}
            }
        }
        feed.first = false;
        // The workshop is read again each time: an end or an extension shows at once.
        let html = match workshops::get(&feed.state.db, &feed.workshop_id).await {
            Ok(Some(workshop)) => match board_view(&feed.state, &workshop, &feed.csrf).await {
                Ok(board) => BoardFragment { board: &board }.render().unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(%error, "the workshop board could not be drawn");
                    return Some((
                        Ok::<_, std::convert::Infallible>(Event::default().comment("retry")),
                        feed,
                    ));
                }
            },
            _ => return None,
        };
        Some((Ok(Event::default().event("board").data(html)), feed))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

#[derive(Deserialize)]
struct ExtendForm {
    #[serde(default)]
    minutes: String,
}

/// Extends the workshop and every ready cluster of its learners on its labs.
async fn extend(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<ExtendForm>,
) -> Result<Response, WebError> {
    let workshop = run_by(&state, &session, &id).await?;
    let minutes = match form.minutes.trim() {
        "" => 30,
        text => text
            .parse::<i64>()
            .map_err(|_| WebError::BadRequest("minutes: a whole number".into()))?,
    };
    workshops::extend(&state.db, &workshop, minutes, Some(&session.user.id))
        .await
        .map_err(bad_input)?;
    if let Some(clusters) = &state.clusters {
        for member in workshops::learners(&state.db, &workshop.id).await? {
            for lab in &workshop.labs {
                if let Some(record) = clusters
                    .manager
                    .find_for(&member.user_id, lab)
                    .await
                    .map_err(|e| WebError::Internal(e.into()))?
                    && record.state == crate::clusters::lifecycle::ClusterState::Ready
                    // At its lifetime's ceiling already: the workshop's time still moved.
                    && let Err(error) = clusters.manager.extend(&record.id).await
                {
                    tracing::info!(cluster = %record.id, %error, "cluster not extended");
                }
            }
        }
    }
    let _ = state.progress_events.send(String::new());
    Ok(Redirect::to(&format!("/workshops/{}?notice=extended", workshop.id)).into_response())
}

#[derive(Deserialize)]
struct BroadcastForm {
    message: String,
}

async fn broadcast(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<BroadcastForm>,
) -> Result<Response, WebError> {
    let workshop = run_by(&state, &session, &id).await?;
    refuse_if_ended(&workshop)?;
    workshops::broadcast(&state.db, &workshop, &form.message, Some(&session.user.id))
        .await
        .map_err(bad_input)?;
    Ok(Redirect::to(&format!("/workshops/{}?notice=broadcast", workshop.id)).into_response())
}

/// Ends the workshop and removes every cluster of its learners on its labs.
async fn end(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let workshop = run_by(&state, &session, &id).await?;
    workshops::end(&state.db, &workshop, Some(&session.user.id)).await?;
    let removed = remove_clusters(&state, &workshop).await?;
    workshops::record(
        &state.db,
        &workshop.id,
        Some(&session.user.id),
        "teardown",
        None,
        &format!("removed {removed} cluster(s)"),
    )
    .await?;
    let _ = state.progress_events.send(String::new());
    Ok(Redirect::to(&format!("/workshops/{}?notice=ended", workshop.id)).into_response())
}

/// Every live cluster of the workshop's learners on its labs, removed (terminals closed first).
pub async fn remove_clusters(state: &AppState, workshop: &Workshop) -> Result<usize, WebError> {
    let Some(clusters) = &state.clusters else {
        return Ok(0);
    };
    let found = workshops::live_clusters(&state.db, &clusters.manager, workshop).await?;
    for record in &found {
        clusters.terminals.close_cluster(&record.id).await;
        clusters
            .manager
            .delete(&record.id)
            .await
            .map_err(|e| WebError::Internal(e.into()))?;
    }
    Ok(found.len())
}

/// A fresh cluster for the learner's current lab (their current step's, else the first).
async fn reset_learner(
    State(state): State<AppState>,
    session: Session,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let workshop = run_by(&state, &session, &id).await?;
    refuse_if_ended(&workshop)?;
    let Some(member) = workshops::learners(&state.db, &workshop.id)
        .await?
        .into_iter()
        .find(|member| member.user_id == user)
    else {
        return Err(WebError::NotFound);
    };
    let attempts = workshops::progress::attempts(&state.db, &workshop).await?;
    let standing = workshops::progress::standing(&workshop, &state.labs, &member, &attempts);
    let lab_id = standing
        .current_step()
        .map(|step| step.lab_id.clone())
        .or_else(|| workshop.labs.first().cloned())
        .unwrap_or_default();
    let lab = state.labs.get(&lab_id).ok_or(WebError::NotFound)?;
    super::learner_actions::reset(&state, &member.user_id, lab)
        .await
        .map_err(|error| WebError::BadRequest(format!("reset: {error}")))?;
    workshops::record(
        &state.db,
        &workshop.id,
        Some(&session.user.id),
        "reset",
        Some(&member.user_id),
        &format!("a fresh cluster for {lab_id}"),
    )
    .await?;
    Ok(Redirect::to(&format!("/workshops/{}?notice=reset", workshop.id)).into_response())
}

fn refuse_if_ended(workshop: &Workshop) -> Result<(), WebError> {
    if workshop.state(now_ms()) == WorkshopState::Ended {
        return Err(WebError::BadRequest(
            "workshop: it has ended; nothing more can be done in it".into(),
        ));
    }
    Ok(())
}

fn bad_input(error: crate::Error) -> WebError {
    match error {
        crate::Error::InvalidInput(message) => WebError::BadRequest(message),
        other => WebError::Internal(other),
    }
}
