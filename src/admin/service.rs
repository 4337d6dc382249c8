//! The Admin methods: each parses its request, calls the node or the store,
//! and shapes the answer.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use super::pb::{self, admin_server::Admin};
use super::scrub::{compaction_status, scrub_status};
use super::status;
use crate::contact::Contact;
use crate::lookup::LookupKind;
use crate::node::Node;
use crate::stats::Stats;
use crate::store::{Origin, Store, SCHEMA_VERSION};
use crate::upkeep::{self, CompactionControl, ScrubControl};

/// Blocks per ListBlocks page by default and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A block's origin as the API says it.
fn origin(o: Origin) -> pb::BlockOrigin {
    match o {
        Origin::Replica => pb::BlockOrigin::Replica,
        Origin::Pinned => pb::BlockOrigin::Pinned,
    }
}

fn republish_report(r: &upkeep::RepublishReport) -> pb::RepublishResponse {
    pb::RepublishResponse {
        blocks: r.blocks,
        stores_sent: r.stores_sent,
        failures: r.failures,
        skipped: r.skipped,
        lookups: r.lookups,
        lookup_requests: r.lookup_requests,
    }
}

/// The Admin service of one node.
#[derive(Clone)]
pub struct AdminService {
    node: Node,
    store: Store,
    scrub: ScrubControl,
    compaction: CompactionControl,
    listen: SocketAddr,
    admin: SocketAddr,
    metrics: SocketAddr,
    started_ms: u64,
}

impl AdminService {
    /// The service for `node`, reporting the addresses it is reached at.
    pub fn new(
        node: Node,
        store: Store,
        scrub: ScrubControl,
        compaction: CompactionControl,
        listen: SocketAddr,
        admin: SocketAddr,
        metrics: SocketAddr,
    ) -> AdminService {
        let started_ms = node.clock().now_ms();
        AdminService {
            node,
            store,
            scrub,
            compaction,
            listen,
            admin,
            metrics,
            started_ms,
        }
    }

    fn peer(&self, c: &Contact) -> pb::Peer {
        let table = self.node.table();
        let me = self.node.me().id;
        let now = self.node.clock().now_ms();
        let entry = table.get(&c.id);
        pb::Peer {
            node_id: c.id.to_hex(),
            address: c.addr.to_string(),
            bucket: me.bucket_index(&c.id).map_or(0, |b| b as u32),
            last_seen_ms_ago: entry.map_or(0, |e| now.saturating_sub(e.last_seen)),
            failures: entry.map_or(0, |e| e.failures),
        }
    }

    fn peers(&self, contacts: &[Contact]) -> Vec<pb::Peer> {
        contacts.iter().map(|c| self.peer(c)).collect()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(status::task)?
            .map_err(status::store)
    }
}

/// The stream Pin answers with.
type PinStream = futures::channel::mpsc::Receiver<Result<pb::PinProgress, Status>>;

