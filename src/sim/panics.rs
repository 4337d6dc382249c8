//! Catches panics in the simulation's thread (the runtime's tasks catch
//! them and carry on, which would hide them), to report each as a failure.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static CAUGHT: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Catches panics on this thread until dropped.
pub struct Catcher;

/// Starts catching panics on this thread; other threads keep the usual hook.
pub fn catch() -> Catcher {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = CAUGHT.with(|c| {
                c.borrow_mut()
                    .as_mut()
                    .map(|list| list.push(info.to_string()))
                    .is_some()
            });
            if !caught {
                previous(info);
            }
        }));
    });
    CAUGHT.with(|c| *c.borrow_mut() = Some(Vec::new()));
    Catcher
}

impl Catcher {
    /// The panics caught so far.
    pub fn take(&self) -> Vec<String> {
        CAUGHT.with(|c| {
            c.borrow_mut()
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        })
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        CAUGHT.with(|c| *c.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_task_is_caught_on_this_thread_only() {
        let catcher = catch();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let joined = rt.block_on(async { tokio::spawn(async { panic!("boom") }).await });
        let caught = catcher.take();
        // Asserted only now: a failing assertion would itself be caught.
        drop(catcher);
        assert!(joined.is_err());
        assert_eq!(caught.len(), 1, "{caught:?}");
        assert!(caught[0].contains("boom"), "{caught:?}");
        let again = catch();
        let none = again.take();
        drop(again);
        assert!(none.is_empty());
    }
}
