//! The arithmetic of a ladder shaped for one title (issue 15's `hls-auto`/`dash-auto`):
//! from probe encodes of the title's samples at a few bit rates per rung, a fit of VMAF
//! against the logarithm of the bit rate, and from it each rung's rate for its VMAF
//! target within its bounds; rungs above the source's height, and rungs that would not
//! look better than the rung below, are left out. Pure: the encodes and the scoring
//! that feed it are the worker's.

use serde::{Deserialize, Serialize};

/// A rung must beat the rung below it by this many VMAF points to be kept.
pub const MIN_GAIN: f64 = 1.0;

/// Trial rates that buy less than this many VMAF points over a lower trial rate are
/// past the rung's knee: the rung's quality has levelled off (its picture is simple, or
/// its size caps it), so its rate is not chosen above the knee.
pub const KNEE_GAIN: f64 = 0.5;

/// The knee of a rung's trials: the lowest rate within [`KNEE_GAIN`] of the best VMAF
/// measured at any rate. `None` without trials.
pub fn knee(probes: &[Probe]) -> Option<f64> {
    let best = probes
        .iter()
        .map(|p| p.vmaf)
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max);
    probes
        .iter()
        .filter(|p| p.vmaf.is_finite() && p.vmaf >= best - KNEE_GAIN)
        .map(|p| p.kbps)
        .min_by(f64::total_cmp)
}

/// One probe encode of the samples at one rung: its bit rate and its measured VMAF
/// (at the source's size, so that rungs compare).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub kbps: f64,
    pub vmaf: f64,
}

/// VMAF ≈ `a + b·ln(kbps)`, fitted by least squares, VMAF held within 0…100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub a: f64,
    pub b: f64,
}

impl Fit {
    /// Fits the probes: `None` without two distinct finite rates, or when quality does
    /// not rise with the rate (nothing to choose by).
    pub fn of(probes: &[Probe]) -> Option<Fit> {
        let pts: Vec<(f64, f64)> = probes
            .iter()
            .filter(|p| p.kbps.is_finite() && p.kbps > 0.0 && p.vmaf.is_finite())
            .map(|p| (p.kbps.ln(), p.vmaf))
            .collect();
        let n = pts.len() as f64;
        if pts.len() < 2 {
            return None;
        }
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        if sxx < 1e-12 {
            return None;
        }
        let b = sxy / sxx;
        (b > 1e-9).then_some(Fit { a: my - b * mx, b })
    }

    /// The line through the two neighbouring trials that bracket `target` (the first or
    /// the last two when it lies outside them): where the curve bends (VMAF levels off
    /// towards its ceiling) it predicts near the target far better than one line through
    /// all. Falls back to [`Fit::of`] when that segment does not rise.
    pub fn local(probes: &[Probe], target: f64) -> Option<Fit> {
        let mut pts: Vec<Probe> = probes
            .iter()
            .filter(|p| p.kbps.is_finite() && p.kbps > 0.0 && p.vmaf.is_finite())
            .copied()
            .collect();
        pts.sort_by(|a, b| a.kbps.total_cmp(&b.kbps));
        if pts.len() < 3 {
            return Fit::of(&pts);
        }
        let i = pts
            .windows(2)
            .position(|w| w[1].vmaf >= target)
            .unwrap_or(pts.len() - 2);
        Fit::of(&pts[i..i + 2]).or_else(|| Fit::of(&pts))
    }

    /// The VMAF the fit predicts at `kbps`.
    pub fn vmaf_at(&self, kbps: f64) -> f64 {
        (self.a + self.b * kbps.max(1e-9).ln()).clamp(0.0, 100.0)
    }

    /// The bit rate the fit says reaches `vmaf`.
    pub fn kbps_for(&self, vmaf: f64) -> f64 {
        ((vmaf - self.a) / self.b).exp()
    }
}

/// What a rung asks for: its height, VMAF target and bit-rate bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungTarget {
    pub name: String,
    pub height: u32,
    pub target_vmaf: f64,
    pub min_kbps: u32,
    pub max_kbps: u32,
}

/// A rung as chosen, and why: recorded on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub name: String,
    pub height: u32,
    pub target_vmaf: f64,
    pub kbps: u32,
    pub predicted_vmaf: f64,
    /// The rendition's VMAF as made (the whole of it, at the source's size), once scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_vmaf: Option<f64>,
}

/// A rung left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub name: String,
    pub reason: String,
}

