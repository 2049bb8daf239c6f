//! Lab benchmark (root): time to the first server (optionally from a fresh cache, base image
//! build included), time per extra server, memory per server (PSS of its processes), teardown.
//!
//!   cargo run -p kiln-lab --example lab_bench -- [--fresh] [--servers N]
//!
//! `--fresh` uses an empty cache folder of its own (/var/cache/kiln-lab-bench-fresh, removed
//! afterwards), so the base image is built as on a fresh machine without disturbing the cache
//! that running labs use.

use std::time::{Duration, Instant};

use kiln_lab::{Lab, LabOptions, Roots};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fresh = args.iter().any(|a| a == "--fresh");
    let servers: usize = args
        .iter()
        .position(|a| a == "--servers")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(8);
    let mut roots = Roots::default();
    if fresh {
        roots.cache = "/var/cache/kiln-lab-bench-fresh".into();
        if roots.cache.exists() {
            std::fs::remove_dir_all(&roots.cache)?;
        }
        println!("empty image cache: {}", roots.cache.display());
    }

    let t = Instant::now();
    let mut lab = Lab::start(LabOptions {
        name: "bench".into(),
        servers: 1,
        roots: roots.clone(),
        ..Default::default()
    })?;
    let first = t.elapsed();
    println!(
        "first server (SSH ready{}): {:.1} s",
        if fresh {
            ", base image build included"
        } else {
            ""
        },
        first.as_secs_f64()
    );

    let mut per = Vec::new();
    for i in 2..=servers {
        let t = Instant::now();
        lab.add_servers(&[format!("server{i}")])?;
        per.push(t.elapsed());
    }
    if !per.is_empty() {
        let mut sorted = per.clone();
        sorted.sort();
        println!(
            "extra servers, one at a time ({}): median {:.2} s, min {:.2} s, max {:.2} s",
            per.len(),
            sorted[sorted.len() / 2].as_secs_f64(),
            sorted[0].as_secs_f64(),
            sorted[sorted.len() - 1].as_secs_f64()
        );
    }
    let t = Instant::now();
    let names: Vec<String> = (1..=4).map(|i| format!("batch{i}")).collect();
    lab.add_servers(&names)?;
    println!(
        "4 more servers in one batch: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Let boot-time services settle, then measure.
    std::thread::sleep(Duration::from_secs(5));
    let mut mem = Vec::new();
    for s in lab.servers() {
        mem.push(lab.server_memory_kib(&s.name)?);
    }
    mem.sort();
    println!(
        "memory per idle server (PSS, {} servers): median {:.1} MiB, min {:.1} MiB, max {:.1} MiB",
        mem.len(),
        mem[mem.len() / 2] as f64 / 1024.0,
        mem[0] as f64 / 1024.0,
        mem[mem.len() - 1] as f64 / 1024.0
    );
    let t = Instant::now();
    let cleaned = lab.down()?;
    println!("down: {:.1} s ({cleaned:?})", t.elapsed().as_secs_f64());
    if fresh {
        std::fs::remove_dir_all(&roots.cache)?;
    }
    Ok(())
}
