//! Bounded waiting and named scenario steps.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How often [`wait_until`] reports that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Polls `check` every `poll` until it returns `Ok(true)`, for at most `timeout`.
///
/// `Ok(false)` and `Err(_)` both mean "not yet" (a component that is still starting often
/// refuses connections); the last error is reported if the deadline passes. Progress is
/// printed every 10 seconds. The deadline is checked after each call, so the total time is
/// bounded by `timeout` plus one call of `check` (whose own commands are bounded too).
pub fn wait_until<F>(desc: &str, timeout: Duration, poll: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Result<bool>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut next_report = start + PROGRESS_EVERY;
    let mut attempts = 0u32;
    eprintln!("[wait] {desc} (up to {timeout:?})");
    loop {
        attempts += 1;
        let last_err = match check() {
            Ok(true) => {
                eprintln!(
                    "[wait] {desc}: done after {:.1}s ({attempts} checks)",
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Ok(false) => None,
            Err(e) => Some(e),
        };
        let now = Instant::now();
        if now >= deadline {
            let why = last_err.map_or_else(
                || "the condition stayed false".to_string(),
                |e| format!("last error: {e:#}"),
            );
            bail!("timed out after {timeout:?} ({attempts} checks) waiting for {desc}; {why}");
        }
        if now >= next_report {
            let note = last_err
                .as_ref()
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            eprintln!(
                "[wait] {desc}: still waiting, {:.0}s of {:.0}s{note}",
                start.elapsed().as_secs_f64(),
                timeout.as_secs_f64()
            );
            next_report = now + PROGRESS_EVERY;
        }
        std::thread::sleep(poll.min(deadline.saturating_duration_since(now)));
    }
}

thread_local! {
    static FAILED: Cell<bool> = const { Cell::new(false) };
}

/// Records that the current test failed, so that nodes dropped afterwards print their
/// diagnostics (a test returning `Err` does not panic, so Drop cannot tell by itself).
pub fn mark_failed() {
    FAILED.with(|f| f.set(true));
}

/// Whether the current test thread is failing: panicking or [`mark_failed`] called.
pub fn failing() -> bool {
    std::thread::panicking() || FAILED.with(Cell::get)
}

/// Runs one named step of a scenario: prints its name and duration; an error is marked as
/// a test failure (see [`mark_failed`]) and carries the step's name.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("==> step: {name}");
    let start = Instant::now();
    let res = f().with_context(|| format!("step `{name}` failed"));
    match &res {
        Ok(_) => eprintln!(
            "<== step: {name} ok ({:.1}s)",
            start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            mark_failed();
            eprintln!("<== step: {name} FAILED: {e:#}");
        }
    }
    res
}
