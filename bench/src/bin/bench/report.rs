//! `docs/performance.md` and `docs/performance.svg` from the runs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;
use wspeer_bench::judge::{Verdict, verdict};
use wspeer_bench::summary;

use crate::{Kind, Results, Scenario, Srv, stat};

// ----- numbers -----

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(s: Option<(f64, f64, f64)>, f: fn(f64) -> String) -> String {
    match s {
        None => "–".into(),
        Some((m, lo, hi)) if (hi - lo).abs() <= f64::EPSILON * hi.abs().max(1.0) => f(m),
        Some((m, lo, hi)) => format!("{} ({}–{})", f(m), f(lo), f(hi)),
    }
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} %")
    } else {
        "–".into()
    }
}

fn ratio(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}×")
    } else {
        "–".into()
    }
}

/// One progress line for the terminal.
pub fn progress_line(scenario: &Scenario, m: &HashMap<String, f64>) -> String {
    let g = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    match scenario.kind {
        Kind::Idle => format!(
            "{} connections, {:.1} KiB RSS each",
            num(g("conns")),
            g("kib_per_conn")
        ),
        Kind::Setup { .. } => format!(
            "{} conn/s, {} per server CPU-s, server {} client {}",
            num(g("rate")),
            num(g("per_cpu")),
            pct(g("server_pct")),
            pct(g("client_pct"))
        ),
        Kind::Echo { .. } => format!(
            "{} msg/s, {} per server CPU-s, server {} client {}, p50 {} µs p99 {} µs",
            num(g("rate")),
            num(g("per_cpu")),
            pct(g("server_pct")),
            pct(g("client_pct")),
            num(g("p50_us")),
            num(g("p99_us"))
        ),
    }
}

// ----- comparisons -----

fn value(results: &Results, scenario: &str, srv: Srv, round: usize, key: &str) -> Option<f64> {
    results
        .runs
        .iter()
        .find(|r| r.scenario == scenario && r.srv == srv && r.round == round && r.error.is_none())
        .and_then(|r| r.m.get(key).copied())
        .filter(|v| v.is_finite())
}

/// Per-round ratios `a / best(b..)`: each from the same round, so from runs minutes apart
/// at most. `higher_is_better` picks the best baseline.
fn round_ratios(
    results: &Results,
    scenario: &str,
    a: Srv,
    b: &[Srv],
    key: &str,
    higher_is_better: bool,
) -> Vec<f64> {
    (0..results.settings.rounds)
        .filter_map(|round| {
            let va = value(results, scenario, a, round, key)?;
            let vb = b
                .iter()
                .filter_map(|s| value(results, scenario, *s, round, key))
                .reduce(|x, y| if higher_is_better { x.max(y) } else { x.min(y) })?;
            Some(va / vb)
        })
        .collect()
}

struct Target {
    scenario: String,
    target: String,
    measured: String,
    result: String,
}

/// The measured cell and the result cell of a target: the median with the min–max range,
/// and the verdict on the whole range ([`verdict`]).
fn judge(values: &[f64], goal: f64, at_least: bool, unit: &str) -> (String, String) {
    let Some((m, lo, hi)) = summary(values) else {
        return ("–".into(), "not measured (see the failures below)".into());
    };
    let f = |v: f64| {
        if unit == "×" {
            ratio(v)
        } else {
            format!("{} {unit}", num(v))
        }
    };
    let measured = if values.len() > 1 {
        format!("{} ({}–{})", f(m), f(lo), f(hi))
    } else {
        f(m)
    };
    let n = values.len();
    let all = if n > 1 {
        format!("all {n} values")
    } else {
        "the one value".to_string()
    };
    let result = match verdict(values, goal, at_least) {
        Verdict::Met => format!("met ({all})"),
        Verdict::Missed if at_least => format!(
            "**missed** ({all}; best {:.0} % short)",
            (1.0 - hi / goal) * 100.0
        ),
        Verdict::Missed => format!(
            "**missed** ({all}; best {:.0} % over)",
            (lo / goal - 1.0) * 100.0
        ),
        Verdict::WithinNoise => {
            let meeting = values
                .iter()
                .filter(|v| if at_least { **v >= goal } else { **v <= goal })
                .count();
            format!("within noise ({meeting} of {n} meet it)")
        }
        Verdict::NotMeasured => "not measured".to_string(),
    };
    (measured, result)
}

