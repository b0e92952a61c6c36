//! The web dashboard under `/ui`: server-rendered pages over the ledger (overview, jobs, one
//! job, dead jobs by reason) and the operator's actions (requeue, cancel) through the same ledger
//! code as the CLI. Pages are HTML from [`pages`]; the one script refreshes `<main>` in place.
//!
//! Access (see [`UiAccess`]): on a loopback listener pages and actions are open unless the
//! operator set `GUNSYNC_UI_TOKEN`; with a token, actions (and, off loopback, every page) need
//! the token's cookie, set once by `/ui/login`. Every POST carries this process's CSRF token.

mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use sha2::{Digest, Sha256};

use super::HttpState;
use crate::ledger::{Bucket, JobFilter, JobId, JobKind, JobState, Ledger, LedgerError, Requeue};
use crate::secret::Secret;
use crate::timestamp::Timestamp;

/// The cookie that carries the dashboard token's digest.
const COOKIE: &str = "gunsync_ui";
/// Jobs per page of `/ui/jobs`.
pub const PAGE_SIZE: u32 = 50;
/// Dead jobs `/ui/dead` groups (the newest ones).
pub const DEAD_SCAN: u32 = 10_000;
/// How often pages refresh themselves.
const REFRESH_MS: u32 = 5_000;

/// Who may see the dashboard and act through it.
#[derive(Clone, Debug)]
pub struct UiAccess {
    /// SHA-256 of `GUNSYNC_UI_TOKEN`, hex (the cookie's value).
    token_digest: Option<String>,
    loopback: bool,
    /// This process's CSRF token: every form carries it, every POST must.
    csrf: String,
    /// Where the dashboard listens (shown in the header).
    listen: Option<SocketAddr>,
}

impl UiAccess {
    /// Access for a listener on `listen`, with the operator's token if one was set.
    pub fn new(listen: Option<SocketAddr>, token: Option<&Secret>) -> Self {
        let token = token.map(Secret::expose).filter(|t| !t.is_empty());
        UiAccess {
            token_digest: token.map(digest),
            loopback: listen.is_none_or(|a| a.ip().is_loopback()),
            csrf: hex(&rand::random::<[u8; 32]>()),
            listen,
        }
    }

    /// Whether the request carries the token's cookie.
    fn signed_in(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return false;
        };
        cookies(headers).get(COOKIE).is_some_and(|v| v == expected)
    }

    /// `Ok` when the request may read pages.
    fn may_read(&self, headers: &HeaderMap) -> Result<(), PageError> {
        match (&self.token_digest, self.loopback) {
            (_, true) => Ok(()),
            (Some(_), false) if self.signed_in(headers) => Ok(()),
            (Some(_), false) => Err(PageError::SignIn),
            (None, false) => Err(forbidden(
                "this dashboard listens on a non-loopback address: set GUNSYNC_UI_TOKEN to open it",
            )),
        }
    }

    /// `Ok` when the request may change the ledger.
    fn may_act(&self, headers: &HeaderMap, form: &Form) -> Result<(), PageError> {
        if form.one("csrf") != Some(self.csrf.as_str()) {
            return Err(forbidden(
                "the form's CSRF token is missing or stale (the daemon restarted?): reload the \
                 page and try again",
            ));
        }
        if !same_origin(headers) {
            return Err(forbidden("cross-origin request refused"));
        }
        match (&self.token_digest, self.loopback) {
            (Some(_), _) if self.signed_in(headers) => Ok(()),
            (Some(_), _) => Err(forbidden(
                "actions need the dashboard token: sign in at /ui/login",
            )),
            (None, true) => Ok(()),
            (None, false) => Err(forbidden(
                "actions on a non-loopback listener need GUNSYNC_UI_TOKEN",
            )),
        }
    }
}

/// Why a page or an action was not served: sent to sign in, or an error page with its status
/// (403 refused, 400 bad input, 404, 500 for a ledger error).
enum PageError {
    SignIn,
    Status(StatusCode, String),
}

