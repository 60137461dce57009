//! A quality target for files (issue 15's `target_vmaf`): the CRF that reaches a VMAF
//! target, found on samples of the title before the one real encode. The search is a
//! bracket narrowed by interpolation: each trial CRF lies strictly inside the bracket of
//! the CRFs already found too good and too poor; while every trial is on one side, each
//! after the first goes at least halfway to the range's end, so a CRF that reaches the
//! target is found within [`MAX_TRIALS`] (in practice two to four). Pure: the encodes
//! and their scoring are the worker's.

use serde::{Deserialize, Serialize};

/// At most this many trial encodes per search.
pub const MAX_TRIALS: usize = 8;

/// The trials a search usually makes (two to four): what estimates count.
pub const EXPECTED_TRIALS: u32 = 4;

/// The samples a search takes: how many, and seconds each.
pub const SAMPLES: (u32, f64) = (3, 2.0);

/// VMAF points lost per CRF step, as a first guess before two trials give the slope.
const FIRST_SLOPE: f64 = 1.5;

/// What a search aims at: the VMAF target, how far above it is close enough, and the
/// CRFs it may choose among.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub target_vmaf: f64,
    pub tolerance: f64,
    pub crf_min: u8,
    pub crf_max: u8,
    /// The first CRF tried: the preset's own.
    pub start: u8,
}

/// One trial: a CRF and the VMAF the samples measured at it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub crf: u8,
    pub vmaf: f64,
}

impl Search {
    fn good(&self, t: &Trial) -> bool {
        t.vmaf >= self.target_vmaf
    }

    fn close(&self, t: &Trial) -> bool {
        self.good(t) && t.vmaf <= self.target_vmaf + self.tolerance
    }

    /// The CRF to try next, or `None` when the search is done: a trial landed within
    /// the tolerance, the bracket is empty, or [`MAX_TRIALS`] were made.
    pub fn next(&self, tried: &[Trial]) -> Option<u8> {
        if tried.len() >= MAX_TRIALS || tried.iter().any(|t| self.close(t)) {
            return None;
        }
        let Some(last) = tried.last() else {
            return Some(self.start);
        };
        // the best too-good trial (highest CRF still reaching) and the best too-poor one
        let good = tried.iter().filter(|t| self.good(t)).max_by_key(|t| t.crf);
        let poor = tried.iter().filter(|t| !self.good(t)).min_by_key(|t| t.crf);
        let low = good.map_or(self.crf_min, |g| g.crf.saturating_add(1));
        let high = poor.map_or(self.crf_max, |p| p.crf.saturating_sub(1));
        if low > high || poor.is_some_and(|p| p.crf == 0) {
            return None;
        }
        // aim at the middle of the tolerance, along the line through the bracket's ends
        // (or from the last trial at a first-guess slope)
        let aim = self.target_vmaf + self.tolerance / 2.0;
        let guess = match (good, poor) {
            (Some(g), Some(p)) if p.crf > g.crf && g.vmaf > p.vmaf => {
                let slope = (g.vmaf - p.vmaf) / f64::from(p.crf - g.crf);
                f64::from(g.crf) + (g.vmaf - aim) / slope
            }
            _ => f64::from(last.crf) + (last.vmaf - aim) / FIRST_SLOPE,
        };
        let mut guess = guess.round().clamp(f64::from(low), f64::from(high));
        // one-sided after two trials: at least halfway to the open end (bisection's pace)
        if tried.len() >= 2 {
            let mid = (f64::from(low) + f64::from(high)) / 2.0;
            match (good, poor) {
                (None, Some(_)) => guess = guess.min(mid.floor()),
                (Some(_), None) => guess = guess.max(mid.ceil()),
                _ => {}
            }
        }
        Some(guess as u8)
    }

    /// The CRF chosen from the trials: the highest that reached the target (fewest bits
    /// at the quality asked), else the one that came closest; and whether it reached.
    pub fn chosen(&self, tried: &[Trial]) -> Option<(Trial, bool)> {
        if let Some(g) = tried.iter().filter(|t| self.good(t)).max_by_key(|t| t.crf) {
            return Some((*g, true));
        }
        tried
            .iter()
            .max_by(|a, b| a.vmaf.total_cmp(&b.vmaf))
            .map(|t| (*t, false))
    }
}

