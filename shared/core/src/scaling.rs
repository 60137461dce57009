//! The fleet's scaling decision: a pure function of the work queue's backlog, the
//! instances EC2 reports, the workers' heartbeats and the settings. The scaler function
//! only gathers those and carries the decision out.

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// How the fleet scales.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSettings {
    pub min_instances: u32,
    pub max_instances: u32,
    /// Jobs one worker runs at once.
    pub jobs_per_instance: u32,
    /// At most this many instances launched per decision.
    pub launch_step: u32,
    /// No launch within this long of the last one.
    pub scale_out_cooldown: Duration,
    /// No retirement within this long of the last launch or retirement.
    pub scale_in_cooldown: Duration,
    /// A worker idle this long with nothing waiting is retired (down to `min`).
    pub idle_timeout: Duration,
    /// An instance that has not checked in this long after launch is terminated.
    pub boot_grace: Duration,
    /// A worker not heard from this long is terminated; its jobs come back through SQS.
    pub heartbeat_stale: Duration,
}

impl Default for ScalingSettings {
    fn default() -> Self {
        ScalingSettings {
            min_instances: 0,
            max_instances: 10,
            jobs_per_instance: 2,
            launch_step: 4,
            scale_out_cooldown: Duration::seconds(60),
            scale_in_cooldown: Duration::seconds(120),
            idle_timeout: Duration::seconds(600),
            boot_grace: Duration::seconds(600),
            heartbeat_stale: Duration::seconds(180),
        }
    }
}

/// An instance as EC2 reports it (pending or running; others are already gone).
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub launched_at: DateTime<Utc>,
}

/// A worker's last heartbeat, from the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub active_jobs: u32,
    pub capacity: u32,
    pub draining: bool,
    pub last_seen: DateTime<Utc>,
    /// When it last finished a job or started (idle since).
    pub idle_since: Option<DateTime<Utc>>,
    /// What its scoring FFmpeg can score with.
    pub capabilities: crate::quality::Capabilities,
}

/// Whether the fleet can score VMAF now, from its heartbeats: `Some(true)` when a live
/// worker (seen within `stale`, not draining) has libvmaf, `Some(false)` when live
/// workers exist and none has it, `None` when none is live (a fleet scaled to zero: the
/// workers it launches install an FFmpeg with libvmaf at boot).
pub fn fleet_libvmaf(heartbeats: &BTreeMap<String, Heartbeat>, now: DateTime<Utc>, stale: Duration) -> Option<bool> {
    let mut live = heartbeats
        .values()
        .filter(|h| !h.draining && now - h.last_seen <= stale)
        .peekable();
    live.peek()?;
    Some(live.any(|h| h.capabilities.libvmaf))
}

/// Everything the decision looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetView {
    pub now: DateTime<Utc>,
    /// Messages waiting in the work queue.
    pub visible: u64,
    /// Messages being worked on.
    pub in_flight: u64,
    pub instances: Vec<Instance>,
    pub heartbeats: BTreeMap<String, Heartbeat>,
    pub last_launch: Option<DateTime<Utc>>,
    pub last_retire: Option<DateTime<Utc>>,
}

/// Why an instance is terminated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Drained and idle: retired on purpose.
    Retired,
    /// Never heartbeat within the boot grace period.
    NeverCheckedIn,
    /// Its heartbeat went stale.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub launch: u32,
    /// Workers to mark draining (they stop taking work).
    pub drain: Vec<String>,
    pub terminate: Vec<(String, Reason)>,
    /// The fleet size the backlog calls for.
    pub desired: u32,
}

