//! Deterministic simulation of many Tally processes over one faulty store (seeded, single
//! threaded): ambiguous and failed requests, late and duplicate writes, crashes at any await
//! point, skewed clocks that step back. After each run, faults off and everything
//! consolidated, a checker audits every mutation against what its caller was told.
//!
//! `TALLY_SIM_SEEDS=N` runs N seeds (from `TALLY_SIM_FIRST`, default 1); `TALLY_SIM_SEED=S`
//! replays one seed and prints its trace. The last line is
//! `simulation: N seeds, P passed, F failed`; any failure exits non-zero and names the seed.

mod sim {
    pub mod check;
    pub mod workload;
    pub mod world;
}

use futures::future::BoxFuture;
use sim::workload::{self, Ledger, Process, RECORDS};
use sim::world::{Faults, World};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Round-robin polling of boxed futures; a crash drops a future at its current await point.
#[derive(Default)]
struct Executor {
    tasks: Vec<(String, Option<BoxFuture<'static, ()>>)>,
}

impl Executor {
    fn spawn(&mut self, name: &str, f: BoxFuture<'static, ()>) {
        self.tasks.push((name.to_string(), Some(f)));
    }
    fn poll_all(&mut self) {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        for (_, slot) in &mut self.tasks {
            if let Some(f) = slot
                && let Poll::Ready(()) = f.as_mut().poll(&mut cx)
            {
                *slot = None;
            }
        }
    }
    fn live(&self) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&i| self.tasks[i].1.is_some())
            .collect()
    }
    /// Runs until every task is done and no request waits. False on a livelock.
    fn run(&mut self, world: &World, mut on_step: impl FnMut(&mut Executor) -> bool) -> bool {
        let mut idle = 0;
        loop {
            self.poll_all();
            let live = self.live().len();
            if live == 0 && !world.busy() {
                return true;
            }
            if world.queued() > 0 || live == 0 {
                world.step();
                idle = 0;
                if !on_step(self) {
                    return false;
                }
            } else {
                idle += 1;
                if idle > 100_000 {
                    return false;
                }
            }
        }
    }
}

struct Run {
    host: bool,
    requests: i64,
    acked: usize,
    failed: usize,
    crashes: usize,
}

fn run_seed(seed: u64, trace: bool) -> Result<Run, Vec<String>> {
    let mut plan = sim::world::Rng::new(seed);
    let on = |k: &str| enabled(k);
    let rate = |k: &str, r: u64| {
        if !seed.is_multiple_of(5) && on(k) {
            r
        } else {
            0
        }
    };
    let faults = Faults {
        fail_before: rate("before", 15),
        fail_after: rate("after", 15),
        late: rate("late", 10),
        duplicate: rate("dup", 10),
        replayed: rate("replay", 10),
        read_fail: rate("read", 10),
    };
    let world = World::new(seed, 1_764_000_000_000, faults, trace);
    let r = drive(seed, &world, &mut plan);
    if trace {
        for line in world.take_trace() {
            println!("{line}");
        }
    }
    r
}

