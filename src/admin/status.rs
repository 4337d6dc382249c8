//! Every mapping from our errors to gRPC status codes, in one place, so no
//! case we can name comes out as UNKNOWN.

use tonic::Status;

use crate::id::Id;
use crate::node::RequestError;
use crate::store::StoreError;

/// Parses a 64-hex id or key given in field `field`.
pub fn parse_id(field: &str, value: &str) -> Result<Id, Status> {
    Id::from_hex(value.trim())
        .map_err(|e| Status::invalid_argument(format!("{field} '{value}' is not an id: {e}")))
}

/// A file's root key or capability, or an invalid-argument status saying
/// what one looks like (without echoing a key).
pub fn parse_file(value: &str) -> Result<crate::files::FileRef, Status> {
    value
        .parse()
        .map_err(|e: crate::files::BadFileRef| Status::invalid_argument(format!("root {e}")))
}

/// A store error as a status.
pub fn store(e: StoreError) -> Status {
    let text = e.to_string();
    match e {
        StoreError::Busy
        | StoreError::TooLarge { .. }
        | StoreError::QuotaExceeded { .. }
        | StoreError::LowDisk { .. }
        | StoreError::DiskFull { .. } => Status::resource_exhausted(text),
        StoreError::HashMismatch { .. } => Status::invalid_argument(text),
        StoreError::Corrupt { .. } => Status::data_loss(text),
        StoreError::NewerSchema { .. } | StoreError::BlocksMissing { .. } => {
            Status::failed_precondition(text)
        }
        StoreError::Open { .. } | StoreError::Io { .. } | StoreError::Db { .. } => {
            Status::internal(text)
        }
    }
}

/// A failed request to a peer as a status.
pub fn request(what: &str, e: RequestError) -> Status {
    let text = format!("{what}: {e}");
    match e {
        RequestError::Timeout(_) => Status::deadline_exceeded(text),
        RequestError::Busy => Status::resource_exhausted(text),
        RequestError::Remote(_) | RequestError::BadAnswer(_) => Status::unavailable(text),
    }
}

/// A background task that died.
pub fn task(e: tokio::task::JoinError) -> Status {
    Status::internal(format!("task failed: {e}"))
}

/// A failed pin or unpin as a status.
pub fn pin(e: crate::files::PinError) -> Status {
    use crate::files::PinError;
    let text = e.to_string();
    match e {
        PinError::RootNotFound(_) | PinError::NotPinned(_) => Status::not_found(text),
        PinError::Manifest(_) => Status::failed_precondition(text),
        PinError::WrongKey { .. } => Status::permission_denied(text),
        PinError::Incomplete { .. } | PinError::Tree { .. } => Status::unavailable(text),
        PinError::Store(e) => store(e),
    }
}