fn targets(results: &Results) -> Vec<Target> {
    let fws = [Srv::FwsCurrent, Srv::FwsMulti];
    let tt = [Srv::TtMulti, Srv::TtCurrent];
    let mut out = Vec::new();
    let mut push = |scenario: &str, target: &str, values: Vec<f64>, goal, at_least, unit| {
        let (measured, result) = judge(&values, goal, at_least, unit);
        out.push(Target {
            scenario: scenario.into(),
            target: target.into(),
            measured,
            result,
        });
    };
    for (key, name) in [("c100x20", "100 × 20 B"), ("c200x16k", "200 × 16 KiB")] {
        push(
            &format!("{name}, msgs per server CPU-second"),
            "≥ 1.5× tokio-tungstenite (the better of multi- and current-thread)",
            round_ratios(results, key, Srv::Wspeer, &tt, "per_cpu", true),
            1.5,
            true,
            "×",
        );
        push(
            &format!("{name}, msgs per server CPU-second"),
            "≥ 1.0× fastwebsockets (the better of current- and multi-thread)",
            round_ratios(results, key, Srv::Wspeer, &fws, "per_cpu", true),
            1.0,
            true,
            "×",
        );
    }
    push(
        "1 × 32 B, p99 round trip",
        "≤ tokio-tungstenite's (the better of multi- and current-thread)",
        round_ratios(results, "lat", Srv::Wspeer, &tt, "p99_us", false),
        1.0,
        false,
        "×",
    );
    push(
        "10 × 1 MiB, MB/s",
        "≥ 1.0× fastwebsockets (the better of current- and multi-thread)",
        round_ratios(results, "c10x1m", Srv::Wspeer, &fws, "mb_per_s", true),
        1.0,
        true,
        "×",
    );
    push(
        "wss 100 × 1 KiB, msgs/s",
        "≥ 0.6× the same scenario over ws",
        round_ratios(
            results,
            "c100x1k",
            Srv::WspeerWss,
            &[Srv::Wspeer],
            "rate",
            true,
        ),
        0.6,
        true,
        "×",
    );
    let idle: Vec<f64> = results
        .runs
        .iter()
        .filter(|r| r.scenario == "idle" && r.srv == Srv::Wspeer && r.error.is_none())
        .filter_map(|r| r.m.get("kib_per_conn").copied())
        .collect();
    push(
        "idle connection, server RSS",
        "≤ 8 KiB each",
        idle,
        8.0,
        false,
        "KiB",
    );
    // poll(): one row per (peers, ready, heartbeat).
    let poll_at = |n: f64, k: f64, hb: f64| {
        results
            .poll
            .iter()
            .find(|r| {
                r.get("n") == Some(&n)
                    && r.get("k") == Some(&k)
                    && r.get("heartbeat_ms") == Some(&hb)
            })
            .and_then(|r| r.get("median_us").copied())
    };
    let distinct = |key: &str| {
        let mut v: Vec<f64> = results
            .poll
            .iter()
            .filter_map(|r| r.get(key).copied())
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let (ns, ks, hbs) = (distinct("n"), distinct("k"), distinct("heartbeat_ms"));
    if let (Some(&smallest), Some(&largest)) = (ns.first(), ns.last()) {
        let idle: Vec<f64> = hbs
            .iter()
            .filter_map(|&hb| poll_at(largest, 0.0, hb))
            .collect();
        push(
            &format!(
                "`poll()` with {} peers, none ready (heartbeat off and on)",
                num(largest)
            ),
            "≤ 20 µs (median of the calls)",
            idle,
            20.0,
            false,
            "µs",
        );
        // O(ready): the same k costs the same whatever N.
        let flat: Vec<f64> = ks
            .iter()
            .flat_map(|&k| hbs.iter().map(move |&hb| (k, hb)))
            .filter_map(|(k, hb)| Some(poll_at(largest, k, hb)? / poll_at(smallest, k, hb)?))
            .collect();
        if largest > smallest {
            push(
                &format!(
                    "`poll()` with k ready of {} peers against k of {} (k = {}; heartbeat off and on)",
                    num(largest),
                    num(smallest),
                    ks.iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "flat: ≤ 2× for every k (O(ready), not O(peers))",
                flat,
                2.0,
                false,
                "×",
            );
        }
    }
    // Allocations: deterministic counts, so the worst size is judged.
    let mut conns: Vec<f64> = results
        .alloc
        .iter()
        .filter(|r| r.contains_key("server_allocs"))
        .filter_map(|r| r.get("conns").copied())
        .collect();
    conns.sort_by(f64::total_cmp);
    conns.dedup();
    for c in conns {
        let worst = results
            .alloc
            .iter()
            .filter(|r| r.get("conns") == Some(&c) && r.contains_key("server_allocs"))
            .filter(|r| r.get("size").is_some_and(|s| *s <= 4096.0))
            .filter_map(|r| r.get("server_allocs").copied())
            .fold(f64::NAN, f64::max);
        push(
            &format!(
                "steady-state echo, messages ≤ 4 KiB, {}",
                if c == 1.0 {
                    "1 connection".to_string()
                } else {
                    format!("{} connections pipelining", num(c))
                }
            ),
            "≤ 1 allocation per echoed message (echo_server's configuration, server side, \
             worst size)",
            if worst.is_finite() {
                vec![worst]
            } else {
                Vec::new()
            },
            1.0,
            false,
            "",
        );
    }
    out
}

// ----- markdown -----

fn failures_note(results: &Results, scenario: &str, srv: Srv, throughput: bool) -> String {
    let runs: Vec<_> = results
        .runs
        .iter()
        .filter(|r| r.scenario == scenario && r.srv == srv)
        .collect();
    let mut notes = Vec::new();
    let failed: Vec<_> = runs.iter().filter(|r| r.error.is_some()).collect();
    if let Some(first) = failed.first() {
        notes.push(format!(
            "failed {} of {}: {}",
            failed.len(),
            runs.len(),
            first.error.as_deref().unwrap_or("").replace('|', "/")
        ));
    }
    if throughput {
        let ok = runs.iter().filter(|r| r.error.is_none()).count();
        let low = runs
            .iter()
            .filter(|r| r.error.is_none())
            .filter(|r| r.m.get("server_pct").is_some_and(|p| *p < 90.0))
            .count();
        if low > 0 {
            notes.push(format!("client-bound: server < 90 % CPU in {low} of {ok}"));
        }
    }
    notes.join("; ")
}

pub fn markdown(results: &Results, scenarios: &[Scenario]) -> String {
    let s = &results.settings;
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# wspeer performance\n");
    let _ = writeln!(
        w,
        "<!-- Generated by bench/src/bin/bench (run `bash bench/run.sh`); edit the generator, \
         not this file. -->\n"
    );
    if let Some(note) = &s.note {
        let _ = writeln!(w, "> **Caveat:** {note}\n");
    }
    if s.quick {
        let _ = writeln!(
            w,
            "> This is a `--quick` run (smoke check: {} round, short intervals); use the full \
             run for numbers to compare.\n",
            s.rounds
        );
    }
    let _ = writeln!(
        w,
        "Echo servers side by side on one machine: wspeer's `examples/echo_server` (one \
         thread, `poll_with_timeout`) against tokio-tungstenite, fastwebsockets and the \
         optional Node `ws` and Godot 3 rows, driven by one load generator (`loadgen`). \
         The targets come from issue #5.\n"
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| Date | {} |", results.started);
    for (k, v) in &results.machine {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    // Double backticks: the command may hold single ones (in a --note).
    let _ = writeln!(w, "| Command | `` {} `` |", s.command.replace('|', "\\|"));
    let _ = writeln!(
        w,
        "| Raw records | `{}` (run `{}`; regenerate this page with `target/release/bench \
         --from {}`) |",
        s.raw_path, s.run_id, s.raw_path
    );
    let _ = writeln!(
        w,
        "| Method | {}; {} interleaved round(s) (every server once per round, the order \
         rotated by one server each round); each run: a fresh server, {} s warm-up, {} s \
         measured, every echo checked; total {:.0} s |",
        if s.pinned {
            "servers pinned to CPU 0 and the load generator to CPU 1 (`taskset`)"
        } else {
            "not pinned (fewer than 2 CPUs or no `taskset`)"
        },
        s.rounds,
        s.warmup,
        s.secs,
        results.elapsed.as_secs_f64()
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "![Echo benchmark results](performance.svg)\n");
    for note in &results.skipped {
        let _ = writeln!(w, "*{note}*\n");
    }

    // Targets.
    let _ = writeln!(w, "## Targets (issue #5)\n");
    let _ = writeln!(
        w,
        "Ratios are wspeer's value divided by the baseline's from the same round (against \
         the better of a baseline's two runtimes in that round); measured: median (min–max) \
         over the rounds. A target is *met* only when every round meets it, *missed* only \
         when none does, and *within noise* otherwise: the rounds disagree, so the run \
         cannot tell.\n"
    );
    let _ = writeln!(
        w,
        "| scenario | target | measured | result |\n|---|---|---|---|"
    );
    for t in targets(results) {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            t.scenario, t.target, t.measured, t.result
        );
    }
    let _ = writeln!(w);

    // Throughput.
    let _ = writeln!(w, "## Throughput\n");
    let _ = writeln!(
        w,
        "Median (min–max) over the rounds. *msgs per server CPU-s* divides the echoes by the \
         server's user+sys CPU time over the measured interval (`/proc/PID/stat`): on two \
         cores the single load-generator core often saturates before a fast server does, so \
         this is the number to compare. *client-bound* flags runs where the server \
         used less than 90 % of its CPU: the load generator was the bottleneck (or, on a \
         busy machine, the server was starved by other processes). Per-CPU-second figures \
         stay comparable; raw msgs/s do not.\n"
    );
    for sc in scenarios.iter().filter(|sc| {
        matches!(sc.kind, Kind::Echo { .. }) && sc.key != "lat" && has_runs(results, sc.key)
    }) {
        let big = sc.key == "c10x1m";
        let _ = writeln!(w, "### {}\n", sc.title);
        let (rate_h, cpu_h, rate_k, cpu_k) = if big {
            ("MB/s", "MB per server CPU-s", "mb_per_s", "mb_per_cpu")
        } else {
            ("msgs/s", "msgs per server CPU-s", "rate", "per_cpu")
        };
        let _ = writeln!(
            w,
            "| server | {rate_h} | {cpu_h} | server CPU | client CPU | RTT p50 / p99 (µs) | note |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for srv in servers_in(results, sc.key) {
            let g = |k| stat(results, sc.key, srv, k);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} / {} | {} |",
                srv.label(),
                cell(g(rate_k), num),
                cell(g(cpu_k), num),
                cell(g("server_pct"), pct),
                cell(g("client_pct"), pct),
                g("p50_us").map_or("–".into(), |v| num(v.0)),
                g("p99_us").map_or("–".into(), |v| num(v.0)),
                failures_note(results, sc.key, srv, sc.throughput)
            );
        }
        let _ = writeln!(w);
    }

    // Latency.
    if has_runs(results, "lat") {
        let _ = writeln!(w, "## Latency: 1 connection × 32 B ping-pong\n");
        let _ = writeln!(
            w,
            "Every round trip of the measured interval, from the write of the message to the \
             end of its echo, as seen by the load generator. Medians over rounds of each \
             round's percentile (min–max of the rounds' p99).\n"
        );
        let _ = writeln!(
            w,
            "| server | p50 (µs) | p99 (µs) | p99.9 (µs) | round trips/s | server CPU | note |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for srv in servers_in(results, "lat") {
            let g = |k| stat(results, "lat", srv, k);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                srv.label(),
                g("p50_us").map_or("–".into(), |v| num(v.0)),
                cell(g("p99_us"), num),
                g("p999_us").map_or("–".into(), |v| num(v.0)),
                cell(g("rate"), num),
                cell(g("server_pct"), pct),
                failures_note(results, "lat", srv, false)
            );
        }
        let _ = writeln!(w);
    }

    // Set-up.
    if has_runs(results, "setup") {
        let _ = writeln!(w, "## Connection set-up\n");
        let _ = writeln!(
            w,
            "32 connections at a time, each: TCP connect, (TLS handshake,) WebSocket \
             handshake, close frame out, close frame back. TLS is a full handshake every \
             time (no session resumption); the certificate is ECDSA P-256 from rcgen.\n"
        );
        let _ = writeln!(
            w,
            "| server | connections/s | per server CPU-s | server CPU | client CPU | p50 set-up (µs) | note |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for srv in servers_in(results, "setup") {
            let g = |k| stat(results, "setup", srv, k);
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                srv.label(),
                cell(g("rate"), num),
                cell(g("per_cpu"), num),
                cell(g("server_pct"), pct),
                cell(g("client_pct"), pct),
                g("p50_us").map_or("–".into(), |v| num(v.0)),
                failures_note(results, "setup", srv, true)
            );
        }
        let _ = writeln!(w);
    }

    // Idle.
    if has_runs(results, "idle") {
        let _ = writeln!(w, "## Idle connections\n");
        let _ = writeln!(
            w,
            "The server's VmRSS (`/proc/PID/status`) before the load generator connects and \
             0.5 s after all {} connections completed their handshake, divided by the \
             number of connections (Godot: at most {} connections, as its poll visits every \
             peer on every frame and opening 10 000 takes about 30 s). Issue #5 quotes tokio-tungstenite ≈ 135 KiB, Godot 3.2 \
             ≈ 23 KiB and Node ws ≈ 8 KiB per connection.\n",
            num(s.idle_conns as f64),
            num(crate::GODOT_IDLE_CONNS as f64)
        );
        let _ = writeln!(
            w,
            "| server | connections | KiB per connection | RSS before → after (MiB) | time to open all (s) | note |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|");
        for srv in servers_in(results, "idle") {
            let g = |k| stat(results, "idle", srv, k);
            let mib = |k| {
                g(k).map_or("–".into(), |v: (f64, f64, f64)| {
                    format!("{:.1}", v.0 / 1024.0)
                })
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} → {} | {} | {} |",
                srv.label(),
                g("conns").map_or("–".into(), |v| num(v.0)),
                g("kib_per_conn").map_or("–".into(), |v| format!("{:.1}", v.0)),
                mib("rss_before_kib"),
                mib("rss_after_kib"),
                g("open_secs").map_or("–".into(), |v| format!("{:.2}", v.0)),
                failures_note(results, "idle", srv, false)
            );
        }
        let _ = writeln!(w);
    }

    // poll().
    let _ = writeln!(w, "## `poll()` against peers and ready peers\n");
    let _ = writeln!(
        w,
        "`poll_cost`: a wspeer `WebSocketServer` in `examples/echo_server`'s configuration, \
         in a process pinned to CPU 0, with N peers connected by `loadgen --mode idle --hold` \
         (CPU 1). Before each timed `poll()` the load generator writes one 32-byte message on \
         each of exactly k peers and confirms it; after it the messages are drained, untimed. \
         {} timed calls per row, after a warm-up of a tenth as many. *ready*: messages the \
         timed call delivered, mean (k when every message had arrived). With the heartbeat \
         on ({} ms), the load generator answers every ping and the timing starts after 1.5 \
         intervals, so every peer's ping timer is armed and due ones fire inside the timed \
         calls. The same k should cost the same for every N: that is O(ready).\n",
        num(s.poll_calls as f64),
        s.poll_heartbeat_ms
    );
    if let Some(e) = &results.poll_error {
        let _ = writeln!(w, "Failed: {e}\n");
    } else {
        let _ = writeln!(
            w,
            "| peers | ready (k) | heartbeat | median (µs) | mean (µs) | p99 (µs) | ready per timed call |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        for r in &results.poll {
            let g = |k: &str| r.get(k).copied().unwrap_or(f64::NAN);
            let hb = g("heartbeat_ms");
            let _ = writeln!(
                w,
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.2} |",
                num(g("n")),
                g("k"),
                if hb > 0.0 {
                    format!("{hb} ms")
                } else {
                    "off".into()
                },
                g("median_us"),
                g("mean_us"),
                g("p99_us"),
                g("ready")
            );
        }
        let _ = writeln!(w);
    }

    // Allocations.
    let _ = writeln!(w, "## Allocations per echoed message\n");
    let _ = writeln!(
        w,
        "`alloc_count`: `examples/echo_server`'s own `server_config` and `handle_events` \
         (the file is compiled into the benchmark: `batch_writes` on, the stalled-echo map, \
         `send_packet` of the received packet) with wspeer clients in the same process and \
         a counting `#[global_allocator]` that books each allocation (reallocations \
         included) to the side whose code made it. One connection keeps one message in \
         flight; more connections pipeline several each. {} echoes per row after a warm-up \
         of a tenth as many, every one checked; a fresh server per row, with the message \
         limit the runner gives echo_server (65 535 bytes, or `--max-message` {} above \
         that). Counts are per echoed message.\n",
        num(s.alloc_msgs as f64),
        wspeer_bench::BIG_MAX_MESSAGE
    );
    if let Some(e) = &results.alloc_error {
        let _ = writeln!(w, "Failed: {e}\n");
    } else {
        let _ = writeln!(
            w,
            "| connections | in flight each | message | server allocations | server bytes | client allocations | client bytes | server polls |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
        for r in results
            .alloc
            .iter()
            .filter(|r| r.contains_key("server_allocs"))
        {
            let g = |k: &str| r.get(k).copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                w,
                "| {} | {} | {} B | {:.2} | {} | {:.2} | {} | {:.3} |",
                g("conns"),
                g("inflight"),
                g("size"),
                g("server_allocs"),
                num(g("server_bytes")),
                g("client_allocs"),
                num(g("client_bytes")),
                g("server_polls")
            );
        }
        let _ = writeln!(w);
    }

    if let Some(heap) = results
        .alloc
        .iter()
        .find(|r| r.contains_key("bytes_per_peer"))
    {
        let g = |k: &str| heap.get(k).copied().unwrap_or(f64::NAN);
        let _ = writeln!(w, "### Server heap held by an idle peer\n");
        let _ = writeln!(
            w,
            "The same binary then opens {} idle connections from wspeer clients in the \
             process and counts the server's allocations still live once they are open: \
             **{:.1} KiB per peer** in {:.0} allocations, {:.1} KiB of it in tables that \
             grow with the peer count (the slab of peers, the id map). Compare with the RSS \
             per connection above (which adds allocator overhead). The largest live \
             allocations per peer:\n",
            num(g("n")),
            g("bytes_per_peer") / 1024.0,
            g("allocs_per_peer"),
            g("large_bytes_per_peer") / 1024.0
        );
        let _ = writeln!(w, "| allocation size (bytes) | live per peer |\n|---|---|");
        for r in results.alloc.iter().filter(|r| r.contains_key("per_peer")) {
            let _ = writeln!(
                w,
                "| {} | {:.2} |",
                r.get("size").copied().unwrap_or(f64::NAN),
                r.get("per_peer").copied().unwrap_or(f64::NAN)
            );
        }
        let _ = writeln!(w);
    }

    // Method.
    let _ = writeln!(w, "## How it is measured\n");
    let _ = writeln!(
        w,
        "- **Load generator** (`bench/src/bin/loadgen.rs`): its own process, one thread, \
         mio, pre-built masked frames written with `writev`, and a parser that \
         checks echoes in place (no payload copy), like uWebSockets' `load_test.c`. Each \
         connection keeps \
         its messages in flight and sends the next one when an echo completes. The \
         counters are read after the warm-up and again at the end, together with both \
         processes' CPU times.\n\
         - **Servers**: wspeer is the real `examples/echo_server --quiet` (ws, and wss with \
         `--cert/--key` from a CA generated by rcgen). tokio-tungstenite (`tt_echo`) is its \
         `echo-server` example (accept, split, forward); fastwebsockets (`fws_echo`) is its \
         `echo_server` example (hyper upgrade, `FragmentCollector`). Both baselines set \
         TCP_NODELAY as wspeer does; their multi-thread runtime has tokio's default worker \
         count, which follows the CPU affinity (one worker when pinned to CPU 0). Node runs \
         `bench/node/echo.js` (ws 8, no permessage-deflate); Godot runs \
         `bench/godot/echo.gd` with `godot3-server` (its main loop sleeps 6.9 ms per frame \
         by default; the script sets that to 0, so Godot spins at 100 % CPU and its per-CPU \
         numbers are its raw rate).\n\
         - **Scenarios**: one message in flight per connection unless stated; binary \
         messages, except text in the 1 × 32 B latency run; every server gets a fresh \
         process for every run; the order of servers rotates by one each round.\n\
         - **Echoes are checked**: the load generator compares every echo with what it \
         sent (type, length, every byte, as it arrives); a run with any mismatch is a failed \
         run (its numbers stay in the raw records) and the runner exits with an error.\n\
         - The host is shared with whatever else runs on it: read min–max before trusting \
         a median."
    );
    md
}

