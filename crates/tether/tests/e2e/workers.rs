//! Serving workers as the binary runs them: `workers = N` threads named `tether-worker-<i>`,
//! and with `pin_workers = true` each on one CPU of those the process may use, in order; every
//! worker serves.

use tether_testkit::{Backend, Client, TempDir};

use crate::support::{write_config, Running};

/// The CPUs in a `Cpus_allowed_list` (`0-3,6`).
fn cpu_list(s: &str) -> Vec<usize> {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![p.parse().unwrap()],
        })
        .collect()
}

/// `Cpus_allowed_list` of a task's status file.
fn allowed(status: &str) -> Vec<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(cpu_list)
        .unwrap_or_default()
}

/// `(i, CPUs it may run on)` of each thread of `pid` named `tether-worker-<i>`, in order of `i`.
fn worker_threads(pid: u32) -> Vec<(usize, Vec<usize>)> {
    let mut workers = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        // A thread that ended between the listing and the reads is skipped.
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if let Some(i) = name.trim().strip_prefix("tether-worker-") {
            let Ok(status) = std::fs::read_to_string(task.join("status")) else {
                continue;
            };
            workers.push((i.parse::<usize>().unwrap(), allowed(&status)));
        }
    }
    workers.sort();
    workers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_workers_each_run_on_one_cpu_of_the_process_in_order() {
    let dir = TempDir::new("tether-workers");
    let backend = Backend::spawn("app").await;
    let config = write_config(&dir, &backend, "workers = 2\npin_workers = true\n");
    let mut tether = Running::run(&dir, &config, &["TETHER_WORKERS"]);
    let web = tether.addr("listening entrypoint=web").await;
    let pid = tether.child.id().unwrap();
    let mine = allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    // Two worker threads, worker i on the i-th CPU the process may use. A thread takes its name
    // and then its CPU once it runs, which may be after the listening line: waited for.
    let mine = &mine;
    tether_testkit::wait_for_value(
        "two worker threads, each on its CPU",
        std::time::Duration::from_secs(5),
        || async move {
            let w = worker_threads(pid);
            let pinned = w
                .iter()
                .all(|(i, cpus)| cpus.as_slice() == [mine[i % mine.len()]]);
            if w.len() == 2 && pinned {
                Ok(())
            } else {
                Err(format!("{w:?}; the process's CPUs {mine:?}"))
            }
        },
    )
    .await;
    // Every connection is served, whichever worker's socket the kernel gave it to.
    for _ in 0..20 {
        let mut c = Client::new(web);
        assert_eq!(c.get("/").await.unwrap().server(), "app");
    }
    assert!(tether.said("serving on 2 workers"), "{}", tether.log());
}
