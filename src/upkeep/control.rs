//! The handle through which the admin API and the metrics read a paced
//! worker's state (the scrub's, compaction's) and pause or resume it. An
//! operator's word reaches the worker at once, and wins over the pause flag
//! the worker restores from what it saved; the worker is the only one that
//! saves it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// A worker's shown state.
pub trait Shown: Clone + Default {
    /// Why pause and resume are refused while the worker is off.
    const OFF: &'static str;
    /// Whether the worker is off (turned off, or not started yet).
    fn is_off(&self) -> bool;
    /// Shows an operator's pause on a worker that is on.
    fn show_paused(&mut self);
}

/// Pause and resume do nothing while the worker is off; says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IsOff(pub &'static str);

/// A cheap-to-clone handle on a worker showing `S`.
#[derive(Debug)]
pub struct Control<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Control<S> {
    fn clone(&self) -> Self {
        Control {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<S> {
    status: Mutex<S>,
    paused: watch::Sender<bool>,
    /// An operator paused or resumed since the worker started, which wins
    /// over the saved flag the worker restores.
    commanded: AtomicBool,
}

impl<S: Shown> Default for Control<S> {
    fn default() -> Self {
        Control {
            inner: Arc::new(Inner {
                status: Mutex::new(S::default()),
                paused: watch::channel(false).0,
                commanded: AtomicBool::new(false),
            }),
        }
    }
}

impl<S: Shown> Control<S> {
    fn lock(&self) -> MutexGuard<'_, S> {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker's state now.
    pub fn status(&self) -> S {
        let mut status = self.lock().clone();
        if !status.is_off() && self.is_paused() {
            status.show_paused();
        }
        status
    }

    /// Whether an operator paused it.
    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// Pauses the worker after the step it is on; kept across restarts.
    pub fn pause(&self) -> Result<S, IsOff> {
        self.command(true)
    }

    /// Lets a paused worker go on from where it stopped.
    pub fn resume(&self) -> Result<S, IsOff> {
        self.command(false)
    }

    fn command(&self, paused: bool) -> Result<S, IsOff> {
        // Under the lock, so the worker's restore cannot slip in between.
        let status = self.lock();
        if status.is_off() {
            return Err(IsOff(S::OFF));
        }
        self.inner.commanded.store(true, Ordering::Relaxed);
        self.inner.paused.send_replace(paused);
        drop(status);
        Ok(self.status())
    }

    /// The worker's view of the pause flag, to wait on.
    pub(super) fn watch_paused(&self) -> watch::Receiver<bool> {
        self.inner.paused.subscribe()
    }

    /// The worker restores the saved flag, unless an operator already spoke;
    /// the flag in force.
    pub(super) fn restore_paused(&self, saved: bool) -> bool {
        let _status = self.lock();
        if !self.inner.commanded.load(Ordering::Relaxed) {
            self.inner.paused.send_replace(saved);
        }
        self.is_paused()
    }

    /// The worker changes what it shows.
    pub(super) fn update(&self, f: impl FnOnce(&mut S)) {
        f(&mut self.lock());
    }
}
