//! The dashboard's HTML (maud: templates checked by the compiler, values escaped by default).
//! Pure functions of what the handlers read, so a page never queries the ledger itself.

use std::net::SocketAddr;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{ActionReport, Nav};
use crate::cli::output::{clip, precise, relative};
use crate::cli::show::Explanation;
use crate::ledger::{
    AttemptView, Bucket, DeadReason, JobKind, JobState, JobView, LedgerHealth, Stats, Throughput,
};
use crate::timestamp::Timestamp;

/// The page around `body`: header, navigation, the refresh script.
pub(super) fn layout(
    title: &str,
    nav: Nav,
    csrf: &str,
    listen: Option<SocketAddr>,
    refresh_ms: Option<u32>,
    body: Markup,
) -> Markup {
    let link = |href: &str, label: &str, this: Nav| {
        html! { a href=(href) class=[(nav == this).then_some("on")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · gunsync" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body {
                header {
                    span.brand { "gunsync" }
                    (link("/ui", "Overview", Nav::Overview))
                    (link("/ui/jobs", "Jobs", Nav::Jobs))
                    (link("/ui/dead", "Dead jobs", Nav::Dead))
                    @if let Some(addr) = listen {
                        span.where { "ledger dashboard on " (addr) }
                    }
                }
                main data-refresh=[refresh_ms] { (body) }
                script src="/ui/assets/app.js" {}
            }
        }
    }
}

/// A refusal or an error, as a page body.
pub(super) fn refusal(why: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "gunsync" } link rel="stylesheet" href="/ui/assets/app.css"; }
            body { main { h1 { "Not allowed" } p.refusal id="refusal" { (why) } p { a href="/ui" { "Back to the overview" } } } }
        }
    }
}

fn state_badge(state: &str) -> Markup {
    html! { span class={ "state " (state) } { (state) } }
}

fn at(t: Timestamp, now: Timestamp) -> Markup {
    html! { span title=(t.to_string()) { (relative(t, now)) } }
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

pub(super) struct Overview<'a> {
    pub now: Timestamp,
    pub stats: &'a Stats,
    pub charts: &'a [Chart],
    pub health: &'a LedgerHealth,
}

