//! The one state machine every job follows. [`JobState::next`] is the only place that
//! decides which transitions are legal; the store refuses any write that skips it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a job is in its life. `Complete`, `Failed` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Submitted,
    Queued,
    Downloading,
    Encoding,
    Uploading,
    Complete,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Submitted,
        JobState::Queued,
        JobState::Downloading,
        JobState::Encoding,
        JobState::Uploading,
        JobState::Complete,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Submitted => "submitted",
            JobState::Queued => "queued",
            JobState::Downloading => "downloading",
            JobState::Encoding => "encoding",
            JobState::Uploading => "uploading",
            JobState::Complete => "complete",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Complete | JobState::Failed | JobState::Cancelled)
    }

    /// A worker holds the job in one of these states.
    pub fn is_running(self) -> bool {
        matches!(self, JobState::Downloading | JobState::Encoding | JobState::Uploading)
    }

    /// The state a transition leads to from `self`, or why it is not allowed.
    /// Pure: no clock, no I/O.
    pub fn next(self, t: Transition) -> Result<JobState, InvalidTransition> {
        use JobState::*;
        use Transition::*;
        let to = match (self, t) {
            (from, _) if from.is_terminal() => None,
            (Submitted, Dispatch) => Some(Queued),
            (Queued, StartDownload) => Some(Downloading),
            (Downloading, StartEncode) => Some(Encoding),
            (Encoding, StartUpload) => Some(Uploading),
            (Uploading, Finish) => Some(Complete),
            (Downloading | Encoding | Uploading, Requeue) => Some(Queued),
            (_, Fail) => Some(Failed),
            (_, Cancel) => Some(Cancelled),
            _ => None,
        };
        to.ok_or(InvalidTransition {
            from: self,
            transition: t,
        })
    }
}

/// The way a job goes when all is well; every forward step on it is a transition
/// [`JobState::next`] allows.
pub const PATH: &[JobState] = JobState::ALL.split_at(6).0;

impl JobState {
    /// How far along [`PATH`] a job in this state is; every terminal state counts as
    /// the end of it.
    pub fn rank(self) -> usize {
        if self.is_terminal() {
            return PATH.len() - 1;
        }
        PATH.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// The transition one step forward along [`PATH`], as [`JobState::next`] allows it.
    pub fn forward(self) -> Option<Transition> {
        let to = *PATH.get(self.rank() + 1)?;
        Transition::ALL.into_iter().find(|t| self.next(*t) == Ok(to))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The dispatcher routed the job and put it on a backend's queue.
    Dispatch,
    /// A worker took the job and starts fetching the source.
    StartDownload,
    /// The source is on the worker's disk and probed; FFmpeg starts.
    StartEncode,
    /// FFmpeg finished; the outputs are being uploaded.
    StartUpload,
    /// Every output is in the outbox.
    Finish,
    /// The worker that held the job was lost or gave it back; it waits for another.
    Requeue,
    /// The job cannot succeed (bad media, attempts exhausted, ...).
    Fail,
    /// A user cancelled it.
    Cancel,
}

impl Transition {
    pub const ALL: [Transition; 8] = [
        Transition::Dispatch,
        Transition::StartDownload,
        Transition::StartEncode,
        Transition::StartUpload,
        Transition::Finish,
        Transition::Requeue,
        Transition::Fail,
        Transition::Cancel,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job in state `{from}` cannot take transition {transition:?}")]
pub struct InvalidTransition {
    pub from: JobState,
    pub transition: Transition,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = JobState> {
        proptest::sample::select(JobState::ALL.to_vec())
    }
    fn any_transition() -> impl Strategy<Value = Transition> {
        proptest::sample::select(Transition::ALL.to_vec())
    }

    #[test]
    fn happy_path_reaches_complete() {
        let mut s = JobState::Submitted;
        for t in [
            Transition::Dispatch,
            Transition::StartDownload,
            Transition::StartEncode,
            Transition::StartUpload,
            Transition::Finish,
        ] {
            s = s.next(t).unwrap();
        }
        assert_eq!(s, JobState::Complete);
    }

    #[test]
    fn skipping_a_state_is_refused() {
        let err = JobState::Queued.next(Transition::StartEncode).unwrap_err();
        assert_eq!(err.from, JobState::Queued);
        assert!(err.to_string().contains("queued"));
        assert!(JobState::Submitted.next(Transition::Finish).is_err());
        assert!(JobState::Queued.next(Transition::Requeue).is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    proptest! {
        #[test]
        fn terminal_states_never_change(s in any_state(), t in any_transition()) {
            if s.is_terminal() {
                prop_assert!(s.next(t).is_err());
            }
        }

        #[test]
        fn every_non_terminal_state_can_fail_and_be_cancelled(s in any_state()) {
            prop_assume!(!s.is_terminal());
            prop_assert_eq!(s.next(Transition::Fail), Ok(JobState::Failed));
            prop_assert_eq!(s.next(Transition::Cancel), Ok(JobState::Cancelled));
        }

        /// Any sequence of attempted transitions, applying only the legal ones, ends in
        /// a state reachable on the documented graph, and each step moves forward
        /// except a requeue, which only returns to `queued` from a running state.
        #[test]
        fn random_walks_follow_the_graph(ts in proptest::collection::vec(any_transition(), 0..64)) {
            let order = |s: JobState| JobState::ALL.iter().position(|x| *x == s).unwrap();
            let mut s = JobState::Submitted;
            for t in ts {
                match s.next(t) {
                    Ok(n) => {
                        if t == Transition::Requeue {
                            prop_assert!(s.is_running());
                            prop_assert_eq!(n, JobState::Queued);
                        } else {
                            prop_assert!(order(n) > order(s), "{s} -> {n} went backwards");
                        }
                        s = n;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, s);
                    }
                }
            }
        }

        /// From every non-terminal state the happy path still leads to `complete`:
        /// no state is a dead end.
        #[test]
        fn no_dead_ends(s in any_state()) {
            prop_assume!(!s.is_terminal());
            let mut cur = s;
            for _ in 0..8 {
                if cur.is_terminal() { break; }
                cur = [Transition::Dispatch, Transition::StartDownload, Transition::StartEncode,
                       Transition::StartUpload, Transition::Finish]
                    .into_iter()
                    .find_map(|t| cur.next(t).ok())
                    .expect("a forward transition");
            }
            prop_assert_eq!(cur, JobState::Complete);
        }
    }
}
