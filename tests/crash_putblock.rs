//! Nothing a PutBlock answered OK for is lost across SIGKILL: 32 clients
//! put small blocks through a real node process's admin API (which writes
//! them in batches, one flush each: `src/store/batch_writer.rs`), the node
//! is SIGKILLed while puts are in flight, restarted on the same data dir,
//! and every block ever answered OK must read back whole over TCP. Three
//! rounds; then a clean stop, and the data dir must audit clean.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fetch::try_fetch;
use common::process::start_node;
use dhtfs::admin::pb;
use dhtfs::admin::pb::admin_client::AdminClient;
use dhtfs::id::Id;
use dhtfs::store::Store;

const ROUNDS: usize = 3;
const CLIENTS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_a_putblock_answered_ok_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    // Every block answered OK, and whether any put was still in flight
    // when the kill came (else the round proved nothing).
    let acked: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    for round in 0..ROUNDS {
        let node = start_node(&dir, None);
        let url = format!("http://{}", node.admin);
        let before = acked.lock().unwrap().len();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (url, acked) = (url.clone(), acked.clone());
            clients.push(tokio::spawn(async move {
                let Ok(mut client) = AdminClient::connect(url).await else {
                    return 0;
                };
                let mut failed = 0;
                for i in 0u64.. {
                    let seed = ((round * CLIENTS + c) as u64) << 32 | i;
                    let data = common::data::random_bytes(4096 + (i as usize % 5) * 1000, seed);
                    match client
                        .put_block(pb::PutBlockRequest { data: data.clone() })
                        .await
                    {
                        Ok(_) => acked.lock().unwrap().push(data),
                        // The kill: this put's fate is unknown, and the
                        // client is done.
                        Err(_) => {
                            failed += 1;
                            break;
                        }
                    }
                }
                failed
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut node = node;
        node.proc.signal(libc::SIGKILL);
        node.proc.wait(Duration::from_secs(10), "the killed node");
        let mut cut = 0;
        for c in clients {
            cut += c.await.unwrap();
        }
        let after = acked.lock().unwrap().len();
        eprintln!(
            "round {round}: {} puts answered OK before the kill, {cut} cut by it",
            after - before
        );
        assert!(after > before, "puts were answered before the kill");
        assert!(cut > 0, "the kill came with puts in flight");
    }

    let mut node = start_node(&dir, None);
    let acked = acked.lock().unwrap().clone();
    let mut missing = Vec::new();
    for data in &acked {
        let key = Id::of_block(data);
        match try_fetch(node.listen, &key).await {
            Ok(Some(got)) if got == *data => {}
            other => missing.push(format!("{key}: {:?}", other.map(|o| o.map(|b| b.len())))),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged blocks lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(node.terminate(Duration::from_secs(30)).success());
    let audit = common::retry_while_locked(|| Store::audit(&dir));
    assert!(audit.is_clean(), "{audit:?}");
    eprintln!(
        "{} blocks answered OK over {ROUNDS} kills, all read back whole",
        acked.len()
    );
}
