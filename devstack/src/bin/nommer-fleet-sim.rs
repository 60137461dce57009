//! Fleet simulation (run by hand, not a test): replays a day-like trace of encoding jobs
//! through the scaling policy with a model of boot and encode times, and prints
//! instance-minutes, the lower bound (total encode time over capacity) and the p50/p95
//! queue wait, for Nommer's policy against a static fleet and against media-nommer's rule
//! (launch for the overflow counting only running nodes, idle nodes terminate themselves
//! after 600 s).
//!
//!     cargo run --bin nommer-fleet-sim -- [--seed 7] [--max 10] [--per 2] [--boot 90]

use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use nommer_core::scaling::{self, FleetView, Heartbeat, Instance, Reason, ScalingSettings};
use std::collections::{BTreeMap, VecDeque};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Fleet maximum (and the static fleet's size).
    #[arg(long, default_value_t = 10)]
    max: u32,
    /// Jobs per instance.
    #[arg(long, default_value_t = 2)]
    per: u32,
    /// Seconds from launch to the first heartbeat.
    #[arg(long, default_value_t = 90)]
    boot: i64,
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// (arrival second, encode seconds) for a day: a quiet night, a busy working day with
/// three bursts (a batch upload each), an evening tail.
fn trace(seed: u64) -> Vec<(i64, i64)> {
    let mut rng = Rng(seed.max(1).wrapping_mul(0x9E3779B97F4A7C15));
    let rate_per_hour = |h: i64| -> f64 {
        match h {
            0..=6 => 8.0,
            7..=8 => 60.0,
            9..=17 => 140.0,
            18..=21 => 50.0,
            _ => 15.0,
        }
    };
    let mut jobs = Vec::new();
    let encode = |r: &mut Rng| -> i64 {
        let x = r.next();
        if x < 0.70 {
            30 + (r.next() * 150.0) as i64 // clips
        } else if x < 0.95 {
            300 + (r.next() * 600.0) as i64 // episodes
        } else {
            1800 + (r.next() * 1800.0) as i64 // films
        }
    };
    for h in 0..24 {
        let n = rate_per_hour(h);
        // Poisson arrivals within the hour
        let mut t = h as f64 * 3600.0;
        loop {
            t += -(1.0 - rng.next()).ln() * 3600.0 / n;
            if t >= (h + 1) as f64 * 3600.0 {
                break;
            }
            jobs.push((t as i64, encode(&mut rng)));
        }
    }
    for burst_at in [10 * 3600 + 600, 14 * 3600, 16 * 3600 + 1800] {
        for k in 0..150 {
            let e = encode(&mut rng);
            jobs.push((burst_at + k, e));
        }
    }
    jobs.sort();
    jobs
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Nommer,
    Static,
    MediaNommer,
}

struct Node {
    id: String,
    launched: i64,
    ready: i64,
    ended: Option<i64>,
    running: Vec<i64>, // end times
    draining: bool,
    idle_since: i64,
}

struct Outcome {
    instance_minutes: f64,
    waits: Vec<i64>,
    peak: usize,
}

fn at(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + t, 0).unwrap()
}

/// A fresh instance at `t`, ready (heartbeating) `boot` seconds later.
fn launch(nodes: &mut Vec<Node>, t: i64, boot: i64) {
    let id = format!("i-{}", nodes.len());
    nodes.push(Node {
        id,
        launched: t,
        ready: t + boot,
        ended: None,
        running: vec![],
        draining: false,
        idle_since: t + boot,
    });
}

/// When the scaler last launched and last retired.
#[derive(Default)]
struct Last {
    launch: Option<i64>,
    retire: Option<i64>,
}