impl From<LedgerError> for PageError {
    fn from(e: LedgerError) -> Self {
        PageError::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ledger error: {e}"),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/ui/login").into_response(),
            PageError::Status(status, why) => {
                (status, Html(pages::refusal(&why).into_string())).into_response()
            }
        }
    }
}

fn bad_request(what: impl Into<String>) -> PageError {
    PageError::Status(StatusCode::BAD_REQUEST, what.into())
}

fn forbidden(why: &str) -> PageError {
    PageError::Status(StatusCode::FORBIDDEN, why.to_owned())
}

/// The dashboard's routes (mounted on the daemon's listener and by `gunsync ui`).
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/ui", get(overview))
        .route("/ui/", get(overview))
        .route("/ui/jobs", get(jobs))
        .route("/ui/jobs/{id}", get(job))
        .route("/ui/dead", get(dead))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/actions", axum::routing::post(action))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("app.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("app.js"),
    )
        .into_response()
}

/// Which page, for the header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Overview,
    Jobs,
    Dead,
    None,
}

/// Renders `body` as a whole page, or only `<main>`'s content for the refresh script.
fn respond(
    state: &HttpState,
    headers: &HeaderMap,
    nav: Nav,
    title: &str,
    body: Markup,
) -> Response {
    let html = if headers.contains_key("x-gunsync-fragment") {
        body
    } else {
        pages::layout(
            title,
            nav,
            &state.ui.csrf,
            state.ui.listen,
            Some(REFRESH_MS),
            body,
        )
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(html.into_string()),
    )
        .into_response()
}

/// The overview's throughput charts: how far back, how wide a bar, and the caption.
const CHARTS: [(Duration, Bucket, &str); 2] = [
    (
        Duration::from_secs(3600),
        Bucket::Minute,
        "last hour, attempts per minute",
    ),
    (
        Duration::from_secs(24 * 3600),
        Bucket::Hour,
        "last 24 hours, attempts per hour",
    ),
];

async fn overview(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    state.ui.may_read(&headers)?;
    let page = overview_page(&state).await?;
    Ok(respond(&state, &headers, Nav::Overview, "Overview", page))
}

async fn overview_page(state: &HttpState) -> Result<Markup, PageError> {
    let now = Timestamp::now();
    let stats = state.ledger.stats(now, 10).await?;
    let mut charts = Vec::with_capacity(CHARTS.len());
    for (window, bucket, label) in CHARTS {
        let buckets = state.ledger.throughput(now.minus(window), bucket).await?;
        charts.push(pages::Chart {
            window,
            bucket,
            label,
            buckets,
        });
    }
    let health = state.ledger.health();
    Ok(pages::overview(&pages::Overview {
        now,
        stats: &stats,
        charts: &charts,
        health: &health,
    }))
}

/// The query string of `/ui/jobs`, validated.
#[derive(Default)]
struct JobsQuery {
    state: Option<JobState>,
    kind: Option<JobKind>,
    key: Option<String>,
    before: Option<i64>,
}

impl JobsQuery {
    fn parse(query: Option<&str>) -> Result<Self, PageError> {
        let form = Form::parse(query.unwrap_or_default().as_bytes());
        let Filter { state, kind, key } = form.filter()?;
        Ok(JobsQuery {
            state,
            kind,
            key,
            before: form
                .text("before")
                .map(|b| {
                    b.parse::<i64>()
                        .map_err(|_| bad_request(format!("before: not a job id: {b:?}")))
                })
                .transpose()?,
        })
    }
}

async fn jobs(
    State(state): State<HttpState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    state.ui.may_read(&headers)?;
    let q = JobsQuery::parse(query.as_deref())?;
    let filter = JobFilter {
        state: q.state,
        kind: q.kind,
        key: q.key.clone(),
        before: q.before,
        limit: PAGE_SIZE,
    };
    let rows = state.ledger.list_jobs(&filter).await?;
    let page = pages::jobs(&pages::Jobs {
        now: Timestamp::now(),
        state: q.state,
        kind: q.kind,
        key: q.key.as_deref(),
        before: q.before,
        rows: &rows,
        full: rows.len() == PAGE_SIZE as usize,
        csrf: &state.ui.csrf,
        back: &format!(
            "/ui/jobs{}",
            query.map(|q| format!("?{q}")).unwrap_or_default()
        ),
    });
    Ok(respond(&state, &headers, Nav::Jobs, "Jobs", page))
}

