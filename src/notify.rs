//! systemd's readiness protocol (`Type=notify`): READY=1 once every port is
//! bound, STOPPING=1 at shutdown, and watchdog pings when `WatchdogSec` is
//! set. Without `$NOTIFY_SOCKET` (not under systemd) each call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells the service manager the node is up, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager the node is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval for as long as the returned task
/// runs; `None` when no watchdog is configured.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        loop {
            send(&[NotifyState::Watchdog]);
            tokio::time::sleep(every).await;
        }
    }))
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
