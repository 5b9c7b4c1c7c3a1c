//! The results as markdown: the machine, the side-by-side table, the ratios, the
//! cleanup. Printed and written to target/bench/results.md.

use std::fmt::Write;

use crate::cleanup::Outcome;
use crate::http::{Plan, Row};
use crate::load::{Kind, Measured};
use crate::machine::Machine;
use crate::records;
use crate::servers::Target;

pub struct Report {
    text: String,
    failed: bool,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn secs_ms(d: std::time::Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

impl Report {
    pub fn new(machine: &Machine, profile: &str, plan: &Plan, smoke: bool) -> Self {
        let mut text = String::from("# Guestpass benchmark\n\n");
        text += &machine.markdown();
        let _ = writeln!(
            text,
            "- guestpass-server: `{profile}` build; {} s per cell{}, connections {:?}; load average at start {}{}",
            plan.duration.as_secs(),
            plan.warmup.map_or(String::new(), |w| format!(" after a {} s warm-up", w.as_secs())),
            plan.connections,
            loadavg(),
            if smoke { "; SMOKE RUN (figures meaningless)" } else { "" }
        );
        Self {
            text,
            failed: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    pub fn http(&mut self, rows: &[Row]) {
        let t = &mut self.text;
        t.push_str("\n## Requests, side by side\n\n");
        t.push_str("Each cell: a freshly started server, the same wrk script, the same time. Errors are responses with status ≥ 400 plus socket errors (must be 0). Peak RSS is the server process's VmHWM. CPU s is each process's CPU time (user + system) during the measured run: the server's own process, wrk (the load generator, on the same 2 cores), and every PostgreSQL process (PostgreSQL cells). CPU µs/req is the server's CPU time per answered request; for PostgreSQL cells the second figure adds PostgreSQL's. It drifts far less with the machine than req/s.\n\n");
        t.push_str("| request | conns | server | storage | req/s | p50 ms | p99 ms | errors | peak RSS MiB | CPU s: server / wrk / PostgreSQL | CPU µs/req: server (+ PostgreSQL) |\n");
        t.push_str("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in rows {
            let m = &r.measured;
            let errors = match &r.note {
                Some(n) => format!("{} ({n})", m.errors()),
                None => m.errors().to_string(),
            };
            if m.errors() > 0 || r.note.is_some() || m.requests == 0 {
                self.failed = true;
            }
            let c = &r.cpu;
            let pg_s = c.postgres_s.map_or("–".into(), |p| format!("{p:.2}"));
            let per_req = match (
                c.server_us_per_request(m.requests),
                c.with_db_us_per_request(m.requests),
            ) {
                (Some(own), Some(all)) => format!("{own:.0} ({all:.0})"),
                (Some(own), None) => format!("{own:.0}"),
                _ => "–".into(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.2} / {:.2} / {pg_s} | {per_req} |",
                r.kind.label(),
                r.connections,
                r.target.server(),
                r.target.storage(),
                m.per_sec(),
                ms(m.p50_us),
                ms(m.p99_us),
                errors,
                mib(r.peak_rss_kib),
                c.server_s,
                c.load_s,
            );
        }
        t.push_str("\n## Guestpass / Better Auth\n\n");
        t.push_str("Throughput ratios (higher is better for Guestpass) and a peak RSS ratio (Better Auth's over Guestpass's: higher means Guestpass uses less). The like-for-like one is PostgreSQL / PostgreSQL: both durable, on the same PostgreSQL server; Better Auth in memory writes nothing.\n\n");
        t.push_str("| request | conns | req/s: Guestpass SQLite / Better Auth memory | req/s: Guestpass PostgreSQL / Better Auth memory | req/s: Guestpass PostgreSQL / Better Auth PostgreSQL | RSS: Better Auth memory / Guestpass SQLite |\n");
        t.push_str("|---|---:|---:|---:|---:|---:|\n");
        let find = |kind: Kind, c: usize, pick: fn(&Target) -> bool| {
            rows.iter()
                .find(|r| r.kind == kind && r.connections == c && pick(&r.target))
        };
        let mut cells: Vec<(Kind, usize)> = rows.iter().map(|r| (r.kind, r.connections)).collect();
        cells.dedup();
        for (kind, c) in cells {
            let ba = find(kind, c, |t| *t == Target::BetterAuthMemory);
            let ba_pg = find(kind, c, |t| matches!(t, Target::BetterAuthPostgres { .. }));
            let sqlite = find(kind, c, |t| *t == Target::GuestpassSqlite);
            let pg = find(kind, c, |t| matches!(t, Target::GuestpassPostgres { .. }));
            let ratio = |gp: Option<&Row>, ba: Option<&Row>| match (gp, ba) {
                (Some(g), Some(b)) if b.measured.per_sec() > 0.0 => {
                    format!("{:.1}×", g.measured.per_sec() / b.measured.per_sec())
                }
                _ => "–".into(),
            };
            let rss = match (sqlite, ba) {
                (Some(g), Some(b)) if g.peak_rss_kib > 0 => {
                    format!("{:.1}×", b.peak_rss_kib as f64 / g.peak_rss_kib as f64)
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                t,
                "| {} | {c} | {} | {} | {} | {rss} |",
                kind.label(),
                ratio(sqlite, ba),
                ratio(pg, ba),
                ratio(pg, ba_pg)
            );
        }
        t.push_str("\nRead with care:\n\
- Durable: every Guestpass row (it commits every sign-in and upgrade to SQLite (WAL) or PostgreSQL before answering) and the Better Auth PostgreSQL row (a `pg` Pool on the same PostgreSQL server, a fresh database per cell, Better Auth's own schema; each write is committed before it answers). Not durable: the Better Auth in-memory row (nothing written to disk, all lost on restart), which flatters it: it is the upper bound of Better Auth's own code, not a deployment.\n\
- The PostgreSQL rows' RSS is the server process only (Guestpass's binary, Better Auth's node); PostgreSQL's own processes are not counted.\n\
- The email upgrade is bound by the password hash, at each server's recommended default: Guestpass argon2id m=19 MiB, t=2, p=1 (OWASP); Better Auth scrypt N=16384, r=16, p=1. Its throughput is roughly cores ÷ hash time, not a measure of the server.\n\
- Better Auth's upgrade is its own link: `POST /sign-up/email` with the guest's bearer token (a new user; the guest is deleted). Guestpass's is `POST /anonymous/upgrade` (the same user, in place).\n\
- get-session uses one pre-created live session per wrk thread; the sessions are checked live before and after the run (both servers answer 200 `null` for a dead one).\n");
    }

    pub fn cleanup(&mut self, outcomes: &[Outcome], failures: &[String]) {
        let t = &mut self.text;
        t.push_str("\n## Cleanup of stale guests\n\n");
        t.push_str("Seeded with SQL: N guests inactive for 60 days (maxAge 30 days), each with a session and an audit row. `guestpass-server admin cleanup` (the periodic task's pass) runs while wrk sends get-session on live guests. Checked afterwards: no stale guest left, exactly one `user.deleted` by `system` per guest, live guests still signed in. Targets: 1,000,000 under 25 s, get-session p99 under 10 ms meanwhile. Cleanup CPU s is the admin process's own CPU time (user + system; PostgreSQL's work is in its server processes, not counted): on a busy machine compare it with the wall time.\n\n");
        t.push_str("| storage | stale guests | seed s | cleanup s | cleanup CPU s | guests/s | get-session conns | p50 / p99 ms before | p50 / p99 ms during | req/s during | errors | server peak RSS MiB |\n");
        t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for o in outcomes {
            let errors = o.before.errors() + o.during.errors();
            if errors > 0 {
                self.failed = true;
            }
            let lat = |m: &Measured| format!("{} / {}", ms(m.p50_us), ms(m.p99_us));
            let _ = writeln!(
                t,
                "| {} | {} | {:.1} | {:.1} | {} | {:.0} | {} | {} | {} | {:.0} | {errors} | {} |",
                o.target.storage(),
                o.guests,
                o.seed_secs,
                o.cleanup_secs,
                o.cleanup_cpu_secs
                    .map_or_else(|| "?".to_string(), |c| format!("{c:.1}")),
                o.deleted as f64 / o.cleanup_secs.max(1e-9),
                o.connections,
                lat(&o.before),
                lat(&o.during),
                o.during.per_sec(),
                mib(o.peak_rss_kib)
            );
        }
        for f in failures {
            self.failed = true;
            let _ = writeln!(t, "\n- {f}");
        }
    }

    /// Record sync: the devices' figures (or why they failed) and the load rows.
    pub fn records(&mut self, device: Result<&records::Outcome, &str>, rows: &[Row]) {
        let t = &mut self.text;
        t.push_str("\n## Record sync\n\n");
        t.push_str("Real devices (guestpass-core, a SQLite file and a keyring service each) against `guestpass-server` on SQLite. The new device is a copy of A's data folder taken after A registered and before any note, so its first pass pulls everything; its time runs until it lists every note. The idle pass is a pass with nothing to do; its requests are counted by a loopback relay in front of the server. Live: A writes a note and syncs, B runs its own loop on `/sync/events`, the clock stops when B lists the note. No timing is asserted.\n\n");
        match device {
            Ok(o) => {
                let pick = |q: f64| {
                    let i = ((o.live.len() as f64 - 1.0) * q).round() as usize;
                    o.live.get(i).map_or_else(|| "–".into(), |d| secs_ms(*d))
                };
                t.push_str("| device step | size | ms |\n|---|---:|---:|\n");
                let _ = writeln!(t, "| new device: first sync until it lists every note (target < 2 s) | {} notes | {} |", o.notes, secs_ms(o.first_sync));
                let _ = writeln!(
                    t,
                    "| seeding device: push of its notes (one pass) | {} changes | {} |",
                    o.notes,
                    secs_ms(o.seed_push)
                );
                let _ = writeln!(
                    t,
                    "| one device: push of new changes (one pass) | {} changes | {} |",
                    o.push,
                    secs_ms(o.push_pass)
                );
                let _ = writeln!(
                    t,
                    "| idle pass (nothing to do) | {} HTTP request(s){}: {} | {} |",
                    o.idle_requests.len(),
                    // Issue 12 wants one; say so where it is not, without failing CI.
                    if o.idle_requests.len() == 1 {
                        ""
                    } else {
                        " (issue 12: one)"
                    },
                    o.idle_requests
                        .iter()
                        .map(|l| format!("`{}`", l.trim_end_matches(" HTTP/1.1")))
                        .collect::<Vec<_>>()
                        .join(", "),
                    secs_ms(o.idle_pass)
                );
                let _ = writeln!(
                    t,
                    "| live delay A → B, p50 | {} rounds | {} |",
                    o.live.len(),
                    pick(0.5)
                );
                let _ = writeln!(
                    t,
                    "| live delay A → B, p99 | {} rounds | {} |",
                    o.live.len(),
                    pick(0.99)
                );
            }
            Err(e) => {
                self.failed = true;
                let _ = writeln!(t, "- devices: FAILED: {e}");
            }
        }
        t.push_str(
            "\n| request | conns | storage | req/s | p50 ms | p99 ms | errors | peak RSS MiB |\n",
        );
        t.push_str("|---|---:|---|---:|---:|---:|---:|---:|\n");
        for r in rows {
            let m = &r.measured;
            if m.errors() > 0 || r.note.is_some() || m.requests == 0 {
                self.failed = true;
            }
            let errors = match &r.note {
                Some(n) => format!("{} ({n})", m.errors()),
                None => m.errors().to_string(),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.0} | {} | {} | {errors} | {} |",
                r.kind.label(),
                r.connections,
                r.target.storage(),
                m.per_sec(),
                ms(m.p50_us),
                ms(m.p99_us),
                mib(r.peak_rss_kib)
            );
        }
        t.push_str("\nPush: one new note change per request, each connection its own guest. Pull: the first page (100 changes) of a guest holding 100, checked full after the run.\n");
    }

    pub fn finish(mut self) -> String {
        let _ = writeln!(self.text, "\nLoad average at the end: {}.", loadavg());
        self.text
    }
}
