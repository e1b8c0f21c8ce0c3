//! The raw records of a run (JSON Lines, see `wspeer_bench::record`): everything the report
//! is made of, so that `bench --from FILE` regenerates `docs/performance.md` from the file
//! alone. One `meta` record (the run's settings, commit, command), then `machine`,
//! `server`, `skipped`, one `run` record per server × scenario × round with every number
//! measured, then the `poll`, `heartbeat` and `alloc` rows. Files written before a kind
//! of record existed still read: what they lack is reported as not measured.

use std::collections::HashMap;
use std::time::Duration;

use wspeer_bench::record::{Record, Value};

use crate::{Results, Run, Settings, Srv, scenarios};

/// The format of these records; bumped when a field changes meaning.
const FORMAT: f64 = 1.0;

fn numbers(record: &mut Record, m: &HashMap<String, f64>) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        record.set(k, m[k]);
    }
}

/// Every record of `results`, one JSON object per line.
pub fn to_jsonl(results: &Results) -> String {
    let s = &results.settings;
    let mut out = Vec::new();
    let mut meta = Record::new("meta");
    meta.set("format", FORMAT);
    meta.set("run_id", s.run_id.as_str());
    meta.set("started", results.started.as_str());
    meta.set("elapsed_ns", results.elapsed.as_nanos() as f64);
    meta.set("commit", results.commit.as_str());
    meta.set("dirty", results.dirty.join("\n"));
    meta.set("command", s.command.as_str());
    meta.set("quick", s.quick);
    meta.set("rounds", s.rounds);
    meta.set("warmup", s.warmup);
    meta.set("secs", s.secs);
    meta.set("idle_conns", s.idle_conns);
    meta.set("poll_ns", s.poll_ns.as_str());
    meta.set("poll_ks", s.poll_ks.as_str());
    meta.set("poll_heartbeat_ms", s.poll_heartbeat_ms as f64);
    meta.set("poll_calls", s.poll_calls);
    meta.set("hb_peers", s.hb_peers);
    meta.set("hb_interval_ms", s.hb_interval_ms as f64);
    meta.set("hb_blocks", s.hb_blocks);
    meta.set("hb_block_secs", s.hb_block_secs);
    meta.set("alloc_msgs", s.alloc_msgs);
    meta.set("note", s.note.clone());
    meta.set("pinned", s.pinned);
    meta.set("raw_path", s.raw_path.as_str());
    out.push(meta);
    for (k, v) in &results.machine {
        let mut r = Record::new("machine");
        r.set("key", k.as_str());
        r.set("value", v.as_str());
        out.push(r);
    }
    for srv in &results.servers {
        let mut r = Record::new("server");
        r.set("server", srv.key());
        out.push(r);
    }
    for text in &results.skipped {
        let mut r = Record::new("skipped");
        r.set("text", text.as_str());
        out.push(r);
    }
    for run in &results.runs {
        let mut r = Record::new("run");
        r.set("scenario", run.scenario);
        r.set("server", run.srv.key());
        r.set("round", run.round);
        r.set("order", run.order);
        r.set("error", run.error.clone());
        numbers(&mut r, &run.m);
        out.push(r);
    }
    for (kind, rows, error) in [
        ("poll", &results.poll, &results.poll_error),
        ("heartbeat", &results.heartbeat, &results.heartbeat_error),
        ("alloc", &results.alloc, &results.alloc_error),
    ] {
        for row in rows {
            let mut r = Record::new(kind);
            numbers(&mut r, row);
            out.push(r);
        }
        if let Some(e) = error {
            let mut r = Record::new(&format!("{kind}_error"));
            r.set("text", e.as_str());
            out.push(r);
        }
    }
    let mut text: String = out.iter().map(|r| r.to_json() + "\n").collect();
    if text.is_empty() {
        text.push('\n');
    }
    text
}

/// The numbers of a record, without the fields in `skip`.
fn numbers_of(r: &Record, skip: &[&str]) -> HashMap<String, f64> {
    r.0.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter_map(|(k, v)| match v {
            Value::Num(n) => Some((k.clone(), *n)),
            _ => None,
        })
        .collect()
}