/// What a `target_vmaf` search did, recorded on the job (`target_vmaf`): the samples,
/// each trial, the CRF chosen with its VMAF on the samples and, once scored, the
/// output's VMAF as made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub output: String,
    pub target_vmaf: f64,
    pub tolerance: f64,
    pub crf_range: [u8; 2],
    /// The samples: how many, and their seconds in all.
    pub samples: u32,
    pub sample_seconds: f64,
    pub trials: Vec<Trial>,
    pub crf: u8,
    /// The chosen CRF's VMAF on the samples.
    pub predicted_vmaf: f64,
    /// Whether any CRF in the range reached the target (else the closest was taken).
    pub reached: bool,
    /// The output's VMAF as made (the whole of it), once scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_vmaf: Option<f64>,
    /// The seconds the sampling, trials and their scoring took.
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn search(target: f64) -> Search {
        Search {
            target_vmaf: target,
            tolerance: 1.0,
            crf_min: 16,
            crf_max: 38,
            start: 23,
        }
    }

    /// Runs a search against a quality curve; returns the trials.
    fn run(s: &Search, curve: impl Fn(u8) -> f64) -> Vec<Trial> {
        let mut tried = Vec::new();
        while let Some(crf) = s.next(&tried) {
            assert!(
                !tried.iter().any(|t: &Trial| t.crf == crf),
                "{crf} tried twice: {tried:?}"
            );
            tried.push(Trial { crf, vmaf: curve(crf) });
        }
        tried
    }

    #[test]
    fn a_smooth_curve_is_hit_within_the_tolerance_in_a_few_trials() {
        // VMAF falling 1.2 a step from 99 at CRF 16: 93-94 around CRF 21
        let curve = |c: u8| 99.0 - 1.2 * f64::from(c - 16);
        let s = search(93.0);
        let tried = run(&s, curve);
        let (t, reached) = s.chosen(&tried).unwrap();
        assert!(reached && t.vmaf >= 93.0 && t.vmaf <= 94.0, "{tried:?}");
        assert!(tried.len() <= 3, "{tried:?}");
        assert_eq!(tried[0].crf, 23, "the preset's own CRF first");
    }

    #[test]
    fn an_easy_title_takes_the_top_of_the_range_and_a_hard_one_the_bottom() {
        let s = search(90.0);
        let easy = run(&s, |_| 99.0);
        assert_eq!(s.chosen(&easy).unwrap(), (Trial { crf: 38, vmaf: 99.0 }, true));
        let hard = run(&s, |c| 80.0 - f64::from(c) * 0.1);
        let (t, reached) = s.chosen(&hard).unwrap();
        assert!(
            !reached && t.crf == 16,
            "the closest is the best quality allowed: {hard:?}"
        );
    }

    #[test]
    fn a_spec_without_a_target_searches_nothing_and_one_with_it_keeps_to_its_range() {
        let mut v = crate::presets::VideoSpec {
            codec: crate::presets::VideoCodec::H264,
            max_height: 720,
            crf: 40,
            max_bitrate_kbps: 5000,
            speed: None,
            target_vmaf: None,
            vmaf_tolerance: None,
            crf_range: None,
        };
        assert_eq!(v.crf_search(), None);
        v.target_vmaf = Some(92.0);
        v.crf_range = Some([30, 20]);
        let s = v.crf_search().unwrap();
        assert_eq!((s.crf_min, s.crf_max, s.start, s.tolerance), (20, 30, 30, 1.0));
    }

    proptest! {
        #[test]
        fn on_any_falling_curve_the_choice_is_the_highest_crf_that_reaches(
            top in 60.0f64..100.0, slope in 0.1f64..5.0, target in 40.0f64..99.0, tol in 0.2f64..3.0,
            lo in 0u8..30, span in 1u8..30, start in 0u8..60,
        ) {
            let s = Search { target_vmaf: target, tolerance: tol, crf_min: lo, crf_max: lo + span, start: start.clamp(lo, lo + span) };
            let curve = |c: u8| (top - slope * f64::from(c)).clamp(0.0, 100.0);
            let tried = run(&s, curve);
            prop_assert!(tried.len() <= MAX_TRIALS);
            prop_assert!(tried.iter().all(|t| t.crf >= s.crf_min && t.crf <= s.crf_max));
            let (t, reached) = s.chosen(&tried).unwrap();
            let best_reaching = (s.crf_min..=s.crf_max).filter(|&c| curve(c) >= target).max();
            match best_reaching {
                Some(b) => {
                    prop_assert!(reached);
                    // never past the best; short of it only by what the tolerance allows
                    prop_assert!(t.crf <= b);
                    prop_assert!(t.vmaf <= target + tol || t.crf == b || tried.len() == MAX_TRIALS, "{:?} best {}", tried, b);
                }
                None => prop_assert!(!reached),
            }
        }
    }
}
