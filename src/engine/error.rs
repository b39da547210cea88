//! Typed Docker Engine errors, classified from the HTTP status AND the
//! message, because engines up to 17.06 answer almost everything with 500
//! and newer ones moved some answers to 400/403/404/409.

use std::fmt;

/// What went wrong, as far as a caller needs to decide what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The address is held by another endpoint on this node.
    AddressInUse,
    /// The container already has an endpoint on this network.
    AlreadyConnected,
    /// The container is not connected to this network (on disconnect).
    NotConnected,
    /// A network with this name already exists (on create).
    AlreadyExists,
    /// Container, network, service or node not found.
    NotFound,
    /// The address is not valid for this network (outside its subnets or range).
    InvalidAddress,
    /// The network still has endpoints (on remove).
    InUse,
    /// The network clashes with another on the node: overlapping subnet,
    /// or its parent interface already carries a macvlan network.
    Conflict,
    /// Credentials refused (401), or access forbidden (403 without a Docker reason).
    Auth,
    /// Connection refused, reset, DNS, or a gateway in front of the engine
    /// answering with its own error page (404, 5xx) instead of the engine.
    Unreachable,
    /// No answer in time.
    Timeout,
    /// The engine's API version is older than we support.
    Unsupported,
    /// The answer could not be decoded.
    Decode,
    /// Any other refusal by the engine.
    Engine,
    /// Not sent: this replica is no longer the leader.
    Fenced,
}

impl ErrorKind {
    /// Errors worth retrying later without any change on our side.
    pub(crate) fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unreachable | ErrorKind::Timeout)
    }

    fn describe(self) -> &'static str {
        match self {
            ErrorKind::AddressInUse => "address already in use",
            ErrorKind::AlreadyConnected => "already connected",
            ErrorKind::NotConnected => "not connected",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidAddress => "invalid address",
            ErrorKind::InUse => "still in use",
            ErrorKind::Conflict => "conflicts with another network",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unsupported => "unsupported engine",
            ErrorKind::Decode => "unreadable answer",
            ErrorKind::Engine => "refused",
            ErrorKind::Fenced => "not sent: not the leader",
        }
    }
}

/// An error from one request to one engine. Its text names the node and the
/// request, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EngineError {
    pub kind: ErrorKind,
    /// Node (or endpoint) label, e.g. `node2` or `manager`.
    pub(crate) node: String,
    /// `METHOD /path` without query string or version prefix.
    pub(crate) request: String,
    /// HTTP status, when there was an answer.
    pub(crate) status: Option<u16>,
    /// The engine's own message, or the transport's description.
    pub(crate) message: String,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}: {}",
            self.request,
            self.node,
            self.kind.describe()
        )?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl EngineError {
    pub(crate) fn new(
        kind: ErrorKind,
        node: &str,
        request: &str,
        status: Option<u16>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            node: node.to_owned(),
            request: request.to_owned(),
            status,
            message: message.into(),
        }
    }
}