/// Reads what [`to_jsonl`] wrote.
pub fn from_jsonl(text: &str) -> Result<Results, String> {
    let all = scenarios();
    let mut meta: Option<Record> = None;
    let mut results = Results {
        settings: Settings {
            quick: false,
            rounds: 0,
            warmup: 0.0,
            secs: 0.0,
            idle_conns: 0,
            poll_ns: String::new(),
            poll_ks: String::new(),
            poll_heartbeat_ms: 0,
            poll_calls: 0,
            hb_peers: 0,
            hb_interval_ms: 0,
            hb_blocks: 0,
            hb_block_secs: 0.0,
            alloc_msgs: 0,
            note: None,
            pinned: false,
            command: String::new(),
            run_id: String::new(),
            raw_path: String::new(),
        },
        commit: String::new(),
        dirty: Vec::new(),
        machine: Vec::new(),
        servers: Vec::new(),
        skipped: Vec::new(),
        runs: Vec::new(),
        poll: Vec::new(),
        poll_error: None,
        heartbeat: Vec::new(),
        heartbeat_error: None,
        alloc: Vec::new(),
        alloc_error: None,
        started: String::new(),
        elapsed: Duration::ZERO,
    };
    let srv_of = |r: &Record, n: usize| -> Result<Srv, String> {
        let key = r.str("server").unwrap_or("");
        Srv::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or(format!("line {n}: unknown server {key:?}"))
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let r = Record::parse(line).map_err(|e| format!("line {n}: {e}"))?;
        let text_of = |r: &Record| r.str("text").unwrap_or("").to_string();
        match r.kind() {
            "meta" => meta = Some(r),
            "machine" => results.machine.push((
                r.str("key").unwrap_or("").to_string(),
                r.str("value").unwrap_or("").to_string(),
            )),
            "server" => results.servers.push(srv_of(&r, n)?),
            "skipped" => results.skipped.push(text_of(&r)),
            "run" => {
                let name = r.str("scenario").unwrap_or("");
                let scenario = all
                    .iter()
                    .find(|s| s.key == name)
                    .ok_or(format!("line {n}: unknown scenario {name:?}"))?
                    .key;
                results.runs.push(Run {
                    scenario,
                    srv: srv_of(&r, n)?,
                    round: r.num("round").unwrap_or(0.0) as usize,
                    order: r.num("order").unwrap_or(0.0) as usize,
                    error: r.str("error").map(String::from),
                    m: numbers_of(&r, &["round", "order"]),
                });
            }
            "poll" => results.poll.push(numbers_of(&r, &[])),
            "heartbeat" => results.heartbeat.push(numbers_of(&r, &[])),
            "alloc" => results.alloc.push(numbers_of(&r, &[])),
            "poll_error" => results.poll_error = Some(text_of(&r)),
            "heartbeat_error" => results.heartbeat_error = Some(text_of(&r)),
            "alloc_error" => results.alloc_error = Some(text_of(&r)),
            other => return Err(format!("line {n}: unknown record {other:?}")),
        }
    }
    let meta = meta.ok_or("no meta record: not a raw records file of the bench runner")?;
    if meta.num("format") != Some(FORMAT) {
        return Err(format!(
            "record format {:?}, expected {FORMAT}",
            meta.get("format")
        ));
    }
    let num = |k: &str| meta.num(k).unwrap_or(0.0);
    let string = |k: &str| meta.str(k).unwrap_or("").to_string();
    results.settings = Settings {
        quick: meta.bool("quick").unwrap_or(false),
        rounds: num("rounds") as usize,
        warmup: num("warmup"),
        secs: num("secs"),
        idle_conns: num("idle_conns") as usize,
        poll_ns: string("poll_ns"),
        poll_ks: string("poll_ks"),
        poll_heartbeat_ms: num("poll_heartbeat_ms") as u64,
        poll_calls: num("poll_calls") as usize,
        hb_peers: num("hb_peers") as usize,
        hb_interval_ms: num("hb_interval_ms") as u64,
        hb_blocks: num("hb_blocks") as usize,
        hb_block_secs: num("hb_block_secs"),
        alloc_msgs: num("alloc_msgs") as usize,
        note: meta.str("note").map(String::from),
        pinned: meta.bool("pinned").unwrap_or(false),
        command: string("command"),
        run_id: string("run_id"),
        raw_path: string("raw_path"),
    };
    results.commit = string("commit");
    results.dirty = meta
        .str("dirty")
        .unwrap_or("")
        .lines()
        .map(String::from)
        .collect();
    results.started = string("started");
    results.elapsed = Duration::from_nanos(num("elapsed_ns") as u64);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;

    fn sample() -> Results {
        let m = |pairs: &[(&str, f64)]| -> HashMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let mut runs = Vec::new();
        for round in 0..2 {
            for (order, srv) in [Srv::Wspeer, Srv::TtMulti, Srv::TtCurrent, Srv::FwsCurrent]
                .into_iter()
                .enumerate()
            {
                let base = 1000.0 * (order as f64 + 1.0) + round as f64 * 0.123_456_789;
                runs.push(Run {
                    scenario: "c100x20",
                    srv,
                    round,
                    order,
                    m: m(&[
                        ("count", base * 2.0),
                        ("secs", 2.000_1),
                        ("per_cpu", base / 0.97),
                        ("server_pct", 97.5),
                        ("mismatches", 0.0),
                    ]),
                    error: None,
                });
            }
        }
        runs.push(Run {
            scenario: "lat",
            srv: Srv::Wspeer,
            round: 0,
            order: 0,
            m: m(&[("p99_us", 42.5), ("mismatches", 3.0)]),
            error: Some("3 echoes differed | \"quoted\"".into()),
        });
        Results {
            settings: Settings {
                quick: false,
                rounds: 2,
                warmup: 1.0,
                secs: 5.0,
                idle_conns: 10_000,
                poll_ns: "100,10000".into(),
                poll_ks: "0,10,100".into(),
                poll_heartbeat_ms: 1000,
                poll_calls: 5000,
                hb_peers: 10_000,
                hb_interval_ms: 30_000,
                hb_blocks: 5,
                hb_block_secs: 3.0,
                alloc_msgs: 20_000,
                note: Some("a `note`".into()),
                pinned: true,
                command: "bash bench/run.sh --note 'x'".into(),
                run_id: "20260101-0000Z".into(),
                raw_path: "docs/bench/20260101-0000Z.jsonl".into(),
            },
            commit: "0123456789abcdef".into(),
            dirty: vec!["bench/run.sh".into(), "src/lib.rs".into()],
            machine: vec![("CPU".into(), "x, 2 logical CPUs".into())],
            servers: vec![Srv::Wspeer, Srv::TtMulti, Srv::TtCurrent, Srv::FwsCurrent],
            skipped: vec!["Node ws row skipped".into()],
            runs,
            poll: vec![m(&[("n", 100.0), ("k", 0.0), ("median_us", 0.31)])],
            poll_error: None,
            heartbeat: vec![
                m(&[("block", 0.0), ("ping_round_us", 30.5), ("ratio", 1.5)]),
                m(&[("all", 1.0), ("ping_round_us", 30.0), ("ratio", 1.4)]),
            ],
            heartbeat_error: Some("heartbeat \"failed\"".into()),
            alloc: vec![m(&[("conns", 1.0), ("size", 32.0), ("server_allocs", 0.0)])],
            alloc_error: Some("alloc failed".into()),
            started: "2026-01-01 00:00 UTC".into(),
            elapsed: Duration::from_nanos(1_234_567_891_234),
        }
    }

    #[test]
    fn records_round_trip_to_the_same_results_and_report() {
        let results = sample();
        let text = to_jsonl(&results);
        assert_eq!(text.lines().count(), 1 + 1 + 4 + 1 + 9 + 1 + 2 + 1 + 1 + 1);
        let back = from_jsonl(&text).unwrap();
        assert_eq!(back, results);
        let list = scenarios();
        assert_eq!(
            report::markdown(&back, &list, None),
            report::markdown(&results, &list, None)
        );
        // Every measured number is in the file as written.
        assert!(text.contains(r#""per_cpu":1030.9278350515465"#), "{text}");
    }

    #[test]
    fn records_written_before_issue_11_still_read_and_render() {
        // The meta of such a file has no hb_* settings, and there are no heartbeat records.
        let text: String = to_jsonl(&sample())
            .lines()
            .filter(|l| !l.starts_with(r#"{"record":"heartbeat"#))
            .map(|l| {
                let mut r = Record::parse(l).unwrap();
                r.0.retain(|(k, _)| !k.starts_with("hb_"));
                r.to_json() + "\n"
            })
            .collect();
        assert!(
            !text.contains("hb_") && !text.contains(r#""record":"heartbeat"#),
            "{text}"
        );
        let old = from_jsonl(&text).unwrap();
        assert_eq!((old.settings.hb_peers, old.heartbeat.len()), (0, 0));
        assert_eq!(old.heartbeat_error, None);
        let md = report::markdown(&old, &scenarios(), None);
        assert!(
            md.contains("| heartbeat ping/pong round | ≤ 1.0× an echo")
                && md.contains("Not measured in this run (`poll_cost --mode heartbeat`"),
            "{md}"
        );
        assert!(
            md.contains("| 1 000 × 4 in flight × 64 B, msgs per server CPU-second | ≥ 1.0× fastwebsockets (the better of current- and multi-thread) | – | not measured (not in this run) |"),
            "{md}"
        );
    }

    #[test]
    fn a_file_without_meta_or_with_unknown_records_is_refused() {
        let text = to_jsonl(&sample());
        let no_meta: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(from_jsonl(&no_meta).unwrap_err().contains("no meta"));
        assert!(from_jsonl(&(text.clone() + "{\"record\":\"what\"}\n")).is_err());
        assert!(from_jsonl("not json\n").is_err());
    }
}