fn drive(seed: u64, world: &Arc<World>, plan: &mut sim::world::Rng) -> Result<Run, Vec<String>> {
    let world = world.clone();
    let retention = if plan.below(3) == 0 { 0.0 } else { 30.0 };
    // Half the runs materialize analytics (inbox entries, folds, packed objects).
    let analytics = plan.below(2) == 0;
    // One run in three keeps its records in a host database (the s3db.js seam).
    let host = (plan.below(3) == 1).then(|| Arc::new(workload::SimHost::default()));
    let ledger = Arc::new(Ledger::default());
    // Setup without faults: the resource and its records.
    world.set_faults(false);
    let setup = Arc::new(workload::process(
        &world,
        "setup",
        &workload::config(false, retention, analytics),
        seed,
        0,
        None,
    ));
    let mut ex = Executor::default();
    {
        let p = setup.clone();
        let h = host.clone();
        ex.spawn(
            "setup",
            Box::pin(async move {
                let r =
                    p.db.create_resource("wallets", &workload::schema())
                        .await
                        .expect("resource");
                for id in RECORDS {
                    match (&h, workload::initial(id)) {
                        (Some(h), serde_json::Value::Object(m)) => {
                            h.records.lock().unwrap().insert(id.to_string(), m);
                        }
                        (_, data) => {
                            r.insert(&data).await.expect("insert");
                        }
                    }
                }
            }),
        );
    }
    if !ex.run(&world, |_| true) {
        return Err(vec!["setup did not finish".into()]);
    }
    world.set_faults(true);
    let n = 3 + plan.below(3) as usize;
    let steps = 30;
    let mut spawned = 0u64;
    let mut spawn =
        |ex: &mut Executor, world: &Arc<World>, plan: &mut sim::world::Rng, k: usize| {
            spawned += 1;
            let sync = k.is_multiple_of(2);
            let name = format!("p{k}.{spawned}");
            let offset = plan.below(4001) as i64 - 2000;
            let p = Arc::new(workload::process(
                world,
                &name,
                &workload::config(sync, retention, analytics),
                seed * 1000 + spawned,
                offset,
                host.as_ref(),
            ));
            let f = workload::caller(
                p.clone(),
                world.clone(),
                ledger.clone(),
                name.clone(),
                steps,
                workload::Mix {
                    gc: enabled("gc"),
                    deletes: enabled("delete"),
                    carry: enabled("carry"),
                },
            );
            ex.spawn(&name, f);
            p
        };
    let mut procs: Vec<Arc<Process>> = (0..n).map(|k| spawn(&mut ex, &world, plan, k)).collect();
    let mut crashes = 0;
    let ok = ex.run(&world, |ex| {
        if enabled("crash") && crashes < 12 && world.chance(2) {
            let live = ex.live();
            if !live.is_empty() {
                let i = live[world.random(live.len() as u64) as usize];
                let name = ex.tasks[i].0.clone();
                world.note(|| format!("CRASH {name}"));
                ex.tasks[i].1 = None;
                crashes += 1;
                let k: usize = name[1..]
                    .split('.')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                procs.push(spawn(ex, &world, plan, k));
            }
        }
        if enabled("clock") && world.chance(1) && !procs.is_empty() {
            let p = &procs[world.random(procs.len() as u64) as usize];
            world.note(|| format!("CLOCK of {} steps back 10 s", p.name));
            p.clock
                .offset
                .fetch_sub(10_000, std::sync::atomic::Ordering::SeqCst);
        }
        world.requests() < 200_000
    });
    if !ok {
        return Err(vec![
            "the workload did not finish (livelock or runaway)".into(),
        ]);
    }
    // Faults off: land what is late, then consolidate everything with a fresh process.
    world.set_faults(false);
    world.flush_late();
    world.advance(10_000);
    let fin = Arc::new(workload::process(
        &world,
        "final",
        &workload::config(false, retention, analytics),
        seed * 1000 + 999,
        0,
        host.as_ref(),
    ));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (p, errors, answers) = (fin.clone(), errors.clone(), answers.clone());
        ex.spawn(
            "final",
            Box::pin(async move {
                // A caller that crashed between deleting a record and creating it again.
                for id in RECORDS {
                    if !workload::ensure_record(&p, id).await {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("{id} could not be created"));
                    }
                }
                for _ in 0..5 {
                    if let Err(e) = p.engine.consolidate_all().await {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("final consolidate_all: {e}"));
                    }
                }
                for id in RECORDS {
                    for field in ["balance", "stats"] {
                        let before = p.engine.consolidate("wallets", Some(field), id).await;
                        let again = p.engine.recalculate("wallets", Some(field), id).await;
                        match (before, again) {
                            (Ok(a), Ok(b)) if a == b => {}
                            (a, b) => errors.lock().unwrap().push(format!(
                                "recalculate of {id}.{field} gave {b:?}, the value is {a:?}"
                            )),
                        }
                    }
                }
                // The audit trail explains every value, whatever the faults did.
                let ids: Vec<String> = RECORDS.iter().map(|r| r.to_string()).collect();
                for field in ["balance", "stats"] {
                    match p.engine.verify("wallets", field, &ids).await {
                        Ok(r) if r["problems"].as_array().is_some_and(|a| a.is_empty()) => {}
                        Ok(r) => errors
                            .lock()
                            .unwrap()
                            .push(format!("verify of {field} found {}", r["problems"])),
                        Err(e) => errors
                            .lock()
                            .unwrap()
                            .push(format!("verify of {field} failed: {e}")),
                    }
                }
                if analytics {
                    for field in ["balance", "stats"] {
                        for (f, args) in sim::check::analytics_queries() {
                            let r = p.engine.query(f, "wallets", field, &args).await;
                            answers.lock().unwrap().push((field, f, args, r));
                        }
                    }
                }
            }),
        );
    }
    if !ex.run(&world, |_| true) {
        return Err(vec!["the final consolidation did not finish".into()]);
    }
    let mut problems = errors.lock().unwrap().clone();
    let env = fin.engine.query_env();
    for (field, f, args, answer) in answers.lock().unwrap().iter() {
        let facts = sim::check::applied_facts(&world, field);
        let expected =
            tally_core::queries::QueryPlan::parse(f, args, &env).map(|p| p.execute(&facts, &env));
        match (answer, expected) {
            (Ok(a), Ok(e)) if *a == e => {}
            (a, e) => problems.push(format!(
                "analytics {f} of {field}: materialized {a:?}, from the applied transactions {e:?}"
            )),
        }
    }
    problems.extend(sim::check::audit(
        &world,
        &ledger,
        retention > 0.0,
        host.as_deref(),
    ));
    if !problems.is_empty() {
        return Err(problems);
    }
    let entries = ledger.entries.lock().unwrap();
    Ok(Run {
        host: host.is_some(),
        requests: world.requests(),
        acked: entries
            .values()
            .filter(|e| e.outcome == workload::Outcome::Acked)
            .count(),
        failed: entries
            .values()
            .filter(|e| e.outcome != workload::Outcome::Acked)
            .count(),
        crashes,
    })
}