fn has_runs(results: &Results, scenario: &str) -> bool {
    results.runs.iter().any(|r| r.scenario == scenario)
}

fn servers_in(results: &Results, scenario: &str) -> Vec<Srv> {
    results
        .servers
        .iter()
        .copied()
        .filter(|srv| {
            results
                .runs
                .iter()
                .any(|r| r.scenario == scenario && r.srv == *srv)
        })
        .collect()
}

// ----- the plot -----

struct Panel {
    title: String,
    bars: Vec<(Srv, f64, f64, f64)>,
}

fn colour(srv: Srv) -> RGBColor {
    match srv {
        Srv::Wspeer => RGBColor(31, 119, 180),
        Srv::WspeerWss => RGBColor(120, 175, 220),
        Srv::TtMulti => RGBColor(214, 39, 40),
        Srv::TtCurrent => RGBColor(240, 130, 130),
        Srv::FwsCurrent => RGBColor(44, 160, 44),
        Srv::FwsMulti => RGBColor(140, 210, 130),
        Srv::Node => RGBColor(255, 127, 14),
        Srv::Godot => RGBColor(148, 103, 189),
    }
}

fn panel(results: &Results, title: &str, scenario: &str, key: &str, scale: f64) -> Panel {
    // Servers whose every run failed keep their row, marked "failed".
    let bars = servers_in(results, scenario)
        .into_iter()
        .map(|srv| match stat(results, scenario, srv, key) {
            Some((m, lo, hi)) => (srv, m / scale, lo / scale, hi / scale),
            None => (srv, f64::NAN, f64::NAN, f64::NAN),
        })
        .collect();
    Panel {
        title: title.into(),
        bars,
    }
}

