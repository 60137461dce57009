//! Where a source is cut: at the keyframe nearest each multiple of the target length
//! (so cuts fall on segment boundaries when the target is a multiple of the segment
//! length), preferring a keyframe that is also a scene change when one is near. Times
//! are media seconds: the source's start is 0.

use super::Span;

/// How far a scene change may move a cut from its target, as a share of the target.
const SCENE_PULL: f64 = 0.25;
/// No chunk is shorter than this share of the target (nor the last one).
const MIN_SHARE: f64 = 0.25;
/// A keyframe this close to a scene change (seconds) is that scene change.
const SAME_FRAME: f64 = 0.002;

/// The chunks of a source `end` seconds long, cut at `keyframes` near each multiple of
/// `target`, a scene change in `scenes` preferred within a quarter of the target. The
/// spans are contiguous from 0 to `end`; each inner boundary is a keyframe; none is
/// shorter than a quarter of the target. A source without usable keyframes is one chunk.
pub fn cut(keyframes: &[f64], end: f64, target: f64, scenes: &[f64]) -> Vec<Span> {
    if !(end.is_finite() && end > 0.0 && target.is_finite() && target > 0.0) {
        return vec![Span {
            start: 0.0,
            end: end.max(0.0),
        }];
    }
    let shortest = target * MIN_SHARE;
    let mut keys: Vec<f64> = keyframes
        .iter()
        .copied()
        .filter(|k| k.is_finite() && *k >= shortest && *k <= end - shortest)
        .collect();
    keys.sort_by(f64::total_cmp);
    keys.dedup();
    let is_scene = |k: f64| scenes.iter().any(|s| (s - k).abs() <= SAME_FRAME);
    let mut cuts: Vec<f64> = Vec::new();
    let mut k = 1.0;
    while k * target < end - target * 0.5 {
        let goal = k * target;
        k += 1.0;
        let after = cuts.last().copied().unwrap_or(0.0) + shortest;
        let near: Vec<f64> = keys
            .iter()
            .copied()
            .filter(|c| *c >= after && (c - goal).abs() <= target * 0.5)
            .collect();
        let distance = |c: &f64| (c - goal).abs();
        let scene = near
            .iter()
            .filter(|c| is_scene(**c) && distance(c) <= target * SCENE_PULL)
            .min_by(|a, b| distance(a).total_cmp(&distance(b)));
        let nearest = near.iter().min_by(|a, b| distance(a).total_cmp(&distance(b)));
        if let Some(c) = scene.or(nearest) {
            cuts.push(*c);
        }
    }
    let mut spans = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0.0;
    for c in cuts {
        spans.push(Span { start, end: c });
        start = c;
    }
    spans.push(Span { start, end });
    spans
}

/// Where a piece ending at the chunk boundary `end` (media seconds) is cut: through the
/// first keyframe after it, so an open GOP's leading frames before the boundary are
/// decoded from there. `None` past the last keyframe (the piece runs to the end).
pub fn piece_end(keyframes: &[f64], end: f64) -> Option<f64> {
    keyframes.iter().copied().find(|t| *t > end + 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn every(step: f64, end: f64) -> Vec<f64> {
        (0..).map(|i| i as f64 * step).take_while(|t| *t < end).collect()
    }

    #[test]
    fn dense_keyframes_cut_at_each_multiple_of_the_target() {
        let spans = cut(&every(2.0, 180.0), 180.0, 30.0, &[]);
        let bounds: Vec<f64> = spans.iter().map(|s| s.start).collect();
        assert_eq!(bounds, [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]);
        assert_eq!(spans.last().unwrap().end, 180.0);
    }

    #[test]
    fn a_scene_change_near_the_target_wins_over_the_nearest_keyframe() {
        let mut keys = every(2.0, 180.0);
        keys.push(63.5);
        let spans = cut(&keys, 180.0, 30.0, &[63.5]);
        assert_eq!(spans[2].start, 63.5, "{spans:?}");
        // too far from its target (a quarter of 30 s is 7.5 s): ignored
        let spans = cut(&keys, 180.0, 30.0, &[40.0]);
        assert_eq!(spans[1].start, 30.0);
    }

    #[test]
    fn sparse_keyframes_make_longer_chunks_and_none_means_one() {
        let spans = cut(&every(50.0, 180.0), 180.0, 30.0, &[]);
        let bounds: Vec<f64> = spans.iter().map(|s| s.start).collect();
        assert_eq!(bounds, [0.0, 50.0, 100.0, 150.0]);
        assert_eq!(cut(&[0.0], 180.0, 30.0, &[]), vec![Span { start: 0.0, end: 180.0 }]);
        assert_eq!(cut(&every(2.0, 10.0), f64::NAN, 30.0, &[]).len(), 1);
    }

    #[test]
    fn the_last_chunk_is_never_a_sliver() {
        // 185 s: the 6th target (180 s) would leave 5 s; the last chunk takes it
        let spans = cut(&every(1.0, 185.0), 185.0, 30.0, &[]);
        assert_eq!(spans.len(), 6);
        assert_eq!((spans[5].start, spans[5].end), (150.0, 185.0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn spans_cover_the_source_and_cut_only_at_keyframes(
            mut keys in proptest::collection::vec(0.0f64..4000.0, 0..400),
            end in 1.0f64..4000.0,
            target in 1.0f64..300.0,
            scenes in proptest::collection::vec(0.0f64..4000.0, 0..20),
        ) {
            keys.extend(scenes.iter().step_by(2).copied());
            let spans = cut(&keys, end, target, &scenes);
            prop_assert!(!spans.is_empty());
            prop_assert_eq!(spans[0].start, 0.0);
            prop_assert_eq!(spans.last().unwrap().end, end);
            for w in spans.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
                prop_assert!(keys.contains(&w[1].start), "cut at {} is no keyframe", w[1].start);
            }
            if spans.len() > 1 {
                for s in &spans {
                    prop_assert!(s.end - s.start >= target * MIN_SHARE - 1e-9, "{:?} is a sliver of {}", s, target);
                }
            }
            prop_assert!(spans.len() as f64 <= (end / target).ceil() + 1.0);
        }
    }

    #[test]
    fn a_piece_runs_through_the_keyframe_after_its_chunk() {
        let keys = [0.0, 2.0, 4.0, 6.0];
        assert_eq!(piece_end(&keys, 2.0), Some(4.0));
        assert_eq!(piece_end(&keys, 3.1), Some(4.0));
        assert_eq!(piece_end(&keys, 6.0), None);
    }
}