/// Decides what the scaler does now.
pub fn decide(v: &FleetView, s: &ScalingSettings) -> Decision {
    let mut d = Decision::default();
    let per = s.jobs_per_instance.max(1) as u64;
    let work = v.visible + v.in_flight;
    let by_backlog = work.div_ceil(per).min(u32::MAX as u64) as u32;
    d.desired = by_backlog.clamp(s.min_instances, s.max_instances.max(s.min_instances));

    // instances that are lost: never checked in, or went quiet
    let mut alive: Vec<&Instance> = Vec::new();
    for i in &v.instances {
        match v.heartbeats.get(&i.id) {
            None if v.now - i.launched_at > s.boot_grace => d.terminate.push((i.id.clone(), Reason::NeverCheckedIn)),
            Some(h) if v.now - h.last_seen > s.heartbeat_stale => d.terminate.push((i.id.clone(), Reason::Stale)),
            _ => alive.push(i),
        }
    }
    // drained workers that have finished their jobs are retired
    for i in &alive {
        if let Some(h) = v.heartbeats.get(&i.id) {
            if h.draining && h.active_jobs == 0 {
                d.terminate.push((i.id.clone(), Reason::Retired));
            }
        }
    }
    let serving: Vec<&Instance> = alive
        .iter()
        .copied()
        .filter(|i| v.heartbeats.get(&i.id).map(|h| !h.draining).unwrap_or(true))
        .collect();
    let current = serving.len() as u32;
    // every instance EC2 still counts (pending, booting, draining) counts against max
    let counted = v.instances.len() as u32 - d.terminate.len() as u32;

    // scale out
    let cooled = v.last_launch.map(|t| v.now - t >= s.scale_out_cooldown).unwrap_or(true);
    let starving = work > 0 && current == 0;
    if d.desired > current && (cooled || starving) {
        let want = (d.desired - current).min(s.launch_step.max(1));
        d.launch = want.min(s.max_instances.saturating_sub(counted));
    }

    // scale in: only idle workers, never below desired (or min)
    let retire_cooled = [v.last_launch, v.last_retire]
        .iter()
        .flatten()
        .all(|t| v.now - *t >= s.scale_in_cooldown);
    if d.launch == 0 && current > d.desired && retire_cooled {
        let mut idle: Vec<(&Instance, &Heartbeat)> = serving
            .iter()
            .filter_map(|i| v.heartbeats.get(&i.id).map(|h| (*i, h)))
            .filter(|(_, h)| h.active_jobs == 0)
            .filter(|(_, h)| work > 0 || h.idle_since.map(|t| v.now - t >= s.idle_timeout).unwrap_or(false))
            .collect();
        // the longest idle first
        idle.sort_by_key(|(i, h)| (h.idle_since, i.launched_at));
        let excess = (current - d.desired) as usize;
        d.drain = idle.into_iter().take(excess).map(|(i, _)| i.id.clone()).collect();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn view(visible: u64, in_flight: u64) -> FleetView {
        FleetView {
            now: t0(),
            visible,
            in_flight,
            instances: vec![],
            heartbeats: BTreeMap::new(),
            last_launch: None,
            last_retire: None,
        }
    }

    fn worker(v: &mut FleetView, id: &str, active: u32, draining: bool, idle_for_s: i64) {
        v.instances.push(Instance {
            id: id.into(),
            launched_at: v.now - Duration::hours(1),
        });
        v.heartbeats.insert(
            id.into(),
            Heartbeat {
                active_jobs: active,
                capacity: 2,
                draining,
                last_seen: v.now - Duration::seconds(5),
                idle_since: (active == 0).then(|| v.now - Duration::seconds(idle_for_s)),
                capabilities: Default::default(),
            },
        );
    }

    #[test]
    fn work_and_no_workers_launches_at_least_one() {
        let d = decide(&view(1, 0), &ScalingSettings::default());
        assert_eq!(d.launch, 1);
        let d = decide(&view(30, 0), &ScalingSettings::default());
        assert_eq!(d.launch, 4, "limited by the launch step");
        assert_eq!(d.desired, 10, "limited by max");
    }

    #[test]
    fn pending_instances_count_against_max() {
        let s = ScalingSettings {
            max_instances: 3,
            ..Default::default()
        };
        let mut v = view(100, 0);
        for i in 0..3 {
            v.instances.push(Instance {
                id: format!("i-{i}"),
                launched_at: v.now - Duration::seconds(30),
            });
        }
        assert_eq!(decide(&v, &s).launch, 0, "three booting, none checked in yet: at max");
    }

    #[test]
    fn idle_workers_drain_then_retire_and_the_fleet_reaches_zero() {
        let s = ScalingSettings::default();
        let mut v = view(0, 0);
        worker(&mut v, "i-a", 0, false, 700);
        worker(&mut v, "i-b", 0, false, 100);
        let d = decide(&v, &s);
        assert_eq!(d.drain, ["i-a"], "only the one idle past the timeout");
        let mut v2 = view(0, 0);
        worker(&mut v2, "i-a", 0, true, 700);
        assert_eq!(decide(&v2, &s).terminate, [("i-a".to_string(), Reason::Retired)]);
    }

    #[test]
    fn lost_instances_are_terminated() {
        let s = ScalingSettings::default();
        let mut v = view(0, 0);
        v.instances.push(Instance {
            id: "i-mute".into(),
            launched_at: v.now - Duration::seconds(900),
        });
        worker(&mut v, "i-stale", 1, false, 0);
        v.heartbeats.get_mut("i-stale").unwrap().last_seen = v.now - Duration::seconds(600);
        let d = decide(&v, &s);
        assert!(d.terminate.contains(&("i-mute".into(), Reason::NeverCheckedIn)));
        assert!(d.terminate.contains(&("i-stale".into(), Reason::Stale)));
    }

    fn arb_view() -> impl Strategy<Value = (FleetView, ScalingSettings)> {
        (
            0u64..200,
            0u64..50,
            proptest::collection::vec((0u32..3, any::<bool>(), 0i64..2000, 0i64..400, any::<bool>()), 0..12),
            0u32..4,
            1u32..12,
            1u32..4,
            proptest::option::of(0i64..300),
        )
            .prop_map(|(visible, in_flight, ws, min, max, per, last)| {
                let mut v = view(visible, in_flight);
                for (n, (active, draining, idle, seen, checked_in)) in ws.into_iter().enumerate() {
                    let id = format!("i-{n}");
                    v.instances.push(Instance {
                        id: id.clone(),
                        launched_at: v.now - Duration::seconds(idle + 60),
                    });
                    if checked_in {
                        v.heartbeats.insert(
                            id,
                            Heartbeat {
                                active_jobs: active,
                                capacity: per,
                                draining,
                                last_seen: v.now - Duration::seconds(seen),
                                idle_since: (active == 0).then(|| v.now - Duration::seconds(idle)),
                                capabilities: Default::default(),
                            },
                        );
                    }
                }
                v.last_launch = last.map(|s| v.now - Duration::seconds(s));
                let s = ScalingSettings {
                    min_instances: min.min(max),
                    max_instances: max,
                    jobs_per_instance: per,
                    ..Default::default()
                };
                (v, s)
            })
    }

    proptest! {
        #[test]
        fn never_above_max((v, s) in arb_view()) {
            let d = decide(&v, &s);
            let after = v.instances.len() as u32 - d.terminate.len() as u32 + d.launch;
            prop_assert!(d.launch == 0 || after <= s.max_instances, "{after} > {}", s.max_instances);
        }

        #[test]
        fn never_retires_a_busy_worker((v, s) in arb_view()) {
            let d = decide(&v, &s);
            for id in &d.drain {
                prop_assert_eq!(v.heartbeats[id].active_jobs, 0);
            }
            for (id, reason) in &d.terminate {
                if let Some(h) = v.heartbeats.get(id) {
                    let stale = v.now - h.last_seen > s.heartbeat_stale;
                    prop_assert!(stale || (h.active_jobs == 0 && h.draining), "{id} busy and alive: {reason:?}");
                }
            }
        }

        #[test]
        fn launches_when_work_waits_and_nothing_serves((v, s) in arb_view()) {
            let d = decide(&v, &s);
            let serving = v.instances.iter().filter(|i| {
                !d.terminate.iter().any(|(t, _)| t == &i.id)
                    && v.heartbeats.get(&i.id).map(|h| !h.draining).unwrap_or(true)
            }).count() as u32;
            let counted = v.instances.len() as u32 - d.terminate.len() as u32;
            if v.visible + v.in_flight > 0 && serving == 0 && counted < s.max_instances {
                prop_assert!(d.launch >= 1);
            }
        }

        #[test]
        fn drains_only_when_above_desired((v, s) in arb_view()) {
            let d = decide(&v, &s);
            prop_assert!(d.drain.is_empty() || d.launch == 0);
            let serving = v.instances.iter().filter(|i| {
                !d.terminate.iter().any(|(t, _)| t == &i.id)
                    && v.heartbeats.get(&i.id).map(|h| !h.draining).unwrap_or(true)
            }).count() as u32;
            prop_assert!(serving - d.drain.len() as u32 >= d.desired.min(serving));
        }
    }
}
