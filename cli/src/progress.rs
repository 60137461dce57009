//! Progress of an upload (bytes, rate, ETA) and of a job (percent, ETA): an indicatif bar
//! redrawn in place when stderr is a terminal; plain lines when it is not (indicatif
//! draws nothing there), one each tenth of the way or every few seconds of change, and
//! always the last.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use indicatif::{DecimalBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A plain line at least every this many percent...
const PLAIN_STEP: u64 = 10;
/// ...or after this long, if the position moved.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unit {
    Bytes,
    Percent,
}

/// When plain lines are due.
#[derive(Debug)]
struct Plain {
    /// (percent, position) of the last line printed.
    last: Option<(u64, u64)>,
    at: Instant,
}

impl Plain {
    fn new(now: Instant) -> Self {
        Plain { last: None, at: now }
    }

    /// Whether a line is due for `pos` of `len` at `now`, `closing` when it is the last
    /// word (and notes it printed if so).
    fn due(&mut self, pos: u64, len: u64, now: Instant, closing: bool) -> bool {
        let pct = percent(pos, len);
        let due = match self.last {
            None => true,
            Some((_, p)) if p == pos => false,
            Some((last_pct, _)) => {
                closing || pos >= len || pct >= last_pct + PLAIN_STEP || now.duration_since(self.at) >= PLAIN_EVERY
            }
        };
        if due {
            self.last = Some((pct, pos));
            self.at = now;
        }
        due
    }
}

fn percent(pos: u64, len: u64) -> u64 {
    if len == 0 {
        100
    } else {
        (pos.min(len) * 100) / len
    }
}

/// One progress display; clones share it.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    unit: Unit,
    plain: Option<Arc<Mutex<Plain>>>,
}

impl Progress {
    fn new(len: u64, unit: Unit, template: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(template)
            .expect("a progress template")
            .progress_chars("#>.");
        bar.set_style(style);
        let plain = bar
            .is_hidden()
            .then(|| Arc::new(Mutex::new(Plain::new(Instant::now()))));
        Progress { bar, unit, plain }
    }

    /// An upload of `total` bytes.
    pub fn upload(total: u64) -> Progress {
        Progress::new(
            total,
            Unit::Bytes,
            "  {prefix} [{wide_bar}] {percent:>3}% {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
        )
        .with_prefix("uploading")
    }

    /// A job's progress in one state (a new one for each state, so each keeps its line).
    pub fn job(state: &str) -> Progress {
        let p = Progress::new(
            100,
            Unit::Percent,
            "  {prefix:<12} [{wide_bar}] {pos:>3}% ETA {eta} {msg}",
        )
        .with_prefix(state);
        if p.plain.is_none() {
            // on a terminal the ETA moves between polls too
            p.bar.enable_steady_tick(Duration::from_millis(500));
        }
        p
    }

    fn with_prefix(self, prefix: &str) -> Progress {
        self.bar.set_prefix(prefix.to_string());
        self
    }

    /// A note after the bar (e.g. the backend).
    pub fn set_note(&self, note: &str) {
        self.bar.set_message(note.to_string());
    }

    pub fn inc(&self, delta: u64) {
        self.set(self.bar.position() + delta);
    }

    pub fn set(&self, pos: u64) {
        self.bar.set_position(pos);
        self.plain_line(false);
    }

    fn plain_line(&self, closing: bool) {
        if let Some(plain) = &self.plain {
            let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
            if plain.lock().unwrap().due(pos, len, Instant::now(), closing) {
                eprintln!("{}", self.line());
            }
        }
    }

    /// Ends it where it is, left on screen (and printed as a line if not yet).
    pub fn finish(&self) {
        self.plain_line(true);
        // `abandon`, not indicatif's `finish`: that would fill the bar of a state left at 0%
        self.bar.abandon();
    }

    /// The plain line for where it is now.
    fn line(&self) -> String {
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let pct = percent(pos, len);
        let mut s = match self.unit {
            Unit::Bytes => format!(
                "  {} {pct:>3}% {} of {}, {}/s",
                self.bar.prefix(),
                DecimalBytes(pos),
                DecimalBytes(len),
                DecimalBytes(self.bar.per_sec() as u64)
            ),
            Unit::Percent => format!("  {:<12} {pct:>3}%", self.bar.prefix()),
        };
        if pos > 0 && pos < len {
            s.push_str(&format!(", ETA {}", HumanDuration(self.bar.eta())));
        }
        let note = self.bar.message();
        if !note.is_empty() {
            s.push_str(&format!("  {note}"));
        }
        s
    }
}

/// How much of a body goes out per frame (so the bar moves within one request).
const CHUNK: usize = 64 * 1024;

/// A request body that sends `data` in chunks and moves `progress` as each goes out.
pub struct ProgressBody {
    data: Bytes,
    sent: usize,
    progress: Progress,
}

impl ProgressBody {
    pub fn new(data: Vec<u8>, progress: Progress) -> ProgressBody {
        ProgressBody {
            data: Bytes::from(data),
            sent: 0,
            progress,
        }
    }
}

impl http_body::Body for ProgressBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.data.len() {
            return Poll::Ready(None);
        }
        let end = (self.sent + CHUNK).min(self.data.len());
        let chunk = self.data.slice(self.sent..end);
        self.sent = end;
        self.progress.inc(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_each_tenth_or_every_few_seconds_and_the_last() {
        let t0 = Instant::now();
        let mut p = Plain::new(t0);
        let at = |s: u64| t0 + Duration::from_millis(s);
        assert!(p.due(0, 1000, at(0), false), "the first");
        assert!(!p.due(50, 1000, at(100), false), "5%: not yet");
        assert!(!p.due(99, 1000, at(200), false));
        assert!(p.due(100, 1000, at(300), false), "a tenth of the way");
        assert!(!p.due(100, 1000, at(9000), false), "no change, no line, however long");
        assert!(p.due(120, 1000, at(9100), false), "a change after five seconds");
        assert!(!p.due(150, 1000, at(9200), false));
        assert!(p.due(1000, 1000, at(9300), false), "the end");
        assert!(!p.due(1000, 1000, at(9400), true), "once");
    }

    #[test]
    fn the_closing_word_is_printed_where_it_stopped() {
        let t0 = Instant::now();
        let mut p = Plain::new(t0);
        assert!(p.due(40, 100, t0, false));
        assert!(!p.due(42, 100, t0, false));
        assert!(p.due(42, 100, t0, true), "a state that ends at 42%");
        assert!(!p.due(42, 100, t0, true));
    }

    #[test]
    fn a_job_from_zero_to_done_prints_a_handful_of_lines() {
        let t0 = Instant::now();
        let mut p = Plain::new(t0);
        let lines = (0..=100).filter(|pct| p.due(*pct, 100, t0, false)).count();
        assert_eq!(lines, 11, "0, 10, …, 100");
    }

    #[test]
    fn percent_of_nothing_is_all() {
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(5, 10), 50);
        assert_eq!(percent(20, 10), 100);
    }

    #[test]
    fn the_body_goes_out_in_chunks_of_known_length_and_counts_them() {
        use http_body::Body;
        let data = vec![7u8; CHUNK * 2 + 10];
        let progress = Progress::upload(data.len() as u64);
        let mut body = ProgressBody::new(data, progress.clone());
        assert_eq!(body.size_hint().exact(), Some((CHUNK * 2 + 10) as u64));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            sizes.push(frame.into_data().unwrap().len());
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 10]);
        assert!(body.is_end_stream());
        assert_eq!(progress.bar.position(), (CHUNK * 2 + 10) as u64);
    }
}