/// Chooses each rung's rate: the fit's rate for its target, held within its bounds.
/// Rungs taller than the source are never made (no upscaling); a rung is kept only if
/// it looks at least [`MIN_GAIN`] better than the kept rung below it, and a kept rung
/// below that needs as many bits is left out, so the rates rise with the rungs.
/// Rungs come in any order; the answer runs from the lowest up.
pub fn choose(rungs: &[(RungTarget, Fit)], source_height: u32) -> (Vec<Chosen>, Vec<Dropped>) {
    let mut order: Vec<&(RungTarget, Fit)> = rungs.iter().collect();
    order.sort_by_key(|(r, _)| r.height);
    let mut kept: Vec<Chosen> = Vec::new();
    let mut dropped = Vec::new();
    for (rung, fit) in order {
        if rung.height > source_height {
            dropped.push(Dropped {
                name: rung.name.clone(),
                reason: format!("taller than the source ({} lines): never upscaled", source_height),
            });
            continue;
        }
        let (lo, hi) = (rung.min_kbps.min(rung.max_kbps), rung.max_kbps.max(rung.min_kbps));
        let wanted = fit.kbps_for(rung.target_vmaf);
        let kbps = if wanted.is_finite() {
            wanted.round().clamp(f64::from(lo), f64::from(hi)) as u32
        } else {
            hi
        };
        let predicted = fit.vmaf_at(f64::from(kbps));
        if let Some(below) = kept.last() {
            if predicted < below.predicted_vmaf + MIN_GAIN {
                dropped.push(Dropped {
                    name: rung.name.clone(),
                    reason: format!(
                        "would look no better than {} (VMAF {:.1} at {kbps} kbit/s against {:.1} at {} kbit/s)",
                        below.name, predicted, below.predicted_vmaf, below.kbps
                    ),
                });
                continue;
            }
        }
        // a shorter rung that needs as many bits as this taller, better-looking one adds
        // nothing a player would pick: it is the one left out
        while let Some(below) = kept.last() {
            if below.kbps < kbps {
                break;
            }
            dropped.push(Dropped {
                name: below.name.clone(),
                reason: format!(
                    "{} looks better at fewer bits (VMAF {:.1} at {kbps} kbit/s against {:.1} at {} kbit/s)",
                    rung.name, predicted, below.predicted_vmaf, below.kbps
                ),
            });
            kept.pop();
        }
        kept.push(Chosen {
            name: rung.name.clone(),
            height: rung.height,
            target_vmaf: rung.target_vmaf,
            kbps,
            predicted_vmaf: (predicted * 100.0).round() / 100.0,
            measured_vmaf: None,
        });
    }
    (kept, dropped)
}

/// A ladder's per-title settings (the `per_title` table of a ladder preset): how the
/// source is sampled, and each rung's VMAF target and bit-rate bounds by its height.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTitle {
    /// Excerpts taken from the source, spread evenly over it.
    #[serde(default = "three")]
    pub samples: u32,
    /// Each excerpt's length.
    #[serde(default = "two")]
    pub sample_seconds: f64,
    /// Trial encodes per rung, their rates spread evenly (in log) over its bounds.
    #[serde(default = "three")]
    pub rates_per_rung: u32,
    /// One per rung of the ladder, by height.
    pub goals: Vec<Goal>,
}

fn three() -> u32 {
    3
}
fn two() -> f64 {
    2.0
}

/// One rung's aim: its VMAF target and the bounds its rate is chosen within.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub height: u32,
    pub target_vmaf: f64,
    pub min_kbps: u32,
    pub max_kbps: u32,
}

impl PerTitle {
    /// The built-in auto ladders' settings, for the rungs of the fixed `hls` ladder.
    pub fn default_goals() -> PerTitle {
        let goal = |height, target_vmaf, min_kbps, max_kbps| Goal {
            height,
            target_vmaf,
            min_kbps,
            max_kbps,
        };
        PerTitle {
            samples: three(),
            sample_seconds: two(),
            rates_per_rung: three(),
            goals: vec![
                goal(1080, 95.0, 1000, 8000),
                goal(720, 93.0, 500, 5000),
                goal(480, 89.0, 300, 2500),
                goal(360, 84.0, 200, 1500),
                goal(240, 76.0, 120, 800),
            ],
        }
    }