/// What the scaler sees at `t`: the backlog, the live instances and their heartbeats.
fn view(nodes: &[Node], queued: usize, t: i64, per: u32, last: &Last) -> FleetView {
    let alive: Vec<&Node> = nodes.iter().filter(|n| n.ended.is_none()).collect();
    FleetView {
        now: at(t),
        visible: queued as u64,
        in_flight: alive.iter().map(|n| n.running.len() as u64).sum(),
        instances: alive
            .iter()
            .map(|n| Instance {
                id: n.id.clone(),
                launched_at: at(n.launched),
            })
            .collect(),
        heartbeats: alive
            .iter()
            .filter(|n| n.ready <= t)
            .map(|n| {
                (
                    n.id.clone(),
                    Heartbeat {
                        active_jobs: n.running.len() as u32,
                        capacity: per,
                        draining: n.draining,
                        last_seen: at(t),
                        idle_since: n.running.is_empty().then(|| at(n.idle_since)),
                        capabilities: Default::default(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
        last_launch: last.launch.map(at),
        last_retire: last.retire.map(at),
    }
}

/// One round of Nommer's rule (`scaling::decide`): terminate, drain and launch.
fn nommer_round(
    nodes: &mut Vec<Node>,
    queued: usize,
    t: i64,
    args: &Args,
    settings: &ScalingSettings,
    last: &mut Last,
) {
    let d = scaling::decide(&view(nodes, queued, t, args.per, last), settings);
    for (id, reason) in d.terminate {
        if reason == Reason::Retired {
            last.retire = Some(t);
        }
        if let Some(n) = nodes.iter_mut().find(|n| n.id == id) {
            n.ended = Some(t);
        }
    }
    for id in d.drain {
        if let Some(n) = nodes.iter_mut().find(|n| n.id == id) {
            n.draining = true;
        }
    }
    for _ in 0..d.launch {
        launch(nodes, t, args.boot);
    }
    if d.launch > 0 {
        last.launch = Some(t);
    }
}

/// One round of media-nommer's rule: launch for the overflow (jobs nobody took, the
/// maximum counted against running nodes only), stop what idled ten minutes.
fn media_nommer_round(nodes: &mut Vec<Node>, queued: usize, t: i64, args: &Args) {
    let running = nodes.iter().filter(|n| n.ended.is_none() && n.ready <= t).count() as u32;
    let want = (queued as u32).div_ceil(args.per).min(args.max.saturating_sub(running));
    for _ in 0..want {
        launch(nodes, t, args.boot);
    }
    for n in nodes.iter_mut().filter(|n| n.ended.is_none() && n.ready <= t) {
        if n.running.is_empty() && t - n.idle_since >= 600 {
            n.ended = Some(t);
        }
    }
}

/// Workers at `t`: finished jobs leave, free slots take queued jobs (their waits noted).
fn serve(nodes: &mut [Node], queue: &mut VecDeque<(i64, i64)>, t: i64, per: u32, waits: &mut Vec<i64>) {
    for n in nodes.iter_mut().filter(|n| n.ended.is_none() && n.ready <= t) {
        let before = n.running.len();
        n.running.retain(|e| *e > t);
        if before > 0 && n.running.is_empty() {
            n.idle_since = t;
        }
        while !n.draining && (n.running.len() as u32) < per {
            let Some((arrived, secs)) = queue.pop_front() else {
                break;
            };
            waits.push(t - arrived);
            n.running.push(t + secs);
        }
    }
}

fn simulate(jobs: &[(i64, i64)], policy: Policy, args: &Args, settings: &ScalingSettings) -> Outcome {
    let mut queue: VecDeque<(i64, i64)> = VecDeque::new();
    let mut next_job = 0;
    let mut nodes: Vec<Node> = Vec::new();
    let mut waits = Vec::new();
    let mut last = Last::default();
    let mut peak = 0;
    let tick = 5;
    let end = 30 * 3600;
    if policy == Policy::Static {
        for _ in 0..args.max {
            launch(&mut nodes, -args.boot, args.boot);
        }
    }
    let mut t = 0;
    while t < end
        && (next_job < jobs.len()
            || !queue.is_empty()
            || nodes.iter().any(|n| n.ended.is_none() && !n.running.is_empty())
            || t < 25 * 3600)
    {
        while next_job < jobs.len() && jobs[next_job].0 <= t {
            queue.push_back(jobs[next_job]);
            next_job += 1;
        }
        serve(&mut nodes, &mut queue, t, args.per, &mut waits);
        // the fleet's rule, once a minute
        if t % 60 == 0 {
            match policy {
                Policy::Static => {}
                Policy::Nommer => nommer_round(&mut nodes, queue.len(), t, args, settings, &mut last),
                Policy::MediaNommer => media_nommer_round(&mut nodes, queue.len(), t, args),
            }
        }
        peak = peak.max(nodes.iter().filter(|n| n.ended.is_none()).count());
        t += tick;
    }
    let instance_minutes = nodes
        .iter()
        .map(|n| (n.ended.unwrap_or(t).min(24 * 3600) - n.launched.max(0)).max(0) as f64 / 60.0)
        .sum();
    Outcome {
        instance_minutes,
        waits,
        peak,
    }
}

fn pct(v: &[i64], p: f64) -> i64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = Args::parse();
    let jobs = trace(args.seed);
    let total_encode: i64 = jobs.iter().map(|(_, e)| e).sum();
    let lower_bound = total_encode as f64 / 60.0 / args.per as f64;
    let settings = ScalingSettings {
        max_instances: args.max,
        jobs_per_instance: args.per,
        scale_out_cooldown: Duration::seconds(60),
        scale_in_cooldown: Duration::seconds(120),
        idle_timeout: Duration::seconds(300),
        ..Default::default()
    };
    println!(
        "trace: {} jobs over a day (seed {}), {:.0} encode-minutes · {} jobs per instance · max {} · boot {} s",
        jobs.len(),
        args.seed,
        total_encode as f64 / 60.0,
        args.per,
        args.max,
        args.boot
    );
    println!("lower bound (encode time / capacity): {lower_bound:.0} instance-minutes (the day is billed to 24 h)");
    println!(
        "{:<34} {:>16} {:>10} {:>10} {:>10} {:>6}",
        "policy", "instance-minutes", "vs bound", "p50 wait", "p95 wait", "peak"
    );
    for (name, p) in [
        ("nommer (scaling::decide)", Policy::Nommer),
        ("static fleet of max, always on", Policy::Static),
        ("media-nommer (overflow, idle 600 s)", Policy::MediaNommer),
    ] {
        let o = simulate(&jobs, p, &args, &settings);
        println!(
            "{:<34} {:>16.0} {:>9.2}x {:>9}s {:>9}s {:>6}",
            name,
            o.instance_minutes,
            o.instance_minutes / lower_bound,
            pct(&o.waits, 0.5),
            pct(&o.waits, 0.95),
            o.peak
        );
    }
}