/// Classifies an engine's error answer. The message patterns come from
/// libnetwork and the daemon across 17.06 .. 28.x. `from_engine` says the
/// body was the engine's own JSON error: a 403 without one comes from an
/// auth proxy (a DCE controller), while the engine's own 403s are reasons.
pub(crate) fn classify(status: u16, message: &str, from_engine: bool) -> ErrorKind {
    let m = message.to_ascii_lowercase();
    let has = |p: &str| m.contains(p);
    if has("address already in use") || has("address is already in use") {
        ErrorKind::AddressInUse
    } else if (has("endpoint with name") && has("already exists"))
        || has("is already attached to network")
        || has("already exists in network")
        || has("already connected")
    {
        ErrorKind::AlreadyConnected
    } else if has("is not connected to") || has("not connected to the network") {
        ErrorKind::NotConnected
    } else if has("has active endpoints") || has("in use by") {
        ErrorKind::InUse
    } else if has("pool overlaps") || has("already using parent interface") || has("overlaps with")
    {
        ErrorKind::Conflict
    } else if has("network with name") && has("already exists") {
        ErrorKind::AlreadyExists
    } else if has("invalid address")
        || has("does not belong to any of this network's subnets")
        || has("out of range")
        || has("no configured subnet contains ip address")
        || has("invalid ipv4 address")
        || has("user specified ip address is supported only")
        || has("no available ip")
    {
        ErrorKind::InvalidAddress
    } else if !from_engine && (status == 404 || status >= 500) {
        // A proxy's own page (a DCE controller's, nginx's): the request
        // did not reach the engine, so it says nothing about the object.
        ErrorKind::Unreachable
    } else if status == 404
        || has("no such container")
        || has("no such network")
        || (has("network") && has("not found"))
    {
        ErrorKind::NotFound
    } else if status == 409 && has("already exists") {
        ErrorKind::AlreadyExists
    } else if status == 401 || status == 407 || (status == 403 && !from_engine) {
        ErrorKind::Auth
    } else if matches!(status, 502..=504) {
        ErrorKind::Unreachable
    } else {
        ErrorKind::Engine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_t(status: u16, message: &str) -> ErrorKind {
        classify(
            status,
            message,
            !message.starts_with('<') && message != "Forbidden",
        )
    }

    #[test]
    fn old_and_new_engines_classify_alike() {
        // 17.06 answers 500 for all of these; 17.09+ moved them.
        for status in [500, 403] {
            assert_eq!(
                classify_t(status, "Address already in use"),
                ErrorKind::AddressInUse
            );
            assert_eq!(
                classify_t(
                    status,
                    "endpoint with name web.1.abc already exists in network macvlan"
                ),
                ErrorKind::AlreadyConnected
            );
        }
        for status in [500, 400] {
            assert_eq!(
                classify_t(
                    status,
                    "Invalid address 10.1.1.1: It does not belong to any of this network's subnets"
                ),
                ErrorKind::InvalidAddress
            );
            assert_eq!(
                classify_t(status, "Requested address is out of range"),
                ErrorKind::InvalidAddress
            );
            assert_eq!(
                classify_t(status, "no configured subnet contains IP address 10.9.9.9"),
                ErrorKind::InvalidAddress
            );
        }
        assert_eq!(
            classify_t(500, "network with name macvlan already exists"),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            classify_t(409, "network with name macvlan already exists"),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            classify_t(404, "No such container: 3f2a"),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_t(500, "No such container: 3f2a"),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_t(404, "network macvlan not found"),
            ErrorKind::NotFound
        );
        assert_eq!(
            classify_t(500, "container 3f2a is not connected to network macvlan"),
            ErrorKind::NotConnected
        );
        assert_eq!(
            classify_t(
                403,
                "error while removing network: network macvlan id 1 has active endpoints"
            ),
            ErrorKind::InUse
        );
        assert_eq!(
            classify_t(401, "<html>401 Authorization Required</html>"),
            ErrorKind::Auth
        );
        assert_eq!(classify_t(403, "Forbidden"), ErrorKind::Auth);
        assert_eq!(
            classify(
                403,
                "Pool overlaps with other one on this address space",
                true
            ),
            ErrorKind::Conflict
        );
        assert_eq!(
            classify(
                500,
                "network dm-1 is already using parent interface mv0",
                true
            ),
            ErrorKind::Conflict
        );
        assert_eq!(
            classify(403, "something the engine forbids", true),
            ErrorKind::Engine
        );
        assert_eq!(classify_t(502, "Bad Gateway"), ErrorKind::Unreachable);
        assert_eq!(classify_t(500, "something else"), ErrorKind::Engine);
    }

    #[test]
    fn a_gateways_own_error_page_is_not_the_engines_answer() {
        // An HTML 404 or 500 from a proxy in front of the engine (a DCE
        // controller) says nothing about the container or the network: not
        // "already absent", and worth trying again.
        let page = |code: &str| {
            format!(
                "<html>\r\n<head><title>{code}</title></head>\r\n<body>\r\n<center><h1>{code}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
            )
        };
        let not_found = classify(404, &page("404 Not Found"), false);
        assert_ne!(not_found, ErrorKind::NotFound);
        assert!(not_found.is_transient(), "{not_found:?}");
        let failed = classify(500, &page("500 Internal Server Error"), false);
        assert!(failed.is_transient(), "{failed:?}");
        // The engine's own answers keep their meaning.
        assert_eq!(
            classify(404, "No such container: 3f2a", true),
            ErrorKind::NotFound
        );
        assert_eq!(classify(500, "something else", true), ErrorKind::Engine);
    }

    #[test]
    fn messages_name_node_and_request() {
        let e = EngineError::new(
            ErrorKind::AddressInUse,
            "node2",
            "POST /networks/macvlan/connect",
            Some(403),
            "Address already in use",
        );
        assert_eq!(
            e.to_string(),
            "POST /networks/macvlan/connect on node2: address already in use (HTTP 403): Address already in use"
        );
    }
}