    /// Checks the settings against the ladder's rung heights: every rung has one goal.
    pub fn check(&self, heights: &[u32]) -> Result<(), String> {
        if !(1..=10).contains(&self.samples) || !(0.5..=10.0).contains(&self.sample_seconds) {
            return Err("per_title: samples 1-10 of 0.5-10 s".into());
        }
        if !(2..=5).contains(&self.rates_per_rung) {
            return Err("per_title: rates_per_rung is 2-5".into());
        }
        for h in heights {
            let n = self.goals.iter().filter(|g| g.height == *h).count();
            if n != 1 {
                return Err(format!("per_title: rung {h}p needs one goal, it has {n}"));
            }
        }
        for g in &self.goals {
            if !heights.contains(&g.height) {
                return Err(format!("per_title: the goal for {}p has no rung", g.height));
            }
            if !(20.0..=100.0).contains(&g.target_vmaf) {
                return Err(format!("per_title: {}p's target_vmaf is not within 20-100", g.height));
            }
            if !(50..=100_000).contains(&g.min_kbps) || g.max_kbps < g.min_kbps || g.max_kbps > 100_000 {
                return Err(format!(
                    "per_title: {}p's bounds need 50 <= min_kbps <= max_kbps <= 100000",
                    g.height
                ));
            }
        }
        Ok(())
    }

    /// The goal of the rung `height` lines tall.
    pub fn goal(&self, height: u32) -> Option<&Goal> {
        self.goals.iter().find(|g| g.height == height)
    }

    /// Where the samples are taken in a source `duration` seconds long: `samples`
    /// excerpts centred in equal parts of it, or the whole source when it is too short
    /// to sample (under twice the samples' length).
    pub fn spans(&self, duration: f64) -> Vec<(f64, f64)> {
        spans(self.samples, self.sample_seconds, duration)
    }
}

/// Where `samples` excerpts of `len` seconds are taken in a source `duration` seconds
/// long: centred in equal parts of it, or the whole source when it is too short to
/// sample (under twice the samples' length).
pub fn spans(samples: u32, len: f64, duration: f64) -> Vec<(f64, f64)> {
    let n = samples.max(1) as f64;
    if !duration.is_finite() || duration <= 0.0 {
        return Vec::new();
    }
    if duration < 2.0 * n * len {
        return vec![(0.0, duration)];
    }
    (0..samples)
        .map(|k| ((duration * (k as f64 + 0.5) / n - len / 2.0).max(0.0), len))
        .collect()
}

impl Goal {
    /// The rates a rung is tried at: `n` spread evenly in log over its bounds.
    pub fn trial_rates(&self, n: u32) -> Vec<u32> {
        let (lo, hi) = (
            f64::from(self.min_kbps.max(1)),
            f64::from(self.max_kbps.max(self.min_kbps).max(1)),
        );
        let n = n.max(2);
        let mut rates: Vec<u32> = (0..n)
            .map(|k| (lo * (hi / lo).powf(f64::from(k) / f64::from(n - 1))).round() as u32)
            .collect();
        rates.dedup();
        rates
    }
}

