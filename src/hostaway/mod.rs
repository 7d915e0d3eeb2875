//! Everything about talking to Hostaway: the API client, tokens, rate limits,
//! and the payload types.

pub mod client;
pub mod decode;
pub mod error;
pub mod json;
pub mod paging;
pub mod ratelimit;
pub mod tokens;
mod transport;
pub mod types;
mod walks;
pub mod webhook;

pub use client::{AccountClient, Credentials, HostawayClient, endpoints};
pub use error::HostawayError;

/// Watches one account client's requests: a running sync's progress.
pub trait Observer: Send + Sync {
    /// A request is about to go out, after `waited` in the rate limiter.
    fn request_sent(&self, waited: std::time::Duration);
    /// A 429 back-off of `waited` before a retry.
    fn waited(&self, waited: std::time::Duration);
    /// A page of `entity` brought `new_items` not seen before in this walk;
    /// `announced` is the page's `count`.
    fn page(&self, entity: &'static str, announced: Option<u64>, new_items: usize);
}