async fn job(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    state.ui.may_read(&headers)?;
    let id: JobId = id.parse().map_err(|e: String| bad_request(e))?;
    let found = state.ledger.get_job(id).await?;
    let Some((job, attempts)) = found else {
        return Err(PageError::Status(
            StatusCode::NOT_FOUND,
            format!("job {id} not found"),
        ));
    };
    let now = Timestamp::now();
    let explanation = crate::cli::show::explain(&job, &attempts, now);
    let page = pages::job(&job, &attempts, &explanation, now, &state.ui.csrf);
    Ok(respond(
        &state,
        &headers,
        Nav::None,
        &format!("Job {id}"),
        page,
    ))
}

async fn dead(State(state): State<HttpState>, headers: HeaderMap) -> Result<Response, PageError> {
    state.ui.may_read(&headers)?;
    let groups = state.ledger.dead_reasons(DEAD_SCAN).await?;
    let page = pages::dead(&groups, DEAD_SCAN, Timestamp::now(), &state.ui.csrf);
    Ok(respond(&state, &headers, Nav::Dead, "Dead jobs", page))
}

async fn login_form(State(state): State<HttpState>) -> Response {
    let page = pages::login(state.ui.token_digest.is_some(), &state.ui.csrf, None);
    still_page(&state, "Sign in", page).into_response()
}

/// A whole page that does not refresh itself (sign-in, an action's result).
fn still_page(state: &HttpState, title: &str, body: Markup) -> Html<String> {
    let page = pages::layout(
        title,
        Nav::None,
        &state.ui.csrf,
        state.ui.listen,
        None,
        body,
    );
    Html(page.into_string())
}

async fn login(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    let page = |error: &str| {
        let page = pages::login(state.ui.token_digest.is_some(), &state.ui.csrf, Some(error));
        still_page(&state, "Sign in", page)
    };
    if form.one("csrf") != Some(state.ui.csrf.as_str()) || !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, page("the form expired: try again")).into_response();
    }
    let Some(expected) = &state.ui.token_digest else {
        return (
            StatusCode::BAD_REQUEST,
            page("no GUNSYNC_UI_TOKEN is set on this daemon"),
        )
            .into_response();
    };
    let given = digest(form.one("token").unwrap_or_default());
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return (StatusCode::FORBIDDEN, page("wrong token")).into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                format!("{COOKIE}={expected}; Path=/ui; HttpOnly; SameSite=Strict"),
            ),
            (header::LOCATION, "/ui".to_owned()),
        ],
    )
        .into_response()
}

/// What an action did, in words, for the result page.
pub struct ActionReport {
    pub title: String,
    pub lines: Vec<String>,
}

