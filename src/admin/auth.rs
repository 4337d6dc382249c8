//! The admin token check: with a token configured, every Admin call must carry
//! `authorization: Bearer <token>`. Health and reflection stay open.

use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::{Request, Status};

/// An interceptor that lets a call through only with the right bearer token
/// (or always, when no token is configured).
#[derive(Clone, Default)]
pub struct BearerAuth {
    token: Option<Arc<str>>,
}

impl BearerAuth {
    /// Checks calls against `token`; `None` or an empty token lets all through.
    pub fn new(token: Option<String>) -> BearerAuth {
        BearerAuth {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(req);
        };
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong admin token")),
            None => Err(Status::unauthenticated(
                "this node requires an admin token: send 'authorization: Bearer <token>'",
            )),
        }
    }
}

/// Compares without an early exit, so timing does not leak the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(auth: &mut BearerAuth, header: Option<&str>) -> tonic::Code {
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        match auth.call(req) {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        }
    }

    #[test]
    fn token_is_required_only_when_set() {
        let mut open = BearerAuth::new(None);
        assert_eq!(call(&mut open, None), tonic::Code::Ok);
        let mut locked = BearerAuth::new(Some("s3cret".into()));
        assert_eq!(call(&mut locked, None), tonic::Code::Unauthenticated);
        assert_eq!(
            call(&mut locked, Some("Bearer nope")),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            call(&mut locked, Some("s3cret")),
            tonic::Code::Unauthenticated
        );
        assert_eq!(call(&mut locked, Some("Bearer s3cret")), tonic::Code::Ok);
    }
}