fn progress_msg(p: crate::files::PinProgress, done: bool) -> pb::PinProgress {
    pb::PinProgress {
        blocks_done: p.blocks_done,
        blocks_total: p.blocks_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        done,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    type PinStream = PinStream;

    async fn pin(&self, req: Request<pb::PinRequest>) -> Result<Response<Self::PinStream>, Status> {
        use futures::SinkExt;
        let file = status::parse_file(&req.into_inner().root)?;
        let root = file.root();
        let (mut tx, rx) = futures::channel::mpsc::channel(16);
        let (node, store) = (self.node.clone(), self.store.clone());
        // The pin runs to its end even if the caller goes away: what it
        // fetched is kept, and a new Pin would start over anyway.
        tokio::spawn(async move {
            let mut progress_tx = tx.clone();
            let result = crate::files::pin(&node, &store, file, |p| {
                // A slow reader misses intermediate messages, never the last.
                let _ = progress_tx.try_send(Ok(progress_msg(p, false)));
            })
            .await;
            let last = match result {
                Ok(p) => {
                    let counter = match file.is_sealed() {
                        true => &node.stats().files_pinned_sealed,
                        false => &node.stats().files_pinned_plain,
                    };
                    Stats::inc(counter);
                    tracing::info!(root = %root, kind = file.kind(), blocks = p.blocks_total, bytes = p.bytes_total, "pinned");
                    Ok(progress_msg(p, true))
                }
                Err(e) => {
                    tracing::warn!(root = %root, error = %e, "pin failed");
                    Err(status::pin(e))
                }
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(rx))
    }

    async fn unpin(
        &self,
        req: Request<pb::UnpinRequest>,
    ) -> Result<Response<pb::UnpinResponse>, Status> {
        let file = status::parse_file(&req.into_inner().root)?;
        let root = file.root();
        let n = crate::files::unpin(&self.store, root)
            .await
            .map_err(status::pin)?;
        Ok(Response::new(pb::UnpinResponse { blocks_unpinned: n }))
    }

    async fn list_pins(
        &self,
        _: Request<pb::ListPinsRequest>,
    ) -> Result<Response<pb::ListPinsResponse>, Status> {
        let pins = self.blocking(|s| s.pins()).await?;
        Ok(Response::new(pb::ListPinsResponse {
            pins: pins
                .into_iter()
                .map(|(root, p)| pb::PinnedFile {
                    root: root.to_hex(),
                    name: p.name.unwrap_or_default(),
                    size: p.size,
                    blocks: p.blocks,
                    bytes: p.bytes,
                    pinned_at: p.pinned_at,
                })
                .collect(),
        }))
    }

    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let stats = self.node.stats();
        let now = self.node.clock().now_ms();
        Ok(Response::new(pb::GetStatsResponse {
            node_id: self.node.me().id.to_hex(),
            listen_address: self.listen.to_string(),
            advertised_address: self.node.me().addr.to_string(),
            admin_address: self.admin.to_string(),
            metrics_address: self.metrics.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            schema_version: SCHEMA_VERSION,
            uptime_seconds: now.saturating_sub(self.started_ms) / 1000,
            blocks_stored: self.store.block_count(),
            bytes_stored: self.store.bytes_stored(),
            routing_peers: self.node.table().len() as u64,
            bytes_sent: stats.bytes_sent(),
            bytes_received: stats.bytes_received(),
            sent: Some(pb::ProtocolBytes {
                udp: Stats::get(&stats.udp_bytes_sent),
                tcp: Stats::get(&stats.tcp_bytes_sent),
            }),
            received: Some(pb::ProtocolBytes {
                udp: Stats::get(&stats.udp_bytes_received),
                tcp: Stats::get(&stats.tcp_bytes_received),
            }),
            pending_requests: self.node.pending_requests() as u64,
            handoff_newcomers: Stats::get(&stats.handoff_newcomers),
            handoff_stores: Stats::get(&stats.handoff_stores),
            handoff_failures: Stats::get(&stats.handoff_failures),
            replicas_dropped: Stats::get(&stats.shed_blocks),
            replicas_dropped_bytes: Stats::get(&stats.shed_bytes),
            space_wanted_bytes: Stats::get(&stats.space_wanted_bytes),
            files_read_sealed: Stats::get(&stats.files_read_sealed),
            files_read_plain: Stats::get(&stats.files_read_plain),
            files_pinned_sealed: Stats::get(&stats.files_pinned_sealed),
            files_pinned_plain: Stats::get(&stats.files_pinned_plain),
            repair_runs: Stats::get(&stats.repair_runs),
            repair_stripes_checked: Stats::get(&stats.repair_checked),
            repair_shards_missing: Stats::get(&stats.repair_shards_missing),
            repair_shards_rebuilt: Stats::get(&stats.repair_shards_rebuilt),
            repair_bytes_read: Stats::get(&stats.repair_bytes_read),
            repair_bytes_written: Stats::get(&stats.repair_bytes_written),
            repair_failures: Stats::get(&stats.repair_failures),
        }))
    }

    async fn list_peers(
        &self,
        _: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        let contacts = self.node.routing_contacts();
        Ok(Response::new(pb::ListPeersResponse {
            peers: self.peers(&contacts),
        }))
    }

    async fn add_peer(
        &self,
        req: Request<pb::AddPeerRequest>,
    ) -> Result<Response<pb::AddPeerResponse>, Status> {
        let address = req.into_inner().address;
        let addr: SocketAddr = address
            .trim()
            .parse()
            .map_err(|_| Status::invalid_argument(format!("address '{address}' is not IP:PORT")))?;
        let contact = self
            .node
            .ping_addr(addr)
            .await
            .map_err(|e| status::request(&format!("ping {addr}"), e))?;
        Ok(Response::new(pb::AddPeerResponse {
            peer: Some(self.peer(&contact)),
        }))
    }

    async fn find_node(
        &self,
        req: Request<pb::FindNodeRequest>,
    ) -> Result<Response<pb::FindNodeResponse>, Status> {
        let id = status::parse_id("id", &req.into_inner().id)?;
        let started = std::time::Instant::now();
        let result = self.node.lookup(id, LookupKind::FindNode).await;
        Ok(Response::new(pb::FindNodeResponse {
            nodes: self.peers(&result.closest),
            hops: result.hops,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }

    async fn find_value(
        &self,
        req: Request<pb::FindValueRequest>,
    ) -> Result<Response<pb::FindValueResponse>, Status> {
        let key = status::parse_id("key", &req.into_inner().key)?;
        if self.store.contains(&key) {
            return Ok(Response::new(pb::FindValueResponse {
                holders: self.peers(&[self.node.me()]),
                closest: Vec::new(),
                hops: 0,
                found: true,
                seconds: 0.0,
            }));
        }
        let started = std::time::Instant::now();
        let result = self.node.lookup(key, LookupKind::FindValue).await;
        Ok(Response::new(pb::FindValueResponse {
            found: !result.holders.is_empty(),
            holders: self.peers(&result.holders),
            closest: self.peers(&result.closest),
            hops: result.hops,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }

    async fn list_blocks(
        &self,
        req: Request<pb::ListBlocksRequest>,
    ) -> Result<Response<pb::ListBlocksResponse>, Status> {
        let req = req.into_inner();
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(status::parse_id("page_token", &req.page_token)?)
        };
        let limit = match req.limit as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        // One more than asked tells whether another page follows.
        let mut blocks = self.blocking(move |s| s.list(after, limit + 1)).await?;
        let more = blocks.len() > limit;
        blocks.truncate(limit);
        let next_page_token = match (more, blocks.last()) {
            (true, Some((key, _))) => key.to_hex(),
            _ => String::new(),
        };
        let k = self.node.config().lookup.k;
        Ok(Response::new(pb::ListBlocksResponse {
            blocks: blocks
                .into_iter()
                .map(|(key, meta)| pb::Block {
                    key: key.to_hex(),
                    size: meta.size,
                    inline: meta.inline,
                    stored_at: meta.stored_at,
                    origin: origin(meta.origin) as i32,
                    refreshed_at: meta.refreshed_at,
                    copies: meta.record().copies_of(k) as u32,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_block(
        &self,
        req: Request<pb::GetBlockRequest>,
    ) -> Result<Response<pb::GetBlockResponse>, Status> {
        let key = status::parse_id("key", &req.into_inner().key)?;
        match self.blocking(move |s| s.get(&key)).await? {
            Some(data) => Ok(Response::new(pb::GetBlockResponse { data })),
            None => Err(Status::not_found(format!(
                "block {key} is not stored on this node"
            ))),
        }
    }

    async fn put_block(
        &self,
        req: Request<pb::PutBlockRequest>,
    ) -> Result<Response<pb::PutBlockResponse>, Status> {
        let data = req.into_inner().data;
        let key = crate::id::Id::of_block(&data);
        // Put here by hand: this node chose to keep it. Queued for the
        // store's batch writer, which writes whatever queued under one flush.
        // Refused as resource_exhausted, "retry shortly", when too many wait.
        self.store
            .put_queued(key, data, Origin::Pinned, 0)
            .await
            .map_err(status::store)?;
        let report = self.node.replicate(key).await;
        Ok(Response::new(pb::PutBlockResponse {
            key: key.to_hex(),
            saved: self.peers(&report.saved),
            failures: report
                .failed
                .iter()
                .map(|(c, why)| format!("{} {}: {why}", c.id, c.addr))
                .collect(),
        }))
    }

    async fn delete_block(
        &self,
        req: Request<pb::DeleteBlockRequest>,
    ) -> Result<Response<pb::DeleteBlockResponse>, Status> {
        let key = status::parse_id("key", &req.into_inner().key)?;
        if self.blocking(move |s| s.delete(&key)).await? {
            Ok(Response::new(pb::DeleteBlockResponse {}))
        } else {
            Err(Status::not_found(format!(
                "block {key} is not stored on this node"
            )))
        }
    }

    async fn republish(
        &self,
        req: Request<pb::RepublishRequest>,
    ) -> Result<Response<pb::RepublishResponse>, Status> {
        let within = req.into_inner().skip_stored_within_secs;
        let r = upkeep::republish_once(&self.node, &self.store, (within > 0).then_some(within))
            .await
            .map_err(status::store)?;
        Ok(Response::new(republish_report(&r)))
    }

    async fn republish_status(
        &self,
        _: Request<pb::RepublishStatusRequest>,
    ) -> Result<Response<pb::RepublishStatusResponse>, Status> {
        let stats = self.node.stats();
        let behind_blocks = Stats::get(&stats.republish_behind_blocks);
        let Some(p) = upkeep::sweep_progress(&self.store) else {
            return Ok(Response::new(pb::RepublishStatusResponse {
                behind_blocks,
                ..Default::default()
            }));
        };
        let key = p.after.clone().unwrap_or_default();
        let position = crate::id::Id::from_hex(&key).map_or(0.0, |k| crate::region::position(&k));
        Ok(Response::new(pb::RepublishStatusResponse {
            pass_started_unix: p.pass_started_unix_ms / 1000,
            position_key: key,
            position,
            pass: Some(republish_report(&p.pass)),
            passes: p.passes,
            last_pass_completed_unix: p.last_pass_completed_unix_ms / 1000,
            last_pass_seconds: p.last_pass_ms / 1000,
            last_pass: Some(republish_report(&p.last_pass)),
            behind_blocks,
            running: true,
        }))
    }

    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let repair = req.into_inner().repair;
        let r = upkeep::verify_once(&self.node, &self.store, repair)
            .await
            .map_err(status::store)?;
        Ok(Response::new(pb::VerifyResponse {
            checked: r.checked,
            corrupt: r.corrupt,
            repaired: r.repaired,
            corrupt_keys: r.corrupt_keys.iter().map(|k| k.to_hex()).collect(),
        }))
    }

    async fn scrub_status(
        &self,
        _: Request<pb::ScrubStatusRequest>,
    ) -> Result<Response<pb::ScrubStatusResponse>, Status> {
        scrub_status(Ok(self.scrub.status()))
    }

    async fn pause_scrub(
        &self,
        _: Request<pb::PauseScrubRequest>,
    ) -> Result<Response<pb::ScrubStatusResponse>, Status> {
        scrub_status(self.scrub.pause())
    }

    async fn resume_scrub(
        &self,
        _: Request<pb::ResumeScrubRequest>,
    ) -> Result<Response<pb::ScrubStatusResponse>, Status> {
        scrub_status(self.scrub.resume())
    }

    async fn compaction_status(
        &self,
        _: Request<pb::CompactionStatusRequest>,
    ) -> Result<Response<pb::CompactionStatusResponse>, Status> {
        compaction_status(Ok(self.compaction.status()))
    }

    async fn pause_compaction(
        &self,
        _: Request<pb::PauseCompactionRequest>,
    ) -> Result<Response<pb::CompactionStatusResponse>, Status> {
        compaction_status(self.compaction.pause())
    }

    async fn resume_compaction(
        &self,
        _: Request<pb::ResumeCompactionRequest>,
    ) -> Result<Response<pb::CompactionStatusResponse>, Status> {
        compaction_status(self.compaction.resume())
    }
}
