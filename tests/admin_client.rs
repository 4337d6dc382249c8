//! Every Admin method through the generated tonic client, on a small network.

mod common;

use common::TestNet;
use dhtfs::admin::pb;
use dhtfs::admin::pb::admin_client::AdminClient;
use dhtfs::id::Id;
use tonic::Code;

async fn client(addr: std::net::SocketAddr) -> AdminClient<tonic::transport::Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("admin API answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_method_answers() {
    let mut net = TestNet::start(4).await;
    let mut a = client(net.nodes[0].admin_addr).await;

    // GetStats
    let stats = a
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.node_id, net.nodes[0].node.me().id.to_hex());
    assert_eq!(stats.listen_address, net.nodes[0].local_addr.to_string());
    assert_eq!(stats.admin_address, net.nodes[0].admin_addr.to_string());
    assert_eq!(stats.routing_peers, 3);
    assert!(stats.bytes_sent > 0 && stats.sent.unwrap().udp > 0);

    // ListPeers
    let peers = a
        .list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers;
    assert_eq!(peers.len(), 3);
    for p in &peers {
        let id = Id::from_hex(&p.node_id).unwrap();
        assert_eq!(
            net.nodes[0].node.me().id.bucket_index(&id),
            Some(p.bucket as usize)
        );
        assert_eq!(p.failures, 0);
    }

    // AddPeer: a fresh node, not yet known to node 0.
    let extra_dir = net.dir.path().join("extra");
    let extra = dhtfs::daemon::Daemon::start(&common::test_config(extra_dir))
        .await
        .unwrap();
    let added = a
        .add_peer(pb::AddPeerRequest {
            address: extra.local_addr.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .peer
        .unwrap();
    assert_eq!(added.node_id, extra.node.me().id.to_hex());
    let err = a
        .add_peer(pb::AddPeerRequest {
            address: "not an address".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // FindNode: the true closest among the five nodes.
    let target = Id::random();
    let found = a
        .find_node(pb::FindNodeRequest {
            id: target.to_hex(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut want: Vec<Id> = net.contacts().iter().map(|c| c.id).collect();
    want.push(extra.node.me().id);
    want.sort_by_key(|id| id.distance(&target));
    let got: Vec<Id> = found
        .nodes
        .iter()
        .map(|p| Id::from_hex(&p.node_id).unwrap())
        .collect();
    assert_eq!(got, want);
    let err = a
        .find_node(pb::FindNodeRequest { id: "12".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // PutBlock stores here and on the closest; FindValue from another node finds it.
    let data = vec![42u8; 200_000];
    let put = a
        .put_block(pb::PutBlockRequest { data: data.clone() })
        .await
        .unwrap()
        .into_inner();
    let key = Id::from_hex(&put.key).unwrap();
    assert_eq!(key, Id::of_block(&data));
    assert!(put.failures.is_empty(), "{:?}", put.failures);
    assert_eq!(
        put.saved.len(),
        5,
        "all five nodes are among the K=7 closest"
    );
    let mut b = client(net.nodes[1].admin_addr).await;
    let fv = b
        .find_value(pb::FindValueRequest { key: key.to_hex() })
        .await
        .unwrap()
        .into_inner();
    assert!(fv.found && !fv.holders.is_empty());
    let fv = b
        .find_value(pb::FindValueRequest {
            key: Id::random().to_hex(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!fv.found && fv.holders.is_empty() && !fv.closest.is_empty());

    // GetBlock
    let got = a
        .get_block(pb::GetBlockRequest { key: key.to_hex() })
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(got, data);
    let err = a
        .get_block(pb::GetBlockRequest {
            key: Id::random().to_hex(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // ListBlocks pages in key order.
    for i in 0..5u8 {
        a.put_block(pb::PutBlockRequest { data: vec![i; 10] })
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let page = a
            .list_blocks(pb::ListBlocksRequest {
                page_token: token.clone(),
                limit: 2,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.blocks.len() <= 2);
        keys.extend(page.blocks.iter().map(|b| b.key.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(keys.len(), 6);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    // Each block's origin: put here by hand, pinned; stored to node 1 by
    // node 0's store_value, a replica there.
    let listed = |c: &mut AdminClient<tonic::transport::Channel>| {
        let mut c = c.clone();
        async move {
            c.list_blocks(pb::ListBlocksRequest {
                page_token: String::new(),
                limit: 100,
            })
            .await
            .unwrap()
            .into_inner()
            .blocks
        }
    };
    for blk in listed(&mut a).await {
        assert_eq!(blk.origin(), pb::BlockOrigin::Pinned, "{}", blk.key);
        assert_eq!(blk.refreshed_at, blk.stored_at);
    }
    let on_b = listed(&mut b).await;
    assert_eq!(on_b.len(), 6, "node 1 is among the closest of every block");
    for blk in &on_b {
        assert_eq!(blk.origin(), pb::BlockOrigin::Replica, "{}", blk.key);
    }

    // Republish: every block to the other nodes.
    let r = a
        .republish(pb::RepublishRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.blocks, 6);
    assert_eq!(r.failures, 0);
    assert_eq!(r.stores_sent, 6 * 4, "four other nodes per block");
    // Stored to node 1 again: its records count as refreshed, still replicas.
    let again = listed(&mut b).await;
    assert_eq!(again.len(), 6);
    for blk in &again {
        assert_eq!(blk.origin(), pb::BlockOrigin::Replica);
        assert!(blk.refreshed_at >= blk.stored_at);
    }

    // Verify: rot one copy on node 0 by hand, find it, repair it from a holder.
    let checked = a
        .verify(pb::VerifyRequest { repair: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((checked.checked, checked.corrupt), (6, 0));
    common::rot_on_disk(&net.nodes[0].store, &key, 1000);
    let err = a
        .get_block(pb::GetBlockRequest { key: key.to_hex() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss);
    let v = a
        .verify(pb::VerifyRequest { repair: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v.checked, v.corrupt, v.repaired), (6, 1, 1));
    assert_eq!(v.corrupt_keys, vec![key.to_hex()]);
    let got = a
        .get_block(pb::GetBlockRequest { key: key.to_hex() })
        .await
        .unwrap()
        .into_inner()
        .data;
    assert_eq!(got, data);

    // DeleteBlock
    a.delete_block(pb::DeleteBlockRequest { key: key.to_hex() })
        .await
        .unwrap();
    let err = a
        .delete_block(pb::DeleteBlockRequest { key: key.to_hex() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Over the block size limit: refused before it reaches the node's store.
    let err = a
        .put_block(pb::PutBlockRequest {
            data: vec![0; (1 << 20) + 1],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");

    extra.shutdown().await;
    net.stop_all().await;
}
