//! What the operator commands print: aligned tables and relative times for people, JSON for
//! scripts, and a progress bar for bulk work. Results go to stdout; the progress bar goes to
//! stderr and only when stderr is a terminal, so pipes and logs never see it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::timestamp::Timestamp;

/// stdout was closed by its reader (`gunsync jobs | head -1`): the command stops, quietly and
/// successfully, as a pipeline expects.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed by its reader")]
pub struct StdoutClosed;

/// Writes to stdout; a closed pipe becomes [`StdoutClosed`] instead of a panic.
pub fn write_out(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// `print!` that returns an error instead of panicking when stdout is gone.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::output::write_out(format_args!($($arg)*)) };
}

/// `println!` that returns an error instead of panicking when stdout is gone.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

/// A table whose columns are padded to the widest cell; the last column is never padded, so
/// long keys and errors do not push trailing spaces.
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(columns) {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < columns {
                    line.push_str(&" ".repeat(widths[i] - width(cell)));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// `t` relative to `now`: "in 4m", "3h ago", "now".
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    if t > now {
        let ahead = t.since(now);
        if ahead < Duration::from_secs(1) {
            "now".into()
        } else {
            format!("in {}", brief(ahead))
        }
    } else {
        let behind = now.since(t);
        if behind < Duration::from_secs(1) {
            "now".into()
        } else {
            format!("{} ago", brief(behind))
        }
    }
}

/// A coarse duration for relative times: "45s", "4m", "3h", "2d".
pub fn brief(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A precise duration for attempt run times: "350ms", "2.4s", "4m 10s", "3h 5m".
pub fn precise(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    }
}

/// `text` cut to `max` characters with an ellipsis, on one line.
pub fn clip(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if width(&one_line) > max => format!("{}…", &one_line[..cut]),
        _ => one_line,
    }
}

/// "1 job" / "3 jobs".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Ids as "4, 5, 6", listing at most `max` and saying how many more there are.
/// "job 7 not found" / "jobs 7, 8 not found": the error for ids that do not exist.
pub fn not_found(ids: &[crate::ledger::JobId]) -> anyhow::Error {
    match ids {
        [one] => anyhow::anyhow!("job {one} not found"),
        many => anyhow::anyhow!("jobs {} not found", id_list(many, 20)),
    }
}

pub fn id_list(ids: impl IntoIterator<Item = impl std::fmt::Display>, max: usize) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    if ids.len() <= max {
        ids.join(", ")
    } else {
        format!("{}, … and {} more", ids[..max].join(", "), ids.len() - max)
    }
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A progress bar on stderr when stderr is a terminal; otherwise one that draws nothing.
/// `len = None` shows a counter without a total.
pub fn progress(len: Option<u64>, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos}").expect("valid template"),
        ),
    };
    bar.set_message(message);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_like_speech() {
        let now = Timestamp::parse("2026-11-23T08:00:00.000Z").unwrap();
        let table = [
            (now.plus(Duration::from_secs(240)), "in 4m"),
            (now.minus(Duration::from_secs(3 * 3600 + 59)), "3h ago"),
            (now.minus(Duration::from_millis(300)), "now"),
            (now.plus(Duration::from_secs(45)), "in 45s"),
            (now.minus(Duration::from_secs(3 * 86_400)), "3d ago"),
        ];
        for (t, expected) in table {
            assert_eq!(relative(t, now), expected);
        }
    }

    #[test]
    fn precise_durations_pick_a_sensible_unit() {
        let table = [
            (Duration::from_millis(350), "350ms"),
            (Duration::from_millis(2400), "2.4s"),
            (Duration::from_secs(250), "4m 10s"),
            (Duration::from_secs(3 * 3600 + 300), "3h 5m"),
        ];
        for (d, expected) in table {
            assert_eq!(precise(d), expected);
        }
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let mut table = Table::new(["ID", "STATE", "KEY"]);
        table.row(vec!["1".into(), "dead".into(), "did:gun:a".into()]);
        table.row(vec!["1234".into(), "pending".into(), "k".into()]);
        assert_eq!(
            table.render(),
            "ID    STATE    KEY\n1     dead     did:gun:a\n1234  pending  k\n"
        );
    }

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_to_one_line() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdefghijk", 5), "abcd…");
    }

    #[test]
    fn id_lists_are_bounded() {
        assert_eq!(id_list([1, 2, 3], 5), "1, 2, 3");
        assert_eq!(id_list([1, 2, 3, 4], 2), "1, 2, … and 2 more");
    }
}
