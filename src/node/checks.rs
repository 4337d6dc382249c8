//! Checked before trusted (BEP 5's good and questionable nodes): a contact
//! that only claimed its id, in a request or through another node's answer,
//! is pinged before it is handed out to anyone; a claim on an address or id
//! the table already binds to another is settled by pinging both. Checks are
//! rate-limited and the set in flight is bounded, so a flood of claims costs
//! us no more than the budget.

use std::net::SocketAddr;

use super::{lock, Node};
use crate::contact::Contact;
use crate::routing::Heard;
use crate::stats::Stats;

impl Node {
    /// Pings an unverified `contact`, if the check budget allows: a pong with
    /// its id verifies it, anything else removes it from the table. Returns
    /// whether the check began.
    pub(super) fn check(&self, contact: Contact) -> bool {
        if !self.take_check(contact.addr) {
            return false;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let ok = node.ping_contact(&contact).await.is_ok();
            node.end_check(contact.addr, ok);
            let now = node.inner.clock.now_ms();
            node.table().on_check_result(&contact.id, ok, now);
        });
        true
    }

    /// `claimed` wants the address or id that `known` holds. The known
    /// binding is pinged; only if it fails is the claimed address pinged, and
    /// only a pong carrying the claimed id there moves the binding.
    pub(super) fn check_conflict(&self, known: Contact, claimed: Contact) {
        if !self.take_check(known.addr) {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let alive = node.ping_contact(&known).await.is_ok();
            let now = node.inner.clock.now_ms();
            if alive {
                node.table().on_ping_result(&known.id, true, now);
                node.end_check(known.addr, true);
                return;
            }
            node.table().on_failure(&known.id, now);
            let proved = node.ping_contact(&claimed).await.is_ok();
            node.end_check(known.addr, proved);
            if proved {
                node.observe(claimed, Heard::Pong);
            }
        });
    }

    /// Checks up to `n` of the table's unverified entries (those whose check
    /// was skipped for want of budget), oldest first; returns how many began.
    pub fn check_unverified(&self, n: usize) -> usize {
        let waiting = self.table().unverified(n);
        waiting.into_iter().filter(|c| self.check(*c)).count()
    }

    /// Every `every`, checks up to 16 unverified entries, until `stop` turns true.
    pub async fn run_checks(
        &self,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = self.inner.clock.sleep(every) => {}
                _ = stop.changed() => return,
            }
            self.check_unverified(16);
        }
    }

    /// Reserves a check of `addr`: within the rate, under the bound, and not
    /// already being checked.
    fn take_check(&self, addr: SocketAddr) -> bool {
        let now = self.inner.clock.now_ms();
        let cfg = &self.inner.cfg;
        let mut checks = lock(&self.inner.checks);
        let (running, budget) = &mut *checks;
        if running.contains(&addr)
            || running.len() >= cfg.max_checks
            || !budget.try_take(cfg.check_rate, 1.0, now)
        {
            Stats::inc(&self.inner.stats.checks_skipped);
            return false;
        }
        running.insert(addr);
        Stats::inc(&self.inner.stats.checks_sent);
        true
    }

    fn end_check(&self, addr: SocketAddr, ok: bool) {
        lock(&self.inner.checks).0.remove(&addr);
        let stats = &self.inner.stats;
        Stats::inc(if ok {
            &stats.checks_passed
        } else {
            &stats.checks_failed
        });
    }
}