pub fn plot(results: &Results, _scenarios: &[Scenario], path: &Path) -> Result<(), String> {
    let panels = vec![
        panel(
            results,
            "100 × 20 B: k msgs per server CPU-s",
            "c100x20",
            "per_cpu",
            1e3,
        ),
        panel(
            results,
            "100 × 16 × 64 B: k msgs per server CPU-s",
            "c100x16x64",
            "per_cpu",
            1e3,
        ),
        panel(
            results,
            "100 × 1 KiB: k msgs per server CPU-s",
            "c100x1k",
            "per_cpu",
            1e3,
        ),
        panel(
            results,
            "200 × 16 KiB: k msgs per server CPU-s",
            "c200x16k",
            "per_cpu",
            1e3,
        ),
        panel(results, "10 × 1 MiB: MB/s", "c10x1m", "mb_per_s", 1.0),
        panel(
            results,
            "1 × 32 B: p99 round trip, µs (lower is better)",
            "lat",
            "p99_us",
            1.0,
        ),
        panel(results, "Set-up: k connections/s", "setup", "rate", 1e3),
        panel(
            results,
            "Idle: KiB RSS per connection (lower is better)",
            "idle",
            "kib_per_conn",
            1.0,
        ),
    ];
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (1600, 860)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(50);
    let mut caption = format!(
        "wspeer echo benchmark, {} — median with min–max over {} round(s)",
        results.started, results.settings.rounds
    );
    if results.settings.note.is_some() {
        caption.push_str(" (noisy machine: see docs/performance.md)");
    }
    head.draw_text(
        &caption,
        &("sans-serif", 20).into_font().color(&BLACK),
        (20, 15),
    )
    .map_err(|e| err(&e))?;
    let areas = body.split_evenly((2, 4));
    for (area, p) in areas.iter().zip(panels) {
        draw_panel(area, &p).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = p.bars.len().max(1) as i32;
    let top = p
        .bars
        .iter()
        .map(|b| b.3.max(b.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(70)
        // `a..b` segments include `b`: n rows are 0..n-1.
        .build_cartesian_2d(0f64..top, (0..n - 1).into_segmented())?;
    let labels: Vec<&str> = p.bars.iter().map(|b| b.0.key()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n as usize)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).copied().unwrap_or("").into(),
            _ => String::new(),
        })
        .x_labels(5)
        .x_label_formatter(&|v| num(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.15))
        .label_style(("sans-serif", 12))
        .draw()?;
    if p.bars.is_empty() {
        area.draw_text(
            "no data",
            &("sans-serif", 14).into_font().color(&BLACK),
            (120, 120),
        )?;
        return Ok(());
    }
    let ok = |b: &&(Srv, f64, f64, f64)| b.1.is_finite();
    chart.draw_series(
        p.bars
            .iter()
            .enumerate()
            .filter(|(_, b)| ok(b))
            .map(|(i, b)| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i as i32)),
                        (b.1, SegmentValue::Exact(i as i32 + 1)),
                    ],
                    colour(b.0).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }),
    )?;
    chart.draw_series(
        p.bars
            .iter()
            .enumerate()
            .filter(|(_, b)| ok(b))
            .map(|(i, b)| {
                PathElement::new(
                    vec![
                        (b.2, SegmentValue::CenterOf(i as i32)),
                        (b.3, SegmentValue::CenterOf(i as i32)),
                    ],
                    BLACK.stroke_width(2),
                )
            }),
    )?;
    chart.draw_series(p.bars.iter().enumerate().map(|(i, b)| {
        let (text, x) = if b.1.is_finite() {
            (format!(" {}", num(b.1)), b.3.max(b.1))
        } else {
            (" failed (see the tables)".to_string(), 0.0)
        };
        Text::new(
            text,
            (x, SegmentValue::CenterOf(i as i32)),
            ("sans-serif", 12).into_font().color(&BLACK),
        )
    }))?;
    Ok(())
}