async fn action(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Html<String>, PageError> {
    let form = Form::parse(&body);
    state.ui.may_act(&headers, &form)?;
    let back = form
        .one("back")
        .filter(|b| b.starts_with("/ui") && !b.starts_with("//"))
        .unwrap_or("/ui");
    let report = run_action(&state, &form).await?;
    let page = pages::action_result(&report, back);
    Ok(still_page(&state, &report.title, page))
}

async fn run_action(state: &HttpState, form: &Form) -> Result<ActionReport, PageError> {
    let now = Timestamp::now();
    let Filter {
        state: state_filter,
        kind,
        key,
    } = form.filter()?;
    let ids = form
        .all("id")
        .map(|id| id.parse::<JobId>().map_err(bad_request))
        .collect::<Result<Vec<_>, _>>()?;
    // What the action is about: chosen ids, a listing's filter (`requeue-all`, `cancel-all`),
    // or a dead reason.
    let (action, scope) = match form.one("action") {
        Some(a) => match a.strip_suffix("-all") {
            Some(a) => (a, "filter"),
            None => (a, form.one("scope").unwrap_or("ids")),
        },
        None => return Err(bad_request("no action given")),
    };
    let (ids, state_filter, kind, key) = match scope {
        "ids" if ids.is_empty() => return Err(bad_request("no job selected")),
        "ids" => (ids, None, None, None),
        "filter" if state_filter.is_none() && kind.is_none() && key.is_none() => {
            return Err(bad_request(
                "acting on every job needs at least one filter (state, kind or key)",
            ));
        }
        "filter" => (Vec::new(), state_filter, kind, key),
        "reason" => {
            let kind = kind.ok_or_else(|| bad_request("a dead reason needs its kind"))?;
            let reason = if form.one("reason_null").is_some() {
                None
            } else {
                Some(form.one("reason").unwrap_or_default())
            };
            let ids = state.ledger.dead_with_reason(kind, reason).await?;
            if ids.is_empty() {
                return Ok(ActionReport {
                    title: "Nothing to requeue".into(),
                    lines: vec!["no dead job has this reason any more".into()],
                });
            }
            (ids, Some(JobState::Dead), None, None)
        }
        other => return Err(bad_request(format!("unknown scope {other:?}"))),
    };
    match action {
        "requeue" => {
            let request = Requeue {
                ids,
                state: state_filter,
                kind,
                key,
                reset_attempts: true,
                dry_run: false,
            };
            let report = state.ledger.requeue(&request, now, &mut |_, _| {}).await?;
            if let (false, Some(wake)) = (report.requeued.is_empty(), &state.wake) {
                wake.notify_one();
            }
            let mut lines = vec![format!(
                "{} of {} matching job(s) moved to pending with their attempts reset",
                report.requeued.len(),
                report.matched
            )];
            if !report.requeued.is_empty() {
                lines.push(format!("requeued: {}", id_list(&report.requeued)));
            }
            for (n, why) in [
                (
                    report.skipped_running,
                    "running (a worker holds them; never touched)",
                ),
                (report.skipped_pending, "already pending"),
                (
                    report.skipped_duplicate,
                    "skipped: their key already has an active job",
                ),
            ] {
                if n > 0 {
                    lines.push(format!("{n} {why}"));
                }
            }
            if !report.missing.is_empty() {
                lines.push(format!("not found: {}", id_list(&report.missing)));
            }
            Ok(ActionReport {
                title: "Requeued".into(),
                lines,
            })
        }
        "cancel" => {
            let ids = if ids.is_empty() {
                let filter = JobFilter {
                    state: state_filter,
                    kind,
                    key,
                    before: None,
                    limit: u32::MAX,
                };
                let jobs = state.ledger.list_jobs(&filter).await?;
                jobs.iter()
                    .filter(|j| j.state == "pending" || j.state == "retrying")
                    .map(|j| JobId(j.id))
                    .collect()
            } else {
                ids
            };
            let report = state.ledger.cancel(&ids, now).await?;
            let mut lines = vec![format!("{} job(s) cancelled", report.cancelled.len())];
            if !report.cancelled.is_empty() {
                lines.push(format!("cancelled: {}", id_list(&report.cancelled)));
            }
            for (id, s) in &report.not_cancellable {
                lines.push(format!(
                    "job {id} is {} (only pending and retrying jobs can be cancelled)",
                    s.as_str()
                ));
            }
            if !report.missing.is_empty() {
                lines.push(format!("not found: {}", id_list(&report.missing)));
            }
            Ok(ActionReport {
                title: "Cancelled".into(),
                lines,
            })
        }
        other => Err(bad_request(format!("unknown action {other:?}"))),
    }
}

/// Each dashboard page (`/ui/jobs/{job}` for the job page) requested `repeat` times through the
/// router, as a browser asks for it: `(path, median milliseconds, bytes)`, for `bench scale`.
pub async fn time_pages(ledger: &Ledger, job: JobId, repeat: usize) -> Vec<(String, f64, usize)> {
    use tower::ServiceExt;
    let state = HttpState::new(
        ledger.clone(),
        std::sync::Arc::new(crate::worker::Breakers::new()),
        std::sync::Arc::new(super::MemoryTracker::default()),
        UiAccess::new(None, None),
    );
    let app = super::router(state);
    let mut timings = Vec::new();
    for path in [
        "/ui".to_owned(),
        "/ui/jobs".to_owned(),
        "/ui/jobs?state=dead&kind=delete".to_owned(),
        "/ui/jobs?state=done".to_owned(),
        format!("/ui/jobs/{job}"),
        "/ui/dead".to_owned(),
    ] {
        let mut times = Vec::with_capacity(repeat);
        let mut bytes = 0;
        for _ in 0..repeat.max(1) {
            let request = axum::http::Request::get(&path)
                .body(axum::body::Body::empty())
                .expect("a valid request");
            let started = std::time::Instant::now();
            let response = app.clone().oneshot(request).await.expect("infallible");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        timings.push((path, times[times.len() / 2], bytes));
    }
    timings
}

fn id_list(ids: &[JobId]) -> String {
    crate::cli::output::id_list(ids, 20)
}

/// What a listing or an action is filtered by (`None` = any).
struct Filter {
    state: Option<JobState>,
    kind: Option<JobKind>,
    key: Option<String>,
}

/// An `application/x-www-form-urlencoded` body or query string (repeated names kept).
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(bytes: &[u8]) -> Self {
        Form(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A value with its whitespace trimmed; `None` when absent or blank.
    fn text(&self, name: &str) -> Option<&str> {
        self.one(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The `state`, `kind` and `key` a listing or an action is filtered by (blank = any).
    fn filter(&self) -> Result<Filter, PageError> {
        let state = self.text("state").map(str::parse).transpose();
        let kind = self.text("kind").map(str::parse).transpose();
        Ok(Filter {
            state: state.map_err(|e| bad_request(format!("{e}")))?,
            kind: kind.map_err(|e| bad_request(format!("{e}")))?,
            key: self.text("key").map(str::to_owned),
        })
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A browser's POST from another site carries its `Origin`: refuse it unless it is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn form(access: &UiAccess, extra: &str) -> Form {
        Form::parse(format!("csrf={}&{extra}", access.csrf).as_bytes())
    }

    #[test]
    fn who_may_read_and_act() {
        let loopback: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let public: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let token = Secret::new("s3cret");
        let cookie = format!("{COOKIE}={}", digest("s3cret"));
        let signed = headers(&[("cookie", cookie.as_str())]);
        let anonymous = HeaderMap::new();
        // (listen, token set, signed in) → (may read, may act)
        let table = [
            (loopback, false, false, true, true),
            (loopback, true, false, true, false),
            (loopback, true, true, true, true),
            (public, false, false, false, false),
            (public, true, false, false, false),
            (public, true, true, true, true),
        ];
        for (listen, with_token, signed_in, read, act) in table {
            let access = UiAccess::new(Some(listen), with_token.then_some(&token));
            let h = if signed_in { &signed } else { &anonymous };
            let f = form(&access, "action=requeue");
            assert_eq!(
                access.may_read(h).is_ok(),
                read,
                "{listen} {with_token} {signed_in}"
            );
            assert_eq!(
                access.may_act(h, &f).is_ok(),
                act,
                "{listen} {with_token} {signed_in}"
            );
        }
    }

    #[test]
    fn a_post_without_the_csrf_token_or_from_another_origin_is_refused() {
        let access = UiAccess::new(Some("127.0.0.1:1".parse().unwrap()), None);
        let no_csrf = Form::parse(b"action=requeue&id=1");
        assert!(access.may_act(&HeaderMap::new(), &no_csrf).is_err());
        let ok = form(&access, "id=1");
        let foreign = headers(&[("host", "127.0.0.1:1"), ("origin", "http://evil.example")]);
        assert!(access.may_act(&foreign, &ok).is_err());
        let same = headers(&[("host", "127.0.0.1:1"), ("origin", "http://127.0.0.1:1")]);
        assert!(access.may_act(&same, &ok).is_ok());
    }

    #[test]
    fn forms_keep_repeated_names() {
        let f = Form::parse(b"id=1&id=22&key=a%20b&x=");
        assert_eq!(f.all("id").collect::<Vec<_>>(), ["1", "22"]);
        assert_eq!(f.one("key"), Some("a b"));
        assert_eq!(f.one("missing"), None);
    }
}
