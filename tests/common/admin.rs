//! Admin API helpers for the tests: a connected client, and a Pin read to
//! its end.

use std::time::Duration;

use dhtfs::admin::pb;
use dhtfs::admin::pb::admin_client::AdminClient;
use dhtfs::id::Id;

/// Longest a pin may take here.
const PIN_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn client(addr: std::net::SocketAddr) -> AdminClient<tonic::transport::Channel> {
    AdminClient::connect(format!("http://{addr}"))
        .await
        .expect("admin API answers")
}

/// Pins the plain file `root`, reading the stream to its end: every
/// message, or the status the stream ended with.
pub async fn pin(
    c: &mut AdminClient<tonic::transport::Channel>,
    root: Id,
) -> Result<Vec<pb::PinProgress>, tonic::Status> {
    pin_named(c, &root.to_hex()).await
}

/// Pins the file `name` names (a capability or a root), as [`pin`] does.
pub async fn pin_named(
    c: &mut AdminClient<tonic::transport::Channel>,
    name: &str,
) -> Result<Vec<pb::PinProgress>, tonic::Status> {
    let run = async {
        let mut stream = c
            .pin(pb::PinRequest {
                root: name.to_string(),
            })
            .await?
            .into_inner();
        let mut msgs = Vec::new();
        while let Some(msg) = stream.message().await? {
            msgs.push(msg);
        }
        Ok(msgs)
    };
    tokio::time::timeout(PIN_TIMEOUT, run)
        .await
        .expect("the pin ends in time")
}
