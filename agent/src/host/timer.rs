//! A one-shot timer on a Linux timerfd, for the agent's waits between probes and passes: it
//! wakes the agent once, at its deadline.
//!
//! A tokio timer wakes the runtime once more for every level of tokio's timer wheel its
//! deadline lies beyond: a deadline 64 ms to 4 s away first wakes it at the start of the
//! wheel slot that holds it (up to 64 ms early) to move it down a level, and one 4 s to 4 min
//! away twice (tokio runtime/time/wheel). An idle control-plane node's agent mostly waits for
//! probes due every 1 s (the API server's readiness) or 10 s (liveness), so those early wakes
//! are a large share of all its wake-ups, each a pass through epoll and the scheduler. A
//! timerfd is one file descriptor in the runtime's epoll set, armed for the exact deadline.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// A timerfd, owned for its whole life ([`crate::host::process::OwnsFd`]).
#[derive(Debug)]
pub struct OwnedTimerFd(TimerFd);

impl AsRawFd for OwnedTimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One timerfd (CLOCK_MONOTONIC, the clock of [`Instant`]), re-armed by every
/// [`Timer::sleep_until`].
#[derive(Debug)]
pub struct Timer {
    fd: AsyncFd<OwnedTimerFd>,
}

impl Timer {
    /// A disarmed timer, registered with the current tokio runtime.
    ///
    /// # Errors
    /// timerfd_create fails (no file descriptor left), or the runtime cannot register it.
    pub fn new() -> io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(Timer {
            fd: crate::host::process::async_fd(OwnedTimerFd(fd))?,
        })
    }

    /// Waits until `deadline` (at once if it has passed); `None` waits forever. Arming the
    /// timer replaces the deadline of a wait that was dropped before it ended.
    ///
    /// # Errors
    /// timerfd_settime or the read of the timer fails.
    pub async fn sleep_until(&self, deadline: Option<Instant>) -> io::Result<()> {
        let timer = &self.fd.get_ref().0;
        let Some(deadline) = deadline else {
            timer.unset()?;
            return std::future::pending().await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        timer.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Re-arming resets the expiry count, so readiness left from an earlier deadline
            // reads nothing (EAGAIN): try_io then clears it, and the loop waits again.
            match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => {}
            }
        }
    }
}

/// Waits until `deadline` on `timer`, or on tokio's timers without one (no file descriptor
/// was left for it). A timer that fails is dropped, said once in the log: the loop (`what`)
/// goes on with tokio's timers.
pub async fn sleep_until_on(timer: &mut Option<Timer>, deadline: Instant, what: &str) {
    if let Some(t) = timer.as_ref() {
        match t.sleep_until(Some(deadline)).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    "the {what}'s timerfd failed, using tokio's timers from now on: {e}"
                );
                *timer = None;
            }
        }
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
}

/// A [`Timer`] for a loop's waits (`what`), or None (said in the log) where none can be made.
pub fn for_loop(what: &str) -> Option<Timer> {
    Timer::new()
        .inspect_err(|e| tracing::warn!("no timerfd for the {what}'s waits, using tokio's: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    /// Long enough for any machine: these tests never wait for it, it only ends a hang.
    const HANG: Duration = Duration::from_secs(60);

    async fn wait(timer: &Timer, deadline: Instant) {
        tokio::time::timeout(HANG, timer.sleep_until(Some(deadline)))
            .await
            .expect("the timer never fired")
            .expect("sleep");
    }

    /// Waits `ms` from now on `timer`, and says it did not end sooner.
    async fn waits_full(timer: &Timer, ms: u64) {
        let start = Instant::now();
        wait(timer, start + Duration::from_millis(ms)).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(ms), "woke early: {took:?}");
    }

    /// Arms `timer` for `ms` from now and drops the wait: its first poll arms it, and it is
    /// still pending then.
    fn arm_and_drop(timer: &Timer, ms: u64) {
        let armed = timer.sleep_until(Some(Instant::now() + Duration::from_millis(ms)));
        assert!(
            armed.now_or_never().is_none(),
            "a {ms} ms wait ended at once"
        );
    }

    #[tokio::test]
    async fn wakes_at_its_deadline_and_not_before() {
        let timer = Timer::new().expect("timerfd");
        let start = Instant::now();
        waits_full(&timer, 120).await;
        // A deadline that has passed returns at once.
        assert!(
            timer.sleep_until(Some(start)).now_or_never().is_some(),
            "a past deadline waited"
        );
        // One 292 years away is armed, and waited for.
        let far = Instant::now() + Duration::from_secs(292 * 365 * 24 * 3600);
        assert!(timer.sleep_until(Some(far)).now_or_never().is_none());
    }

    #[tokio::test]
    async fn an_earlier_deadline_never_ends_a_later_wait() {
        let timer = Timer::new().expect("timerfd");
        // Armed for 20 ms and dropped at once (the first poll arms it), then a 300 ms wait
        // armed before the first deadline: the first never fires.
        arm_and_drop(&timer, 20);
        waits_full(&timer, 300).await;
        // Armed for 20 ms, dropped, and left to expire with nobody waiting: its expiry and the
        // readiness it left do not end the next wait.
        arm_and_drop(&timer, 20);
        tokio::time::sleep(Duration::from_millis(100)).await;
        waits_full(&timer, 200).await;
    }

    #[tokio::test]
    async fn no_deadline_disarms_and_waits_forever() {
        let timer = Timer::new().expect("timerfd");
        // Armed for 20 ms, then disarmed by a wait without a deadline.
        arm_and_drop(&timer, 20);
        let mut forever = Box::pin(timer.sleep_until(None));
        assert!((&mut forever).now_or_never().is_none());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            forever.now_or_never().is_none(),
            "a wait without a deadline ended"
        );
    }
}
