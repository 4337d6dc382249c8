//! The anchor for lookups: the `mainline` crate (BitTorrent's DHT, BEP 44
//! immutable items) on a seeded loopback Testnet of the same size, driven by
//! two client nodes outside it (one puts, one gets, so neither holds what it
//! looks up).

use std::net::Ipv4Addr;
use std::time::Instant;

use mainline::{Dht, Testnet};
use rand::RngCore;

use crate::common::ms;
use crate::lookup::{Latencies, SMALL};

/// The Testnet and its two clients.
pub struct Net {
    _testnet: Testnet,
    putter: mainline::async_dht::AsyncDht,
    getter: mainline::async_dht::AsyncDht,
}

/// Builds a seeded Testnet of `n` nodes on 127.0.0.1 and two bootstrapped clients.
pub async fn start(n: usize) -> Net {
    let testnet = Testnet::builder(n).build().expect("mainline testnet");
    let client = || {
        Dht::builder()
            .bootstrap(&testnet.bootstrap)
            .bind_address(Ipv4Addr::LOCALHOST)
            .build()
            .expect("mainline client")
            .as_async()
    };
    let (putter, getter) = (client(), client());
    assert!(putter.bootstrapped().await, "mainline putter bootstrapped");
    assert!(getter.bootstrapped().await, "mainline getter bootstrapped");
    Net {
        _testnet: testnet,
        putter,
        getter,
    }
}

/// `count` new values: put_immutable (timed), then get_immutable by the other client (timed).
pub async fn measure(net: &Net, count: usize, into: &mut Latencies) {
    let mut rng = rand::thread_rng();
    for _ in 0..count {
        let mut value = vec![0u8; SMALL];
        rng.fill_bytes(&mut value);
        let started = Instant::now();
        let target = net
            .putter
            .put_immutable(&value)
            .await
            .expect("put_immutable");
        into.put.push(ms(started.elapsed()));
        let started = Instant::now();
        let got = net.getter.get_immutable(target).await;
        into.get.push(ms(started.elapsed()));
        assert_eq!(
            got.as_deref(),
            Some(&value[..]),
            "mainline got the value back"
        );
    }
}