/// Whether a kind of fault is injected: `TALLY_SIM_FAULTS` lists them (before, after, late,
/// dup, replay, read, crash, clock, and in the workload gc for garbage collection, delete for
/// deleting and creating records again, carry for carrying over 21.6.2 transactions); all by
/// default.
fn enabled(kind: &str) -> bool {
    match std::env::var("TALLY_SIM_FAULTS") {
        Ok(list) => list.split(',').any(|k| k.trim() == kind),
        Err(_) => true,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    let replay = env_u64("TALLY_SIM_SEED");
    let seeds: Vec<u64> = match replay {
        Some(s) => vec![s],
        None => {
            let first = env_u64("TALLY_SIM_FIRST").unwrap_or(1);
            (first..first + env_u64("TALLY_SIM_SEEDS").unwrap_or(24)).collect()
        }
    };
    // Seeds are independent worlds: run them on every core, report them in seed order.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outcomes: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(seeds.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else {
                            break mine;
                        };
                        let outcome = std::panic::catch_unwind(|| run_seed(seed, replay.is_some()));
                        mine.push((i, seed, outcome.map_err(|_| ())));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    outcomes.sort_by_key(|(i, _, _)| *i);
    if outcomes.len() != seeds.len() {
        println!(
            "simulation: a worker thread died; {} of {} seeds reported",
            outcomes.len(),
            seeds.len()
        );
        std::process::exit(1);
    }
    let mut failed = Vec::new();
    let (mut acked, mut lost, mut crashes, mut requests, mut hosted) = (0, 0, 0, 0, 0);
    for (_, seed, outcome) in outcomes {
        match outcome {
            Ok(Ok(r)) => {
                acked += r.acked;
                lost += r.failed;
                crashes += r.crashes;
                requests += r.requests;
                hosted += usize::from(r.host);
            }
            Ok(Err(problems)) => {
                println!("seed {seed} FAILED:");
                for p in problems.iter().take(12) {
                    println!("  {p}");
                }
                failed.push(seed);
            }
            Err(()) => {
                println!("seed {seed} FAILED: panicked");
                failed.push(seed);
            }
        }
    }
    println!(
        "mutations acknowledged {acked}, failed or cut off {lost}; {crashes} crashes; {requests} requests; {hosted} runs with records in a host database"
    );
    println!(
        "simulation: {} seeds, {} passed, {} failed{}",
        seeds.len(),
        seeds.len() - failed.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (seeds {failed:?}; replay with TALLY_SIM_SEED=<seed> scripts/sim.sh)")
        }
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
