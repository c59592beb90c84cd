//! What the embedder implements to route the requests of a function made of parts (`app.rs`): a
//! [`Router`], its [`CallRoute`] answers, and the runtime's name of a part ([`part_name`]).

/// Picks the part of a function that serves a request. Implemented by the embedder (the gateway's
/// Spin apps); called on the request's task, so it must not block.
pub trait Router: Send + Sync + std::fmt::Debug + 'static {
    /// The part that serves `request` (from outside, or from another function), after rewriting
    /// the request as that part must see it (headers, say); `None`: no part does (404).
    fn route(&self, request: &mut http::request::Parts) -> Option<String>;

    /// What becomes of a request the part `from` sends: for another part of this function, or not.
    fn route_call(&self, from: &str, request: &mut http::request::Parts) -> CallRoute;
}

/// The router's answer for a request a part sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallRoute {
    /// Not for this function: the part's outbound rules apply.
    NotMine,
    /// Served by this part, in process.
    Part(String),
    /// For this function, but the part may not make it: the guest gets `HTTP-request-denied`.
    Denied(String),
    /// For this function, but no part serves it: the guest gets a 404 with this reason.
    NoRoute(String),
}

/// The runtime's name of the part `part` of the function `function`.
pub fn part_name(function: &str, part: &str) -> String {
    format!("{function}/{part}")
}