/// What a per-title ladder did, recorded on the job (`per_title`): the samples, how
/// complex the title measured, each rung's target, rate, predicted and measured VMAF,
/// the rungs left out and why, and what the trials cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub output: String,
    /// The samples: how many, and their seconds in all.
    pub samples: u32,
    pub sample_seconds: f64,
    /// Bits per pixel the tallest rung needs to reach its target: about 0.02 for a still
    /// picture, 0.1 and more for noise or fast motion.
    pub complexity_bpp: f64,
    pub rungs: Vec<Chosen>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Dropped>,
    /// The trial encodes made, and the seconds the sampling, trials and their scoring took.
    pub trials: u32,
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rung(name: &str, height: u32, target: f64, lo: u32, hi: u32) -> RungTarget {
        RungTarget {
            name: name.into(),
            height,
            target_vmaf: target,
            min_kbps: lo,
            max_kbps: hi,
        }
    }

    #[test]
    fn the_fit_recovers_a_log_curve_and_inverts_it() {
        let truth = |k: f64| 20.0 + 10.0 * k.ln();
        let probes: Vec<Probe> = [300.0, 800.0, 2000.0]
            .iter()
            .map(|&k| Probe {
                kbps: k,
                vmaf: truth(k),
            })
            .collect();
        let f = Fit::of(&probes).unwrap();
        assert!((f.a - 20.0).abs() < 1e-9 && (f.b - 10.0).abs() < 1e-9, "{f:?}");
        assert!((f.kbps_for(f.vmaf_at(1234.0)) - 1234.0).abs() < 1e-6);
        assert_eq!(Fit::of(&probes[..1]), None, "one point fits no curve");
        let flat = [
            Probe {
                kbps: 500.0,
                vmaf: 90.0,
            },
            Probe {
                kbps: 900.0,
                vmaf: 89.0,
            },
        ];
        assert_eq!(
            Fit::of(&flat),
            None,
            "quality falling with rate gives nothing to choose by"
        );
    }

    #[test]
    fn an_easy_title_gets_low_rates_and_a_hard_one_hits_its_bounds() {
        // easy: VMAF 95 at ~1100 kbit/s; hard: VMAF 95 far above the top bound
        let easy = Fit { a: 25.0, b: 10.0 };
        let hard = Fit { a: -20.0, b: 12.0 };
        let rungs = |f: Fit| {
            vec![
                (rung("1080p", 1080, 95.0, 1500, 8000), f),
                (rung("720p", 720, 90.0, 800, 5000), f),
            ]
        };
        let (e, _) = choose(&rungs(easy), 1080);
        assert_eq!(e[0].name, "720p");
        assert_eq!(e[0].kbps, 800, "the easy 720p sits at its floor: {e:?}");
        let (h, _) = choose(&rungs(hard), 1080);
        assert_eq!(h.iter().map(|c| c.kbps).collect::<Vec<_>>(), [5000, 8000], "{h:?}");
        assert!(h[1].predicted_vmaf < 95.0, "the bound holds even short of the target");
    }

    #[test]
    fn rungs_taller_than_the_source_or_no_better_than_below_are_dropped() {
        let f = Fit { a: 25.0, b: 10.0 };
        let rungs = vec![
            (rung("1080p", 1080, 95.0, 500, 8000), f),
            (rung("720p", 720, 95.0, 500, 5000), f),
            (rung("360p", 360, 80.0, 300, 1000), f),
        ];
        let (kept, dropped) = choose(&rungs, 720);
        assert_eq!(
            kept.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["360p", "720p"]
        );
        assert!(dropped
            .iter()
            .any(|d| d.name == "1080p" && d.reason.contains("never upscaled")));
        // a rung whose target the one below already reaches adds nothing
        let same = vec![
            (rung("480p", 480, 80.0, 300, 2000), f),
            (rung("360p", 360, 80.0, 300, 2000), f),
        ];
        let (kept, dropped) = choose(&same, 1080);
        assert_eq!(kept.len(), 1);
        assert!(dropped[0].reason.contains("no better than 360p"), "{dropped:?}");
    }

    #[test]
    fn a_shorter_rung_needing_the_bits_of_a_taller_better_one_is_left_out_not_the_taller() {
        // testsrc2 at 720p as measured: 480p needs 1734 kbit/s for 89, 720p 1631 for 93
        let r480 = Fit {
            a: 89.0 - 4.0 * 1734f64.ln(),
            b: 4.0,
        };
        let r720 = Fit {
            a: 93.0 - 6.0 * 1631f64.ln(),
            b: 6.0,
        };
        let r240 = Fit {
            a: 76.0 - 5.0 * 600f64.ln(),
            b: 5.0,
        };
        let rungs = vec![
            (rung("720p", 720, 93.0, 500, 5000), r720),
            (rung("480p", 480, 89.0, 300, 2500), r480),
            (rung("240p", 240, 76.0, 120, 800), r240),
        ];
        let (kept, dropped) = choose(&rungs, 720);
        assert_eq!(
            kept.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["240p", "720p"],
            "{dropped:?}"
        );
        assert!(
            dropped[0].name == "480p" && dropped[0].reason.contains("720p looks better at fewer bits"),
            "{dropped:?}"
        );
    }

    #[test]
    fn a_bending_curve_is_read_between_the_trials_that_bracket_the_target() {
        let p = |kbps, vmaf| Probe { kbps, vmaf };
        // testsrc2 at 720p: VMAF levels off towards 98
        let trials = [p(500.0, 80.0), p(1581.0, 93.5), p(5000.0, 98.0)];
        let local = Fit::local(&trials, 93.0).unwrap();
        let global = Fit::of(&trials).unwrap();
        let (l, g) = (local.kbps_for(93.0), global.kbps_for(93.0));
        assert!(l < 1581.0 && l > 1300.0, "between its trials: {l}");
        assert!(g > l * 1.2, "one line through all asks more: {g} against {l}");
        // above every trial: the last segment; below: the first
        assert!((Fit::local(&trials, 99.0).unwrap().vmaf_at(5000.0) - 98.0).abs() < 1e-9);
        assert!((Fit::local(&trials, 70.0).unwrap().vmaf_at(500.0) - 80.0).abs() < 1e-9);
        // a segment that falls: the fit through all
        let bumpy = [p(500.0, 80.0), p(1581.0, 93.5), p(5000.0, 93.0)];
        assert_eq!(Fit::local(&bumpy, 95.0), Fit::of(&bumpy));
    }

    #[test]
    fn the_knee_is_the_lowest_rate_near_the_best_quality() {
        let p = |kbps, vmaf| Probe { kbps, vmaf };
        // a still picture at 240p: the size caps it, more bits buy nothing
        assert_eq!(knee(&[p(120.0, 68.9), p(310.0, 69.2), p(800.0, 69.3)]), Some(120.0));
        assert_eq!(knee(&[p(120.0, 60.0), p(310.0, 69.0), p(800.0, 69.3)]), Some(310.0));
        assert_eq!(knee(&[p(120.0, 60.0), p(310.0, 70.0), p(800.0, 80.0)]), Some(800.0));
        assert_eq!(knee(&[]), None);
    }

    #[test]
    fn samples_spread_over_the_source_and_a_short_one_is_taken_whole() {
        let pt = PerTitle {
            samples: 3,
            sample_seconds: 2.0,
            rates_per_rung: 3,
            goals: vec![],
        };
        assert_eq!(pt.spans(60.0), vec![(9.0, 2.0), (29.0, 2.0), (49.0, 2.0)]);
        assert_eq!(pt.spans(8.0), vec![(0.0, 8.0)]);
        assert!(pt.spans(0.0).is_empty());
        let g = Goal {
            height: 720,
            target_vmaf: 93.0,
            min_kbps: 500,
            max_kbps: 4500,
        };
        assert_eq!(g.trial_rates(3), vec![500, 1500, 4500]);
        assert_eq!(
            Goal {
                min_kbps: 800,
                max_kbps: 800,
                ..g
            }
            .trial_rates(3),
            vec![800]
        );
    }

    #[test]
    fn settings_need_one_goal_per_rung_within_range() {
        let goal = |h| Goal {
            height: h,
            target_vmaf: 90.0,
            min_kbps: 300,
            max_kbps: 2000,
        };
        let pt = PerTitle {
            samples: 3,
            sample_seconds: 2.0,
            rates_per_rung: 3,
            goals: vec![goal(720), goal(360)],
        };
        assert_eq!(pt.check(&[720, 360]), Ok(()));
        assert!(pt.check(&[720, 480, 360]).unwrap_err().contains("480p needs one goal"));
        assert!(pt.check(&[720]).unwrap_err().contains("360p has no rung"));
        let mut bad = pt.clone();
        bad.goals[0].max_kbps = 100;
        assert!(bad.check(&[720, 360]).unwrap_err().contains("bounds"));
        bad = pt.clone();
        bad.rates_per_rung = 1;
        assert!(bad.check(&[720, 360]).is_err());
    }

    proptest! {
        #[test]
        fn kept_rungs_rise_in_rate_and_quality_and_stay_in_bounds(
            a in -50.0f64..50.0, b in 0.5f64..20.0,
            targets in proptest::collection::vec((1u32..2200, 40.0f64..99.0, 100u32..3000, 0u32..9000), 1..6),
            source in 100u32..2200,
        ) {
            let f = Fit { a, b };
            let rungs: Vec<(RungTarget, Fit)> = targets.iter().enumerate()
                .map(|(i, &(h, t, lo, span))| (rung(&format!("r{i}"), h, t, lo, lo + span), f))
                .collect();
            let (kept, dropped) = choose(&rungs, source);
            prop_assert_eq!(kept.len() + dropped.len(), rungs.len());
            for w in kept.windows(2) {
                prop_assert!(w[1].kbps > w[0].kbps && w[1].predicted_vmaf >= w[0].predicted_vmaf + MIN_GAIN - 0.01);
            }
            for c in &kept {
                let r = &rungs.iter().find(|(r, _)| r.name == c.name).unwrap().0;
                prop_assert!(c.height <= source);
                prop_assert!(c.kbps >= r.min_kbps && c.kbps <= r.max_kbps);
            }
        }
    }
}