pub(super) fn overview(o: &Overview<'_>) -> Markup {
    let s = o.stats;
    let count = |state: &str| s.states.get(state).copied().unwrap_or(0);
    html! {
        h1 { "Overview" }
        div.cards {
            div.card #runnable { div.n { (s.runnable) } div.l { "runnable now" } }
            div.card { div.n { (s.oldest_runnable_age_s.map_or("-".into(), |a| precise(std::time::Duration::from_secs_f64(a)))) } div.l { "oldest runnable job waiting" } }
            div.card { div.n { (count("running")) } div.l { "running" } }
            div.card { div.n { (count("retrying")) } div.l { "retrying (backing off)" } }
            div.card #dead-count { div.n { a href="/ui/dead" { (count("dead")) } } div.l { "dead" } }
            div.card { div.n { (s.expired_leases) } div.l { "expired leases" } }
        }
        h2 { "Health" }
        ul #health {
            li {
                "Ledger: "
                @match (&o.health.corrupt, &o.health.write_error) {
                    (Some(c), _) => span.bad { "damaged: " (c) },
                    (None, Some(w)) => span.bad { "writes failing since " (w.since) ": " (w.error) },
                    (None, None) => span.ok { "reads and writes" },
                }
            }
            @if s.circuits.is_empty() {
                li { "Circuits: " span.ok { "all closed" } " (Elasticsearch answering)" }
            }
            @for c in &s.circuits {
                li { span.bad { (c.system) " circuit open" } " since " (at(c.since, o.now)) ": " (c.reason)
                     "; next probe " (at(c.next_probe_at, o.now)) }
            }
        }
        h2 { "Jobs by kind and state" }
        table #counts {
            thead { tr { th { "kind" } @for st in JobState::ALL { th.num { a href={ "/ui/jobs?state=" (st.as_str()) } { (st.as_str()) } } } th.num { "total" } } }
            tbody {
                @for kind in JobKind::ALL {
                    @let row = s.kinds.get(kind.as_str());
                    tr data-kind=(kind.as_str()) {
                        td { (kind.as_str()) }
                        @for st in JobState::ALL {
                            @let n = row.and_then(|r| r.get(st.as_str())).copied().unwrap_or(0);
                            td.num data-state=(st.as_str()) {
                                @if n > 0 { a href={ "/ui/jobs?kind=" (kind.as_str()) "&state=" (st.as_str()) } { (n) } } @else { span.muted { "0" } }
                            }
                        }
                        td.num { (row.map_or(0, |r| r.values().sum::<i64>())) }
                    }
                }
                tr { td { b { "all" } } @for st in JobState::ALL { td.num { b { (count(st.as_str())) } } } td.num { b { (s.total) } } }
            }
        }
        h2 { "Throughput" }
        div.legend { span { i style="background:var(--done)" {} "done" } span { i style="background:var(--retry)" {} "failed, will retry" } span { i style="background:var(--dead)" {} "dead" } }
        @for c in o.charts {
            div.chart style="margin-bottom:8px" { (chart(c, o.now)) }
        }
        h2 { "Last sync cycles" }
        @if s.last_cycles.is_empty() {
            p.muted { "no sync cycle yet" }
        } @else {
            table #cycles {
                thead { tr { th { "#" } th { "peer" } th { "started" } th.num { "took" } th.num { "records seen" } th.num { "discover enqueued" } th.num { "deletions seen" } th.num { "delete enqueued" } th.num { "rejected" } th { "error" } } }
                tbody {
                    @for c in &s.last_cycles {
                        tr {
                            td.num { (c.id) }
                            td.mono { (c.peer) }
                            td { (at(c.started_at, o.now)) }
                            td.num { (c.finished_at.map_or("running".into(), |f| precise(f.since(c.started_at)))) }
                            td.num { (c.records_seen) }
                            td.num { (c.discover_enqueued) }
                            td.num { (c.deletions_seen) }
                            td.num { (c.delete_enqueued) }
                            td.num { (c.rejected) }
                            td.err { (c.error.as_deref().map(|e| clip(e, 160)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
        p.muted { "updated " (o.now) " · refreshes every 5 s" }
    }
}

/// One throughput chart: the attempts of the `window` before now, counted per `bucket`.
pub(super) struct Chart {
    pub window: std::time::Duration,
    pub bucket: Bucket,
    pub label: &'static str,
    pub buckets: Vec<Throughput>,
}

/// Stacked bars of done / retry / dead per bucket, oldest left, drawn as inline SVG.
fn chart(c: &Chart, now: Timestamp) -> Markup {
    use std::collections::HashMap;
    let (bucket, label) = (c.bucket, c.label);
    let n = (c.window.as_secs() / bucket.width().as_secs()).max(1);
    let by_bucket: HashMap<&str, &Throughput> =
        c.buckets.iter().map(|b| (b.bucket.as_str(), b)).collect();
    // Oldest first: bucket i starts (n - 1 - i) steps before now's bucket.
    let slots: Vec<(String, [i64; 3])> = (0..n)
        .map(|i| {
            let name = bucket.name(now.minus(bucket.width() * (n - 1 - i) as u32));
            let counts = by_bucket
                .get(name.as_str())
                .map_or([0; 3], |b| [b.done, b.retry, b.dead]);
            (name, counts)
        })
        .collect();
    let max = slots
        .iter()
        .map(|(_, c)| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let total: [i64; 3] = slots.iter().fold([0; 3], |acc, (_, c)| {
        [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2]]
    });
    let (w, h, pad) = (960.0_f64, 120.0_f64, 30.0_f64);
    let bar = (w - pad) / n as f64;
    let colors = ["var(--done)", "var(--retry)", "var(--dead)"];
    let mut rects = String::new();
    for (i, (name, counts)) in slots.iter().enumerate() {
        let x = pad + i as f64 * bar;
        let mut y = h;
        for (k, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let height = c as f64 / max as f64 * (h - 10.0);
            y -= height;
            rects.push_str(&format!(
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}" fill="{}"><title>{name}: {c} {}</title></rect>"#,
                (bar - 1.0).max(1.0),
                colors[k],
                ["done", "retry", "dead"][k],
            ));
        }
    }
    html! {
        div { b { (label) } span.muted { " · done " (total[0]) " · retry " (total[1]) " · dead " (total[2]) } }
        svg viewBox={ "0 0 " (w) " " (h + 14.0) } width="100%" height="134" role="img" aria-label=(label) {
            line x1=(pad) y1=(h) x2=(w) y2=(h) stroke="#d8dee4" {}
            text x="0" y="12" font-size="10" fill="#5f6b76" { (max) }
            text x="0" y=(h) font-size="10" fill="#5f6b76" { "0" }
            (PreEscaped(rects))
            text x=(pad) y=(h + 12.0) font-size="10" fill="#5f6b76" { (slots[0].0) }
            text x=(w) y=(h + 12.0) font-size="10" fill="#5f6b76" text-anchor="end" { "now" }
        }
    }
}

pub(super) struct Jobs<'a> {
    pub now: Timestamp,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub key: Option<&'a str>,
    pub before: Option<i64>,
    pub rows: &'a [JobView],
    /// The page is full: an older page may follow.
    pub full: bool,
    pub csrf: &'a str,
    pub back: &'a str,
}

pub(super) fn jobs(j: &Jobs<'_>) -> Markup {
    let filter_query = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = j.state {
            q.append_pair("state", s.as_str());
        }
        if let Some(k) = j.kind {
            q.append_pair("kind", k.as_str());
        }
        if let Some(k) = j.key {
            q.append_pair("key", k);
        }
        q.finish()
    };
    let filtered = j.state.is_some() || j.kind.is_some() || j.key.is_some();
    html! {
        h1 { "Jobs" }
        form.filters method="get" action="/ui/jobs" {
            label { "state" select name="state" {
                option value="" { "any" }
                @for s in JobState::ALL { option value=(s.as_str()) selected[j.state == Some(s)] { (s.as_str()) } }
            } }
            label { "kind" select name="kind" {
                option value="" { "any" }
                @for k in JobKind::ALL { option value=(k.as_str()) selected[j.kind == Some(k)] { (k.as_str()) } }
            } }
            label { "key (a DID)" input name="key" size="48" value=(j.key.unwrap_or_default()); }
            button.primary type="submit" { "Filter" }
            @if filtered { a href="/ui/jobs" { "clear" } }
        }
        form #job-actions method="post" action="/ui/actions" {
            (csrf_field(j.csrf))
            input type="hidden" name="back" value=(j.back);
            input type="hidden" name="state" value=(j.state.map(JobState::as_str).unwrap_or_default());
            input type="hidden" name="kind" value=(j.kind.map(JobKind::as_str).unwrap_or_default());
            input type="hidden" name="key" value=(j.key.unwrap_or_default());
            div.actions {
                button type="submit" name="action" value="requeue" #requeue-selected { "Requeue selected (reset attempts)" }
                button.danger type="submit" name="action" value="cancel" #cancel-selected { "Cancel selected" }
                @if filtered {
                    span.muted { "or every job of this filter:" }
                    button type="submit" name="action" value="requeue-all" #requeue-filter { "Requeue all matching" }
                    button.danger type="submit" name="action" value="cancel-all" #cancel-filter { "Cancel all matching" }
                }
            }
            @if j.rows.is_empty() {
                p.muted #no-jobs { "no job matches" }
            } @else {
                table #jobs {
                    thead { tr { th {} th.num { "id" } th { "kind" } th { "key" } th { "state" } th.num { "attempts" } th { "run at" } th { "updated" } th { "last error" } } }
                    tbody {
                        @for job in j.rows {
                            tr data-id=(job.id) data-state=(job.state) {
                                td { input type="checkbox" name="id" value=(job.id) aria-label={ "select job " (job.id) }; }
                                td.num { a href={ "/ui/jobs/" (job.id) } { (job.id) } }
                                td { (job.kind) }
                                td.mono { (clip(&job.key, 64)) }
                                td { (state_badge(&job.state)) }
                                td.num { (job.attempts) "/" (job.max_attempts) }
                                td { (at(job.run_at, j.now)) }
                                td { (at(job.updated_at, j.now)) }
                                td.err { (job.last_error.as_deref().map(|e| clip(e, 120)).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
        div.pager {
            @if j.before.is_some() {
                a href={ "/ui/jobs?" (filter_query) } { "← newest" }
            }
            @if let (true, Some(last)) = (j.full, j.rows.last()) {
                a #older href={ "/ui/jobs?" (filter_query) @if !filter_query.is_empty() { "&" } "before=" (last.id) } { "older →" }
            }
            span.muted { (j.rows.len()) " job(s) on this page, newest first" }
        }
    }
}

pub(super) fn job(
    job: &JobView,
    attempts: &[AttemptView],
    explanation: &Explanation,
    now: Timestamp,
    csrf: &str,
) -> Markup {
    let state: Option<JobState> = job.state.parse().ok();
    let back = format!("/ui/jobs/{}", job.id);
    html! {
        h1 { "Job " (job.id) " " (state_badge(&job.state)) }
        div.why #why { (explanation.why) }
        @if let Some(next) = explanation.next_run_at { p { "Next run: " (at(next, now)) " (" (next) ")" } }
        div.actions {
            @if state.is_some_and(JobState::is_requeueable) {
                form.inline method="post" action="/ui/actions" {
                    (csrf_field(csrf))
                    input type="hidden" name="back" value=(back);
                    input type="hidden" name="id" value=(job.id);
                    button.primary #requeue type="submit" name="action" value="requeue" { "Requeue (reset attempts)" }
                }
            }
            @if matches!(state, Some(JobState::Pending | JobState::Retrying)) {
                form.inline method="post" action="/ui/actions" {
                    (csrf_field(csrf))
                    input type="hidden" name="back" value=(back);
                    input type="hidden" name="id" value=(job.id);
                    button.danger #cancel type="submit" name="action" value="cancel" { "Cancel" }
                }
            }
        }
        table #job {
            tbody {
                tr { th { "kind" } td { (job.kind) } }
                tr { th { "key" } td.mono { (job.key) } }
                tr { th { "attempts" } td { (job.attempts) " of " (job.max_attempts) } }
                tr { th { "priority" } td { (job.priority) } }
                tr { th { "run at" } td { (job.run_at) } }
                @if let Some(exp) = job.lease_expires_at { tr { th { "lease expires" } td { (exp) " (" (relative(exp, now)) ") on " (job.leased_by.as_deref().unwrap_or("-")) } } }
                tr { th { "created" } td { (job.created_at) } }
                tr { th { "updated" } td { (job.updated_at) } }
                @if let Some(p) = job.processed_at { tr { th { "processed" } td { (p) } } }
                @if let Some(r) = job.revision { tr { th { "revision" } td { (r) } } }
                @if let Some(e) = &job.last_error { tr { th { "last error" } td.err { (e) } } }
            }
        }
        h2 { "Attempts" }
        @if attempts.is_empty() {
            p.muted { "no attempt yet" }
        } @else {
            table #attempts {
                thead { tr { th.num { "#" } th { "started" } th.num { "took" } th { "outcome" } th.num { "HTTP" } th { "error" } th { "worker" } } }
                tbody {
                    @for a in attempts {
                        tr data-outcome=(a.outcome) {
                            td.num { (a.attempt) }
                            td { (a.started_at) }
                            td.num { (a.finished_at.map_or("running".into(), |f| precise(f.since(a.started_at)))) }
                            td { (a.outcome) }
                            td.num { (a.http_status.map(|s| s.to_string()).unwrap_or_default()) }
                            td.err { (a.error.as_deref().unwrap_or_default()) }
                            td.mono { (a.leased_by.as_deref().unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn dead(groups: &[DeadReason], scan: u32, now: Timestamp, csrf: &str) -> Markup {
    let jobs: i64 = groups.iter().map(|g| g.jobs).sum();
    html! {
        h1 { "Dead jobs by reason" }
        p.muted {
            (jobs) " dead job(s) in " (groups.len()) " group(s)"
            @if jobs >= i64::from(scan) { " (the newest " (scan) " dead jobs are grouped)" }
        }
        @if groups.is_empty() {
            p #no-dead { "No dead job. " a href="/ui/jobs?state=dead" { "Dead jobs" } " appear here grouped by their last error." }
        } @else {
            table #dead {
                thead { tr { th { "kind" } th { "reason (last error)" } th.num { "jobs" } th { "newest" } th {} } }
                tbody {
                    @for g in groups {
                        tr {
                            td { (g.kind) }
                            td.err { (g.reason.as_deref().unwrap_or("(no error recorded)")) }
                            td.num { a href={ "/ui/jobs?state=dead&kind=" (g.kind) } { (g.jobs) } }
                            td { a href={ "/ui/jobs/" (g.newest_id) } { "job " (g.newest_id) } " " @if let Some(t) = g.newest_at { (at(t, now)) } }
                            td {
                                form.inline method="post" action="/ui/actions" {
                                    (csrf_field(csrf))
                                    input type="hidden" name="back" value="/ui/dead";
                                    input type="hidden" name="scope" value="reason";
                                    input type="hidden" name="kind" value=(g.kind);
                                    @match &g.reason {
                                        Some(r) => input type="hidden" name="reason" value=(r);,
                                        None => input type="hidden" name="reason_null" value="1";,
                                    }
                                    button.requeue-reason type="submit" name="action" value="requeue" { "Requeue all " (g.jobs) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn login(token_set: bool, csrf: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in to the dashboard" }
        @if let Some(e) = error { p.refusal #login-error { (e) } }
        @if token_set {
            p { "Give the token set in " code { "GUNSYNC_UI_TOKEN" } " once; the browser keeps it in an HttpOnly cookie." }
            form method="post" action="/ui/login" {
                (csrf_field(csrf))
                input type="password" name="token" autocomplete="current-password" autofocus;
                " "
                button.primary type="submit" { "Sign in" }
            }
        } @else {
            p { "No token is set: on a loopback address the dashboard needs none. Set "
                code { "GUNSYNC_UI_TOKEN" } " to require one." }
        }
    }
}

pub(super) fn action_result(report: &ActionReport, back: &str) -> Markup {
    html! {
        h1 { (report.title) }
        div.notice #result { @for line in &report.lines { div { (line) } } }
        p { a #back href=(back) { "← back" } }
    }
}
